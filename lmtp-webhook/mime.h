#ifndef LMTP_WEBHOOK_MIME_H
#define LMTP_WEBHOOK_MIME_H

/* mime.h - a message, read with Dovecot's MIME parser and decoder */

struct istream;
struct payload_message;
struct payload_envelope;
struct payload_writer;

int     mime_read(struct istream *input, uoff_t max_attachment_size,
		          struct payload_message *msg, const struct payload_envelope *env,
		          struct payload_writer *out, const char **error_r);
uoff_t  mime_lmtp_data_offset(struct istream *input, const char *session_id);
int     mime_digest(struct istream *input, const char *prefix, unsigned char md[32],
		            uoff_t *size_r, const char **error_r);

#endif
