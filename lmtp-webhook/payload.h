#ifndef LMTP_WEBHOOK_PAYLOAD_H
#define LMTP_WEBHOOK_PAYLOAD_H

/* payload.h - the message.received event, independent of Dovecot */

#include <stddef.h>

struct payload_bytes {
    char   *data;
    size_t  len;
};

struct payload_attachment {
    char   *filename;			/* NULL if the part has none */
    char   *content_type;
    size_t  size;			/* decoded size */
    unsigned char sha256[32];
    struct payload_bytes content;	/* empty when over the limit */
    int     content_kept;
};

enum payload_header {
    PAYLOAD_FROM, PAYLOAD_TO, PAYLOAD_CC, PAYLOAD_SUBJECT, PAYLOAD_DATE,
    PAYLOAD_MESSAGE_ID, PAYLOAD_HEADER_COUNT,
};

struct payload_message {
    struct payload_bytes header[PAYLOAD_HEADER_COUNT];
    struct payload_bytes *auth_results;
    int     auth_count;
    struct payload_bytes text, html;
    struct payload_attachment *attachments;
    int     attachment_count;
    size_t  size;			/* of the whole message */
};

struct payload_envelope {
    const char *id, *workspace, *mail_from, *rcpt_to;
    long long timestamp;
};

const char *payload_header_name(enum payload_header which);
void    payload_bytes_append(struct payload_bytes *b, const void *data, size_t len,
			             size_t limit);
struct payload_attachment *payload_attachment_add(struct payload_message *msg);
char   *payload_build(const struct payload_message *msg,
		              const struct payload_envelope *env, size_t *len_r);
char   *payload_utf8_clean(const char *data, size_t len, size_t *len_r);
void    payload_message_free(struct payload_message *msg);

#endif
