/*
 * NAME
 *	dkim_sign 3
 * SUMMARY
 *	DKIM-Signature headers made with OpenSSL, RSA-SHA256 and Ed25519-SHA256
 * SYNOPSIS
 *	#include "dkim_sign.h"
 *
 *	void	dkim_sign_start(&s, &message, sign_headers, oversign_headers,
 *			header_relaxed, body_relaxed)
 *	void	dkim_sign_body(&s, data, len)
 *	void	dkim_sign_end_body(&s)
 *	char	*dkim_sign_header(&s, &key, domain, selector, now, ttl, &err)
 *	void	dkim_sign_free(&s)
 *	const char *dkim_sign_unsignable(name)
 * DESCRIPTION
 *	One message is canonicalized once, whatever the number of
 *	signatures: dkim_sign_start() selects and canonicalizes the
 *	headers, dkim_sign_body() streams the body into one SHA-256 (the
 *	body hash is the same for every key: both algorithms hash with
 *	SHA-256 and one canonicalization is configured), and each
 *	dkim_sign_header() call only hashes the headers with its own
 *	DKIM-Signature header and makes one private-key operation with an
 *	EVP_PKEY loaded at start-up (keys(3)), from a copy of the signing
 *	context keys(3) set up with it (no algorithm fetch per message).
 *
 *	Header selection (RFC 6376 5.4.2): every header named in
 *	sign_headers or oversign_headers is signed, each occurrence; h=
 *	lists them top down (listed bottom up, From came after 5,000 Cc:
 *	entries and libopendkim's verifier said "header list missing
 *	required entries"; dkimpy passed it), and each name's instances are hashed
 *	bottom up, the order in which a verifier takes them. Then every
 *	oversign_headers name once more: a verifier hashes nothing for it,
 *	and a header of that name added later breaks the signature.
 *
 *	The value returned has a leading space (SMFIP_HDR_LEADSPC) and is
 *	folded with LF TAB below 78 columns (h= and b= over several lines
 *	when long): tags v, a, c, d, s, t, x (with a TTL), h, bh, b, in
 *	that order, b last, so the signed text ends with "b=".
 *	Ed25519-SHA256 signs the SHA-256 digest of the header data (RFC
 *	8463 3), RSA-SHA256 is PKCS#1 v1.5 over the same digest.
 *
 *	dkim_sign_unsignable() says why a header name cannot be in
 *	sign_headers or oversign_headers, or returns NULL.
 * DIAGNOSTICS
 *	dkim_sign_header() returns NULL and sets *err on an OpenSSL failure.
 */

#include "build_config.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <openssl/rsa.h>

#include "dkim_sign.h"
#include "xalloc.h"

#define DKIM_SIGN_COLS	76			/* fold before this column */

struct dkim_sign_buf {
    char   *text;
    size_t  len, cap, col;
};

static void dkim_sign_add(struct dkim_sign_buf *b, const char *text, size_t len)
{
    if (b->len + len + 1 > b->cap)
	b->text = xrealloc(b->text, b->cap = 2 * b->cap + len + 256);
    memcpy(b->text + b->len, text, len);
    b->len += len;
    b->text[b->len] = 0;
    for (size_t i = 0; i < len; i++)
	b->col = text[i] == '\n' ? 0 : b->col + 1;
}

/* dkim_sign_token - text after a space, or on a new line if it would not fit */

static void dkim_sign_token(struct dkim_sign_buf *b, const char *text)
{
    size_t  len = strlen(text);

    if (b->col > 1 && b->col + len + 1 > DKIM_SIGN_COLS)
	dkim_sign_add(b, "\n\t", 2);
    else
	dkim_sign_add(b, " ", 1);
    dkim_sign_add(b, text, len);
}

int     dkim_sign_listed(const char *name, char **list)
{
    for (; list && *list; list++)
	if (strcasecmp(name, *list) == 0)
	    return (1);
    return (0);
}

/*
 * dkim_sign_unsignable - a header whose signature is certain to fail
 * (helper-99: both passed -t): the milter removes an
 * Authentication-Results claiming authserv_id after it signed over it,
 * and the receiver's own are added above; each DKIM-Signature is added
 * after all are made, so one oversigned (or a second signature's)
 * breaks every message
 */
const char *dkim_sign_unsignable(const char *name)
{
    if (strcasecmp(name, "Authentication-Results") == 0)
	return ("the milter removes those claiming authserv_id after signing and every "
		"receiver adds its own, so the signature would fail");
    if (strcasecmp(name, "DKIM-Signature") == 0)
	return ("signatures are added after all are made, so each would fail");
    return (NULL);
}

/* dkim_sign_name - one h= entry, lower case, folded after a colon */

static void dkim_sign_name(struct dkim_sign_buf *b, const char *name)
{
    size_t  len = strlen(name);
    char   *lower = xstrdup(name);

    for (char *cp = lower; *cp; cp++)
	*cp = tolower((unsigned char) *cp);
    if (b->len > 0)
	dkim_sign_add(b, ":", 1);
    if (b->len > 0 && b->col + len + 1 > DKIM_SIGN_COLS)
	dkim_sign_add(b, "\n\t", 2);
    dkim_sign_add(b, lower, len);
    free(lower);
}

