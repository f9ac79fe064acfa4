#ifndef MXKIT_DKIM_SIGN_H
#define MXKIT_DKIM_SIGN_H

/* dkim_sign - DKIM signatures with OpenSSL (RFC 6376, RFC 8463). */

#include <stddef.h>
#include <time.h>

#include <openssl/evp.h>

#include "canon.h"
#include "keys.h"
#include "message.h"

/* One message: canonical headers and body hash, shared by its signatures. */
struct dkim_sign {
    int     header_relaxed;
    int     body_relaxed;
    char   *names;			/* h= value, folded */
    size_t  names_col;			/* column where the folded h= ends */
    unsigned char *headers;		/* the selected headers, canonical */
    size_t  headers_len;
    EVP_MD_CTX *body_md;
    struct canon_body body;
    char    bh[48];			/* base64 body hash, once final */
};

void    dkim_sign_start(struct dkim_sign *s, const struct message *m, char **sign_headers,
			        char **oversign_headers, int header_relaxed, int body_relaxed);
void    dkim_sign_body(struct dkim_sign *s, const unsigned char *data, size_t len);
void    dkim_sign_end_body(struct dkim_sign *s);
char   *dkim_sign_header(struct dkim_sign *s, const struct dkim_key *key, const char *domain,
			         const char *selector, time_t now, long ttl, const char **err);
void    dkim_sign_free(struct dkim_sign *s);
int     dkim_sign_listed(const char *name, char **list);
const char *dkim_sign_unsignable(const char *name);

#endif
