#ifndef LMTP_WEBHOOK_MIME_PARAM_H
#define LMTP_WEBHOOK_MIME_PARAM_H

/* mime_param.h - MIME parameters in every form senders use */

struct rfc822_parser_context;

const char *mime_param(struct rfc822_parser_context *parser, const char *wanted);
const char *mime_param_extended_only(struct rfc822_parser_context *parser,
				             const char *wanted);

#endif