/* dkim_sign_group - which name of the two lists (first match), or -1 */

static int dkim_sign_group(const char *name, char **a, char **b)
{
    int     n = 0;

    for (; a && *a; a++, n++)
	if (strcasecmp(name, *a) == 0)
	    return (n);
    for (; b && *b; b++, n++)
	if (strcasecmp(name, *b) == 0)
	    return (n);
    return (-1);
}

/*
 * dkim_sign_select - the signed headers: *listed top down, as h= names
 * them, and *hashed in the order they are hashed: a verifier takes the
 * k-th h= entry of a name from the bottom, so the instances of each name
 * are hashed in mirror order. Linear, whatever the count of headers.
 */
static int dkim_sign_select(const struct message *m, char **sign, char **over,
			            int **listed, int **hashed)
{
    int     groups = 0, n = 0;
    int    *grp = xcalloc(m->count + 1, sizeof(int)), *count, *start, *seen, *pos;

    for (char **l = sign; l && *l; l++)
	groups++;
    for (char **l = over; l && *l; l++)
	groups++;
    count = xcalloc(groups + 1, sizeof(int));
    start = xcalloc(groups + 1, sizeof(int));
    seen = xcalloc(groups + 1, sizeof(int));
    *listed = xcalloc(m->count + 1, sizeof(int));
    for (int i = 0; i < m->count; i++)
	if ((grp[n] = dkim_sign_group(m->hdr[i].name, sign, over)) >= 0) {
	    count[grp[n]]++;
	    (*listed)[n++] = i;
	}
    for (int g = 1; g < groups; g++)
	start[g] = start[g - 1] + count[g - 1];
    pos = xcalloc(n + 1, sizeof(int));		/* positions, grouped by name */
    for (int k = 0; k < n; k++)
	pos[start[grp[k]] + seen[grp[k]]++] = k;
    *hashed = xcalloc(n + 1, sizeof(int));
    memset(seen, 0, sizeof(int) * (groups + 1));
    for (int k = 0; k < n; k++) {
	int     g = grp[k];

	(*hashed)[k] = (*listed)[pos[start[g] + count[g] - 1 - seen[g]++]];
    }
    free(grp);
    free(count);
    free(start);
    free(seen);
    free(pos);
    return (n);
}

void    dkim_sign_start(struct dkim_sign *s, const struct message *m, char **sign_headers,
			        char **oversign_headers, int header_relaxed, int body_relaxed)
{
    struct dkim_sign_buf names = {.col = 3}, hdrs = {0};	/* "\th=" */
    int    *listed, *hashed, n;

    memset(s, 0, offsetof(struct dkim_sign, body));
    s->header_relaxed = header_relaxed;
    s->body_relaxed = body_relaxed;
    n = dkim_sign_select(m, sign_headers, oversign_headers, &listed, &hashed);
    for (int k = 0; k < n; k++) {
	const struct message_header *h = m->hdr + hashed[k];
	size_t  len;
	char   *canon = canon_header(h->name, h->value, header_relaxed, &len);

	dkim_sign_add(&hdrs, canon, len);
	free(canon);
	dkim_sign_name(&names, m->hdr[listed[k]].name);
    }
    free(listed);
    free(hashed);
    for (int i = 0; oversign_headers && oversign_headers[i]; i++) {
	int     seen = 0;

	for (int j = 0; j < i; j++)
	    seen |= strcasecmp(oversign_headers[i], oversign_headers[j]) == 0;
	if (!seen)
	    dkim_sign_name(&names, oversign_headers[i]);
    }
    s->names = names.text ? names.text : xstrdup("");
    s->names_col = names.col;
    s->headers = (unsigned char *) hdrs.text;
    s->headers_len = hdrs.len;
    s->body_md = EVP_MD_CTX_new();
    EVP_DigestInit_ex(s->body_md, canon_sha256(), NULL);
    canon_body_init(&s->body, body_relaxed, canon_digest_sink, s->body_md);
}

void    dkim_sign_body(struct dkim_sign *s, const unsigned char *data, size_t len)
{
    canon_body_update(&s->body, data, len);
}

void    dkim_sign_end_body(struct dkim_sign *s)
{
    unsigned char digest[EVP_MAX_MD_SIZE];
    unsigned len = 0;

    canon_body_final(&s->body);
    EVP_DigestFinal_ex(s->body_md, digest, &len);
    EVP_EncodeBlock((unsigned char *) s->bh, digest, (int) len);
}

/* dkim_sign_digest - the private-key operation over the header digest */

