#ifndef MXKIT_KEYS_H
#define MXKIT_KEYS_H

/* keys - DKIM private keys: the only module that reads key files. */

#include <stddef.h>
#include <sys/stat.h>
#include <sys/types.h>

#include <openssl/evp.h>

enum key_type { KEY_RSA, KEY_ED25519 };

/*
 * The largest RSA key we sign with: the DNS record of a larger one is
 * longer than the 1 KB key record libopendkim (OpenDKIM's library, and
 * our verifier's) reads, so those receivers answer dkim=permerror.
 */
#define KEYS_RSA_MAX_BITS 4096
#define KEYS_RSA_MAX_WHY "its DNS record would be longer than the 1 KB key record " \
	"OpenDKIM's libopendkim reads: OpenDKIM receivers, and milter-dkim's own " \
	"verifier, would answer dkim=permerror"

struct dkim_key {
    enum key_type type;
    int     bits;
    EVP_PKEY *pkey;			/* what dkim_sign(3) signs with */
    EVP_PKEY_CTX *rsa_sign;		/* RSA: sign-initialized, to dup */
    EVP_MD_CTX *ed_sign;		/* Ed25519: DigestSign-initialized, to copy */
    char   *pem;			/* PKCS#8 PEM: keygen only, else NULL */
    char   *public_b64;			/* p= value for the DNS record */
};

struct keys_policy {
    int     require_safe;		/* opendkim's RequireSafeKeys */
    gid_t  *groups;			/* the daemon's: group-readable is fine */
    int     ngroups;
};

const char *keys_load(const char *path, struct dkim_key *key, const struct keys_policy *kp);
const char *keys_safe(const struct stat *st, const struct keys_policy *kp);
const char *keys_from_text(const char *text, size_t len, struct dkim_key *key);
void    keys_share(const struct dkim_key *from, struct dkim_key *to);
void    keys_free(struct dkim_key *key);
char   *keys_dns_record(const struct dkim_key *key);
const char *keys_generate(enum key_type type, int bits, struct dkim_key *key);

#endif
