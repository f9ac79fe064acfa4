#ifndef MXKIT_CANON_H
#define MXKIT_CANON_H

/* canon - DKIM canonicalization (RFC 6376 3.4), streamed. */

#include <stddef.h>

#include <openssl/evp.h>

typedef void (*canon_sink) (void *context, const unsigned char *data, size_t len);

struct canon_body {
    int     relaxed;
    int     cr;				/* a CR waits for its LF */
    int     wsp;			/* relaxed: a WSP run waits */
    int     any;			/* something was written */
    size_t  crlfs;			/* empty lines held back */
    canon_sink sink;
    void   *context;
    size_t  len;			/* of buf */
    unsigned char buf[8192];
};

/* SHA-256, fetched once: an implicit fetch per message takes locks */
const EVP_MD *canon_sha256(void);

char   *canon_header(const char *name, const char *value, int relaxed, size_t *len);
void    canon_body_init(struct canon_body *b, int relaxed, canon_sink sink, void *context);
void    canon_body_update(struct canon_body *b, const unsigned char *data, size_t len);
void    canon_body_final(struct canon_body *b);
void    canon_digest_sink(void *md_ctx, const unsigned char *data, size_t len);

#endif
