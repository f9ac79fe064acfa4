#ifndef LMTP_WEBHOOK_MIME_PARAM_H
#define LMTP_WEBHOOK_MIME_PARAM_H

/* mime_param.h - MIME parameters in every form senders use */

#include "decode.h"

struct rfc822_parser_context;

enum mime_param_pick {
    MIME_PARAM_EXTENDED,		/* RFC 6266 4.3: name*= beats name= */
    MIME_PARAM_FIRST,			/* the first given, as Python reads */
};

const char *mime_param(struct rfc822_parser_context *parser, const char *wanted);
const char *mime_param_pick(struct rfc822_parser_context *parser, const char *wanted,
			            enum mime_param_pick pick);
const char *mime_param_dovecot(struct rfc822_parser_context *parser, const char *wanted);
void    mime_words_utf8(const unsigned char *data, size_t size, buffer_t *out);
/* mime_charset.c: the name iconv(3) opens for a charset (charset_name(3)) */
const char *mime_charset_name(const char *charset);

const char *mime_param_boundary(struct rfc822_parser_context *parser);

/* mime_ew.c */
void    mime_header_utf8(const unsigned char *data, size_t size, buffer_t *out);
void    mime_address_utf8(const unsigned char *data, size_t size, buffer_t *out);
enum decode_cte mime_cte_read(const unsigned char *data, size_t size);

#endif
