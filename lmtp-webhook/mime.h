#ifndef LMTP_WEBHOOK_MIME_H
#define LMTP_WEBHOOK_MIME_H

/* mime.h - a message, read with Dovecot's MIME parser and decoder */

struct istream;
struct payload_message;
struct payload_envelope;
struct payload_writer;

/* what the route and the settings ask of the event */
struct mime_options {
    uoff_t  max_attachment;		/* lmtp_webhook_max_attachment_size */
    uoff_t  max_raw;			/* lmtp_webhook_max_raw_message_size */
    bool    raw_message;		/* the route's raw_message=yes */
    const char *trusted_id;		/* lmtp_webhook_trusted_authserv_id */
};

int     mime_read(struct istream *input, const struct mime_options *opt,
		          struct payload_message *msg, const struct payload_envelope *env,
		          struct payload_writer *out, const char **error_r);
const char *mime_lmtp_suffix(const char *id, char tag);
uoff_t  mime_lmtp_data_offset(struct istream *input, const char *session_id, const char *rcpt,
			              bool *proxy_unknown);
int     mime_digest(struct istream *input, const char *prefix, size_t prefix_len,
		            unsigned char md[32], uoff_t *size_r, const char **error_r);

#endif
