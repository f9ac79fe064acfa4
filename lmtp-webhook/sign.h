#ifndef LMTP_WEBHOOK_SIGN_H
#define LMTP_WEBHOOK_SIGN_H

/* sign.h - Standard Webhooks v1 signatures */

#include <stddef.h>

struct webhook_key {
    unsigned char bytes[128];
    size_t  len;
};

const char *sign_key_parse(const char *text, struct webhook_key *key);
const char *sign_key_load(const char *path, struct webhook_key *key);
const char *sign_key_weak(const struct webhook_key *key);

#define SIGN_KEY_MIN	24		/* Standard Webhooks: 24 to 64 random bytes */
char   *sign_signature(const struct webhook_key *key, const char *id,
			       long long timestamp, const char *body, size_t body_len);
char   *sign_base64(const unsigned char *data, size_t len);

#endif
