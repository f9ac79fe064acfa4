#ifndef MXKIT_DNSKEY_H
#define MXKIT_DNSKEY_H

/* dnskey - judge a DKIM key record: against a private key file, or alone for a verifier. */

#include <stddef.h>

#include <openssl/evp.h>

enum {
    DNSKEY_OK, DNSKEY_MISSING, DNSKEY_MISMATCH, DNSKEY_REVOKED, DNSKEY_INVALID,
    DNSKEY_TEMPERROR, DNSKEY_TOOSMALL, DNSKEY_REENCODE,
};

#define DNSKEY_RSA_MIN_BITS	1024		/* RFC 8301 3.2 */

#define DNSKEY_RSA	0
#define DNSKEY_ED25519	1

struct dnskey {
    int     type;			/* DNSKEY_RSA or DNSKEY_ED25519 */
    EVP_PKEY *pkey;			/* the public half only */
};

const char *dnskey_load(const char *path, struct dnskey *key);
void    dnskey_free(struct dnskey *key);
const char *dnskey_type_name(int type);
int     dnskey_record(const char *text, size_t len, const struct dnskey *key,
		              char *why, size_t whylen);
int     dnskey_records(int count, const char *const *texts, const size_t *lens,
		               const struct dnskey *key, char *why, size_t whylen);
int     dnskey_verifiable(const char *text, size_t len, int *bits, char **record,
			          char *why, size_t whylen);
const char *dnskey_status_text(int status);

#endif
