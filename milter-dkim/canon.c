/*
 * NAME
 *	canon 3
 * SUMMARY
 *	DKIM header and body canonicalization, simple and relaxed
 * SYNOPSIS
 *	#include "canon.h"
 *
 *	char	*canon_header(name, value, relaxed, &len)
 *	void	canon_body_init(&b, relaxed, sink, context)
 *	void	canon_body_update(&b, data, len)
 *	void	canon_body_final(&b)
 * DESCRIPTION
 *	canon_header() returns one header field canonicalized as RFC 6376
 *	3.4.1 (simple) or 3.4.2 (relaxed), with its CRLF. The value is as
 *	the MTA hands it to a milter (with its leading space, folds with
 *	LF or CRLF); simple writes every fold as CRLF, the wire form.
 *	Relaxed lowercases the name, drops white space at the end of the
 *	name, unfolds, turns every run of SP and HTAB into one SP and drops
 *	it at both ends of the value. A bare CR is kept as any octet.
 *
 *	The body is streamed in chunks of any size: the canonical text
 *	goes to sink() in pieces, and is the same whatever the chunking
 *	(a CR at the end of one chunk and its LF at the start of the next,
 *	a WSP run across chunks). Lines end at CRLF only; a bare CR or LF
 *	is an ordinary octet, as it is in dkimpy and libopendkim. Simple
 *	(3.4.3) drops empty lines at the end and ends a non-empty body
 *	with CRLF; an empty body is CRLF. Relaxed (3.4.4) also drops SP
 *	and HTAB at the end of each line and reduces every other run of
 *	them to one SP; an empty body stays empty (RFC 6376 erratum 3371
 *	with 3.4.4's "no body" rule).
 *
 *	Empty lines are held back as a count, not buffered: a body of a
 *	million empty lines costs no memory, and is written out only if
 *	something follows it.
 */

#include "build_config.h"

#include <ctype.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "canon.h"
#include "msg.h"
#include "xalloc.h"

static EVP_MD *canon_md;
static pthread_once_t canon_once = PTHREAD_ONCE_INIT;

static void canon_fetch(void)
{
    if ((canon_md = EVP_MD_fetch(NULL, "SHA256", NULL)) == NULL)
	msg_fatal("OpenSSL has no SHA-256");
}

const EVP_MD *canon_sha256(void)
{
    pthread_once(&canon_once, canon_fetch);
    return (canon_md);
}

#define CANON_WSP(c)	((c) == ' ' || (c) == '\t')

char   *canon_header(const char *name, const char *value, int relaxed, size_t *len)
{
    size_t  nlen = strlen(name), vlen = strlen(value);
    char   *out = xmalloc(nlen + 2 * vlen + 4), *op = out;
    const char *cp;
    int     wsp = 0, started = 0;

    if (!relaxed) {
	memcpy(op, name, nlen);
	op += nlen;
	*op++ = ':';
	for (cp = value; *cp; cp++) {
	    if (*cp == '\n' && (cp == value || cp[-1] != '\r'))
		*op++ = '\r';
	    *op++ = *cp;
	}
    } else {
	while (nlen > 0 && CANON_WSP(name[nlen - 1]))
	    nlen--;
	for (size_t i = 0; i < nlen; i++)
	    *op++ = tolower((unsigned char) name[i]);
	*op++ = ':';
	for (cp = value; *cp; cp++) {
	    if (*cp == '\n' || (*cp == '\r' && cp[1] == '\n'))
		continue;			/* unfold */
	    if (CANON_WSP(*cp)) {
		wsp = 1;
		continue;
	    }
	    if (wsp && started)
		*op++ = ' ';
	    wsp = 0;
	    started = 1;
	    *op++ = *cp;
	}
    }
    *op++ = '\r';
    *op++ = '\n';
    *op = 0;
    *len = op - out;
    return (out);
}

void    canon_digest_sink(void *md_ctx, const unsigned char *data, size_t len)
{
    EVP_DigestUpdate((EVP_MD_CTX *) md_ctx, data, len);
}

void    canon_body_init(struct canon_body *b, int relaxed, canon_sink sink, void *context)
{
    memset(b, 0, offsetof(struct canon_body, buf));
    b->relaxed = relaxed;
    b->sink = sink;
    b->context = context;
}

static void canon_flush(struct canon_body *b)
{
    if (b->len)
	b->sink(b->context, b->buf, b->len);
    b->len = 0;
}

static void canon_put(struct canon_body *b, unsigned char c)
{
    if (b->len == sizeof(b->buf))
	canon_flush(b);
    b->buf[b->len++] = c;
}

/* canon_content - an octet of line content: what was held back goes first */

static void canon_content(struct canon_body *b, unsigned char c)
{
    for (; b->crlfs > 0; b->crlfs--) {
	canon_put(b, '\r');
	canon_put(b, '\n');
    }
    if (b->wsp)
	canon_put(b, ' ');
    b->wsp = 0;
    b->any = 1;
    canon_put(b, c);
}

void    canon_body_update(struct canon_body *b, const unsigned char *data, size_t len)
{
    for (const unsigned char *cp = data, *end = data + len; cp < end; cp++) {
	if (b->cr) {
	    b->cr = 0;
	    if (*cp == '\n') {			/* end of line */
		b->wsp = 0;
		b->crlfs++;
		continue;
	    }
	    canon_content(b, '\r');		/* a bare CR is content */
	}
	if (*cp == '\r')
	    b->cr = 1;
	else if (b->relaxed && CANON_WSP(*cp))
	    b->wsp = 1;
	else if (b->crlfs == 0 && b->wsp == 0 && b->len < sizeof(b->buf))
	    b->buf[b->len++] = *cp, b->any = 1;	/* the common case, inline */
	else
	    canon_content(b, *cp);
    }
}

/*
 * canon_body_final - a CR left over is content; the body ends with one
 * CRLF if it has any content (empty lines at the end are dropped), and
 * an empty body is CRLF for simple, nothing for relaxed.
 */
void    canon_body_final(struct canon_body *b)
{
    if (b->cr)
	canon_content(b, '\r');
    b->cr = 0;
    if (b->any || !b->relaxed) {
	canon_put(b, '\r');
	canon_put(b, '\n');
    }
    canon_flush(b);
}
