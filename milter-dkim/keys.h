#ifndef MXKIT_KEYS_H
#define MXKIT_KEYS_H

/* keys - DKIM private keys: the only module that reads key files. */

#include <stddef.h>

enum key_type { KEY_RSA, KEY_ED25519 };

struct dkim_key {
    enum key_type type;
    int     bits;
    char   *pem;			/* PKCS#8 PEM, as libopendkim wants */
    char   *public_b64;			/* p= value for the DNS record */
};

const char *keys_load(const char *path, struct dkim_key *key);
const char *keys_from_text(const char *text, size_t len, struct dkim_key *key);
void    keys_free(struct dkim_key *key);
char   *keys_dns_record(const struct dkim_key *key);
const char *keys_generate(enum key_type type, int bits, struct dkim_key *key);

#endif