static unsigned char *dkim_sign_digest(const struct dkim_key *key, const unsigned char *digest,
				               size_t digest_len, size_t *sig_len)
{
    unsigned char *sig = xmalloc(EVP_PKEY_get_size(key->pkey) + 1);
    int     ok = 0;

    *sig_len = EVP_PKEY_get_size(key->pkey);
    /* a copy of the key's template (keys(3)): the template is only read */
    if (key->type == KEY_RSA) {
	EVP_PKEY_CTX *ctx = key->rsa_sign ? EVP_PKEY_CTX_dup(key->rsa_sign)
	    : EVP_PKEY_CTX_new(key->pkey, NULL);

	ok = ctx && (key->rsa_sign || (EVP_PKEY_sign_init(ctx) == 1
		  && EVP_PKEY_CTX_set_rsa_padding(ctx, RSA_PKCS1_PADDING) == 1
		   && EVP_PKEY_CTX_set_signature_md(ctx, canon_sha256()) == 1))
	    && EVP_PKEY_sign(ctx, sig, sig_len, digest, digest_len) == 1;
	EVP_PKEY_CTX_free(ctx);
    } else {
	EVP_MD_CTX *md = EVP_MD_CTX_new();

	ok = md && (key->ed_sign ? EVP_MD_CTX_copy_ex(md, key->ed_sign) == 1
		    : EVP_DigestSignInit(md, NULL, NULL, NULL, key->pkey) == 1)
	    && EVP_DigestSign(md, sig, sig_len, digest, digest_len) == 1;
	EVP_MD_CTX_free(md);
    }
    if (!ok) {
	free(sig);
	return (NULL);
    }
    return (sig);
}

/* dkim_sign_tags - the header value up to and including "b=" */

static char *dkim_sign_tags(struct dkim_sign *s, const struct dkim_key *key,
			            const char *domain, const char *selector, time_t now,
			            long ttl, size_t *col)
{
    struct dkim_sign_buf b = {.col = 15};	/* "DKIM-Signature:" */
    char    tag[128], *text;

    dkim_sign_token(&b, "v=1;");
    dkim_sign_token(&b, key->type == KEY_RSA ? "a=rsa-sha256;" : "a=ed25519-sha256;");
    snprintf(tag, sizeof(tag), "c=%s/%s;", s->header_relaxed ? "relaxed" : "simple",
	     s->body_relaxed ? "relaxed" : "simple");
    dkim_sign_token(&b, tag);
    text = xasprintf("d=%s;", domain);		/* any length: never cut */
    dkim_sign_token(&b, text);
    free(text);
    text = xasprintf("s=%s;", selector);
    dkim_sign_token(&b, text);
    free(text);
    snprintf(tag, sizeof(tag), "t=%lld;", (long long) now);
    dkim_sign_token(&b, tag);
    if (ttl > 0) {
	snprintf(tag, sizeof(tag), "x=%lld;", (long long) now + ttl);
	dkim_sign_token(&b, tag);
    }
    dkim_sign_add(&b, "\n\th=", 4);
    dkim_sign_add(&b, s->names, strlen(s->names));
    dkim_sign_add(&b, ";", 1);
    snprintf(tag, sizeof(tag), "bh=%s;", s->bh);
    dkim_sign_token(&b, tag);
    dkim_sign_add(&b, "\n\tb=", 4);
    *col = b.col;
    return (b.text);
}

char   *dkim_sign_header(struct dkim_sign *s, const struct dkim_key *key, const char *domain,
			         const char *selector, time_t now, long ttl, const char **err)
{
    size_t  col, canon_len, sig_len;
    char   *value = dkim_sign_tags(s, key, domain, selector, now, ttl, &col);
    char   *canon = canon_header("DKIM-Signature", value, s->header_relaxed, &canon_len);
    unsigned char digest[EVP_MAX_MD_SIZE], *sig;
    unsigned digest_len = 0;
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    struct dkim_sign_buf b = {.text = value, .len = strlen(value), .cap = strlen(value) + 1};
    char   *b64;

    /* the selected headers, then ours without its CRLF (RFC 6376 3.7) */
    EVP_DigestInit_ex(md, canon_sha256(), NULL);
    EVP_DigestUpdate(md, s->headers, s->headers_len);
    EVP_DigestUpdate(md, canon, canon_len - 2);
    EVP_DigestFinal_ex(md, digest, &digest_len);
    EVP_MD_CTX_free(md);
    free(canon);
    if ((sig = dkim_sign_digest(key, digest, digest_len, &sig_len)) == NULL) {
	*err = key->type == KEY_RSA ? "RSA signing failed" : "Ed25519 signing failed";
	free(value);
	return (NULL);
    }
    b64 = xmalloc(4 * ((sig_len + 2) / 3) + 1);
    EVP_EncodeBlock((unsigned char *) b64, sig, (int) sig_len);
    free(sig);
    b.col = col;
    for (size_t off = 0, left = strlen(b64); left > 0;) {
	size_t  n = b.col < DKIM_SIGN_COLS ? DKIM_SIGN_COLS - b.col : 0;

	if (n == 0) {
	    dkim_sign_add(&b, "\n\t", 2);
	    continue;
	}
	n = n < left ? n : left;
	dkim_sign_add(&b, b64 + off, n);
	off += n;
	left -= n;
    }
    free(b64);
    return (b.text);
}

void    dkim_sign_free(struct dkim_sign *s)
{
    free(s->names);
    free(s->headers);
    if (s->body_md)
	EVP_MD_CTX_free(s->body_md);
    memset(s, 0, offsetof(struct dkim_sign, body));
}
