/*
 * NAME
 *	dkimsig 3
 * SUMMARY
 *	does a DKIM signature cover how the message's content reads?
 * SYNOPSIS
 *	#include "dkimsig.h"
 *
 *	void	dkimsig_header(&msg, name, value, len)
 *	void	dkimsig_free(&msg)
 *	int	dkimsig_covers(sig, &msg)
 *	int	dkimsig_b_begins(sig, header_b)
 *	int	dkimsig_content(&msg, domain, header_b)
 * DESCRIPTION
 *	A DKIM signature whose h= leaves out Content-Type (Gmail's usual
 *	h=; dkimpy's for a message without one) still passes when a
 *	Content-Type is added: the signed body then reads as other parts
 *	(a quoted text as a text part and an attacker's PDF). DMARC passes
 *	all the same, so "dmarc": "pass" does not say that the sender
 *	wrote the attachments; "content_signed" (authres.c) does.
 *
 *	dkimsig_header() is given every top-level header (mime.c): it keeps
 *	each DKIM-Signature value and counts Content-Type,
 *	Content-Transfer-Encoding, Content-Disposition and MIME-Version,
 *	and To and Cc: a consumer checks that the bill names its address,
 *	and a To: added to a genuine bill whose h= leaves To out (the
 *	vendor's bill to another customer) would name any workspace.
 *
 *	dkimsig_covers() is 1 when the signature's h= names each of those
 *	headers at least as many times as the message has it (a verifier
 *	signs the last instances; an added one above the signed one is the
 *	one a MIME reader takes first), and the signature has no l= (a body
 *	past l= is unsigned). A header the message does not have needs no
 *	naming: adding one changes the reading, and then it is unsigned.
 *	The tag-list is read by milter-dkim's sigtags_value() (the same
 *	strict RFC 6376 3.2 reading the milter applies): a list it refuses,
 *	an empty or malformed name in h=: 0.
 *
 *	dkimsig_b_begins() is 1 when the signature's b=, folding white
 *	space removed, begins with header_b (RFC 6008; milter-dkim writes
 *	the shortest prefix no other signature shares).
 *
 *	dkimsig_content() is 1 when at least one signature of the message
 *	matches header_b, every one that does has d= domain, and every one
 *	covers: a copy of a good signature with another h= (it fails, but
 *	shares the prefix) makes the answer 0, never 1.
 */

#include "build_config.h"

#include <ctype.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "dkimsig.h"
#include "sigtags.h"
#include "wh_alloc.h"

static const char *const dkimsig_mime_names[DKIMSIG_MIME_COUNT] = {
    "Content-Type", "Content-Transfer-Encoding", "Content-Disposition", "MIME-Version",
    "To", "Cc",
};

#define DKIMSIG_FWS " \t\r\n"

void    dkimsig_header(struct dkimsig_msg *m, const char *name, const char *value,
		               size_t len)
{
    for (int i = 0; i < DKIMSIG_MIME_COUNT; i++)
	if (strcasecmp(name, dkimsig_mime_names[i]) == 0)
	    m->mime[i]++;
    if (strcasecmp(name, "DKIM-Signature") != 0)
	return;
    /* every one: their number is bounded by Dovecot's header limit; a
       NUL makes the value unreadable (kept as "", which covers nothing) */
    m->sig = wh_realloc(m->sig, (m->nsig + 1) * sizeof(*m->sig));
    m->sig[m->nsig++] = memchr(value, 0, len) ? wh_strdup("") : wh_strndup(value, len);
}

void    dkimsig_free(struct dkimsig_msg *m)
{
    for (int i = 0; i < m->nsig; i++)
	free(m->sig[i]);
    free(m->sig);
    memset(m, 0, sizeof(*m));
}

/* dkimsig_name_ok - an RFC 5322 field-name: printable ASCII but ':' */

static int dkimsig_name_ok(const char *name, size_t len)
{
    if (len == 0)
	return (0);
    for (size_t i = 0; i < len; i++)
	if (name[i] < 33 || name[i] > 126 || name[i] == ':')
	    return (0);
    return (1);
}

/* dkimsig_h_count - how many times h= names each MIME header; -1: unreadable */

static int dkimsig_h_count(const char *h, size_t hlen, int count[DKIMSIG_MIME_COUNT])
{
    const char *end = h + hlen;

    memset(count, 0, DKIMSIG_MIME_COUNT * sizeof(*count));
    for (const char *p = h;;) {
	const char *colon = memchr(p, ':', (size_t) (end - p)), *q;
	const char *stop = colon ? colon : end;

	p += strspn(p, DKIMSIG_FWS);		/* FWS around each name (3.5) */
	for (q = stop; q > p && strchr(DKIMSIG_FWS, q[-1]) != NULL; q--)
	     /* void */ ;
	if (p > stop || !dkimsig_name_ok(p, (size_t) (q - p)))
	    return (-1);
	for (int i = 0; i < DKIMSIG_MIME_COUNT; i++)
	    if (strlen(dkimsig_mime_names[i]) == (size_t) (q - p)
		&& strncasecmp(p, dkimsig_mime_names[i], (size_t) (q - p)) == 0)
		count[i]++;
	if (colon == NULL)
	    return (0);
	p = colon + 1;
    }
}

int     dkimsig_covers(const char *sig, const struct dkimsig_msg *m)
{
    const char *h, *l;
    size_t  hlen, llen;
    int     count[DKIMSIG_MIME_COUNT];

    if (sigtags_value(sig, "h", &h, &hlen) != 1 || sigtags_value(sig, "l", &l, &llen) != 0)
	return (0);
    if (dkimsig_h_count(h, hlen, count) != 0)
	return (0);
    for (int i = 0; i < DKIMSIG_MIME_COUNT; i++)
	if (count[i] < m->mime[i])
	    return (0);
    return (1);
}

int     dkimsig_b_begins(const char *sig, const char *header_b)
{
    const char *b, *hb = header_b;
    size_t  blen;

    if (header_b == NULL || *header_b == 0 || sigtags_value(sig, "b", &b, &blen) != 1)
	return (0);
    for (size_t i = 0; i < blen && *hb != 0; i++)
	if (strchr(DKIMSIG_FWS, b[i]) == NULL && b[i] != *hb++)
	    return (0);
    return (*hb == 0);
}

/* dkimsig_d_is - the signature's d= is domain (case aside) */

static int dkimsig_d_is(const char *sig, const char *domain)
{
    const char *d;
    size_t  dlen;

    return (domain != NULL && sigtags_value(sig, "d", &d, &dlen) == 1
	    && strlen(domain) == dlen && strncasecmp(d, domain, dlen) == 0);
}

int     dkimsig_content(const struct dkimsig_msg *m, const char *domain, const char *header_b)
{
    int     matched = 0;

    if (m == NULL)
	return (0);
    for (int i = 0; i < m->nsig; i++) {
	if (!dkimsig_b_begins(m->sig[i], header_b))
	    continue;
	if (!dkimsig_d_is(m->sig[i], domain) || !dkimsig_covers(m->sig[i], m))
	    return (0);
	matched++;
    }
    return (matched > 0);
}
