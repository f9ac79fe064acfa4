/*
 * NAME
 *	message 3
 * SUMMARY
 *	headers of one message; From: address; Authentication-Results
 * SYNOPSIS
 *	#include "message.h"
 *
 *	const char *message_add_header(&m, name, value, authserv_id)
 *	const char *message_parse_address(value, buf, len)
 *	int	message_ar_claims(value, authserv_id, &unreadable)
 *	int	message_signature_ok(m, name, value)
 *	char	*message_auth_results(dkim, eom_status, authserv_id, m)
 * DESCRIPTION
 *	Headers are kept until the end of the header so that libopendkim
 *	sees them in order once the sign/verify decision is made. From:
 *	headers are counted (zero or several: not signed) and the address
 *	of one is read strictly (rfc5322(3)); from_error says why there is
 *	none. Authentication-Results headers whose authserv-id is ours, in
 *	any RFC 8601 form, or cannot be read, are remembered by position,
 *	however many, to be deleted (nobody outside may speak in our name).
 *
 *	message_auth_results() builds the RFC 8601 value: one resinfo per
 *	signature, "dkim=pass header.d=D header.s=S header.a=A
 *	header.b=B" (B: enough of b= to tell the message's signatures
 *	apart, at least 8 characters), or fail / neutral / temperror /
 *	permerror / policy with a reason comment; "dkim=none" only for a
 *	message without DKIM-Signature headers (RFC 8601 2.7.1). When
 *	libopendkim refused the header (eoh_status: a From: it cannot read,
 *	none) it verified nothing and lists no signature; each signature
 *	fed to it is then "dkim=permerror (why) header.d=D", the first
 *	MESSAGE_BADSIG_MAX of them, never "none" (a signed message read as
 *	unsigned, a tampered one too). D and
 *	S come from the sender's signature: they are written as quoted
 *	strings unless they are tokens, so none can inject a result. A
 *	signature whose h= names From fewer times than the message has
 *	From: headers fails: libopendkim hashes the bottom ones and passed
 *	it, so a From: put on top of a signed message read as signed (dkimpy
 *	hashes one From more than h= lists, and fails it); so does one
 *	that names another once-only header (RFC 5322 3.6: Subject, To,
 *	Date...) fewer times than the message has it. An l= shorter than
 *	the body and rsa-sha1 (RFC 8301) are "policy". A key record
 *	mdns(3) judged unusable and kept from libopendkim (which then
 *	reports no key) is "permerror (key record: why)", or "policy"
 *	for an RSA key under 1024 bits (RFC 8301 3.2).
 *
 *	message_signature_ok() says whether a header may go to
 *	libopendkim: any but a DKIM-Signature whose tag-list sigtags(3)
 *	refuses (a tag twice, a required tag missing, a d= or s= no DNS
 *	query can carry). Those are kept from libopendkim, which passed
 *	duplicate tags (it reads the last), reported no signature at all
 *	for a missing v= ("dkim=none"), and took a selector the resolver
 *	refused for a DNS failure (temperror). Each is "dkim=permerror
 *	(why) header.d=D" in the A-R (header.d when d= was read for
 *	sure), the first MESSAGE_BADSIG_MAX of them, and never a pass.
 * DIAGNOSTICS
 *	message_add_header() returns NULL or a static error (headers over
 *	MESSAGE_HEADER_BYTES_MAX in total).
 */

#include "build_config.h"

#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "mdns.h"
#include "message.h"
#include "rfc5322.h"
#include "xalloc.h"

/*
 * message_ar_claims - does this A-R value speak in our name? Yes when its
 * authserv-id is ours in any RFC 8601 form, and also when it cannot be
 * read at all: a lax parser downstream (the bill consumer's) may then
 * read our id where we read none, so an unreadable one is not kept.
 */
int     message_ar_claims(const char *value, const char *authserv_id, int *unreadable)
{
    char    id[256];

    *unreadable = rfc8601_authserv_id(value, id, sizeof(id)) != NULL;
    return (*unreadable || rfc8601_same_id(id, authserv_id));
}

const char *message_add_header(struct message *m, const char *name, const char *value,
			               const char *authserv_id)
{
    size_t  size = strlen(name) + strlen(value) + 2;
    int     unreadable;

    if (m->bytes + size > MESSAGE_HEADER_BYTES_MAX)
	return ("message header larger than 8 MB");
    m->bytes += size;
    m->hdr = xrealloc(m->hdr, sizeof(*m->hdr) * (m->count + 1));
    m->hdr[m->count].name = xstrdup(name);
    m->hdr[m->count].value = xstrdup(value);
    m->count++;
    if (strcasecmp(name, "From") == 0) {
	m->from_count++;
	m->from_error = message_parse_address(value, m->from, sizeof(m->from));
    } else if (strcasecmp(name, "Authentication-Results") == 0) {
	m->ar_count++;
	if (message_ar_claims(value, authserv_id, &unreadable)) {
	    if (m->forged_count == m->forged_alloc)
		m->forged = xrealloc(m->forged, sizeof(*m->forged)
				     * (m->forged_alloc = 2 * m->forged_alloc + 16));
	    m->forged[m->forged_count++] = m->ar_count;
	    m->unreadable += unreadable;
	}
    }
    return (NULL);
}

/*
 * message_parse_address - the one mailbox of a From: value (rfc5322(3):
 * strict, so that we sign for the address receivers read), lower case
 * domain; NULL or why not.
 */
const char *message_parse_address(const char *value, char *buf, size_t len)
{
    const char *err = rfc5322_mailbox(value, buf, len);

    if (err)
	buf[0] = 0;
    return (err);
}

/*
 * message_t_before_drift - libopendkim's "in the future" test subtracts its
 * clock drift (300 s) from t= unsigned: a t= below that wraps around and
 * reads as the future. Such a signature stays unverified (libopendkim
 * stops there) but its reason must not say "future" (helper-126).
 */
static int message_t_before_drift(DKIM_SIGINFO *sig)
{
    const char *t = (const char *) dkim_sig_gettagvalue(sig, 0, (u_char *) "t");
    char   *end;
    unsigned long long v;

    if (t == NULL || *t < '0' || *t > '9')
	return (0);
    errno = 0;
    v = strtoull(t, &end, 10);
    return (errno == 0 && *end == 0 && v < 300);
}

static const char *message_result(DKIM_SIGINFO *sig, const char **reason)
{
    unsigned flags = dkim_sig_getflags(sig);
    int     err = dkim_sig_geterror(sig);

    *reason = err != DKIM_SIGERROR_OK ? dkim_sig_geterrorstr(err) : NULL;
    if (err == DKIM_SIGERROR_FUTURE && message_t_before_drift(sig))
	*reason = "signature timestamp within 300 s after 1970: libopendkim cannot check it";
    if ((flags & DKIM_SIGFLAG_PASSED) && dkim_sig_getbh(sig) == DKIM_SIGBH_MATCH)
	return ("pass");
    /* a key record mdns(3) kept from libopendkim ("no key" to it) */
    if (err == DKIM_SIGERROR_NOKEY) {
	switch (mdns_keyrec_verdict((const char *) dkim_sig_getselector(sig),
				    (const char *) dkim_sig_getdomain(sig), reason)) {
	case MDNS_KEYREC_INVALID:
	    return ("permerror");
	case MDNS_KEYREC_TOOSMALL:
	    return ("policy");
	}
    }
    switch (err) {
    case DKIM_SIGERROR_KEYFAIL:
	return ("temperror");
    case DKIM_SIGERROR_OK:
    case DKIM_SIGERROR_BADSIG:
	if (!*reason)
	    *reason = dkim_sig_getbh(sig) == DKIM_SIGBH_MISMATCH ? "body hash mismatch"
		: "signature verification failed";
	return ("fail");
    case DKIM_SIGERROR_EXPIRED:
    case DKIM_SIGERROR_FUTURE:
    case DKIM_SIGERROR_KEYTOOSMALL:
	return ("policy");
    default:
	return ("permerror");
    }
}

static void message_append(char **out, size_t *len, const char *fmt,...)
	__attribute__((format(printf, 3, 4)));

static void message_append(char **out, size_t *len, const char *fmt,...)
{
    va_list ap;
    int     n;

    va_start(ap, fmt);				/* measure, then write: no truncation */
    n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0)
	return;
    *out = xrealloc(*out, *len + n + 1);
    va_start(ap, fmt);
    vsnprintf(*out + *len, n + 1, fmt, ap);
    va_end(ap);
    *len += n;
}

/*
 * Headers RFC 5322 3.6 allows once, and the message's own MIME headers
 * (RFC 2045 and 2183 give each part one): a signature whose h= names
 * one of them fewer times than the message has it (a Subject: or From:
 * put on top of a signed message) does not vouch for what readers
 * show, which is usually the top one. A Content-Type: on top with
 * another boundary makes readers (and Dovecot, and so the webhook's
 * attachments) split a signed body into parts its signer never made.
 * From counts even when h= omits it (RFC 6376 requires it signed); the
 * others once h= names them.
 */
static const struct {
    const char *name;
    const char *reason;
} message_once[] = {
    {"From", "a From: header the signature does not cover"},
    {"Sender", "a Sender: header the signature does not cover"},
    {"Reply-To", "a Reply-To: header the signature does not cover"},
    {"To", "a To: header the signature does not cover"},
    {"Cc", "a Cc: header the signature does not cover"},
    {"Subject", "a Subject: header the signature does not cover"},
    {"Date", "a Date: header the signature does not cover"},
    {"Message-ID", "a Message-ID: header the signature does not cover"},
    {"In-Reply-To", "an In-Reply-To: header the signature does not cover"},
    {"References", "a References: header the signature does not cover"},
    {"MIME-Version", "a MIME-Version: header the signature does not cover"},
    {"Content-Type", "a Content-Type: header the signature does not cover"},
    {"Content-Transfer-Encoding",
    "a Content-Transfer-Encoding: header the signature does not cover"},
    {"Content-Disposition", "a Content-Disposition: header the signature does not cover"},
};

/* message_signed - how many times a signature's h= names NAME */

static int message_signed(DKIM_SIGINFO *sig, const char *name)
{
    const char *h = (const char *) dkim_sig_gettagvalue(sig, 0, (u_char *) "h");
    size_t  want = strlen(name);
    int     n = 0;

    while (h && *h) {
	size_t  skip = strspn(h, " \t\r\n:"), len;

	h += skip;
	len = strcspn(h, " \t\r\n:");
	n += len == want && strncasecmp(h, name, len) == 0;
	h += len;
    }
    return (n);
}

/* message_uncovered - why a once-only header is not covered, or NULL */

static const char *message_uncovered(DKIM_SIGINFO *sig, const struct message *m)
{
    for (size_t k = 0; k < sizeof(message_once) / sizeof(message_once[0]); k++) {
	int     signed_n = message_signed(sig, message_once[k].name), have = 0;

	if (k > 0 && signed_n == 0)
	    continue;
	for (int i = 0; i < m->count && have <= signed_n; i++)
	    have += strcasecmp(m->hdr[i].name, message_once[k].name) == 0;
	if (signed_n < have)
	    return (message_once[k].reason);
    }
    return (NULL);
}

/*
 * message_sig_result - one signature's RFC 8601 result, as our A-R says
 * it (DMARC takes its DKIM results from here too)
 */
const char *message_sig_result(DKIM *dkim, DKIM_SIGINFO *sig, const struct message *m,
			               const char **reason)
{
    const char *result = message_result(sig, reason), *why;
    ssize_t msglen = -1, canonlen = -1, signlen = -1;
    dkim_alg_t alg;
    const char *ktag;

    if (strcmp(result, "pass") == 0 && (why = message_uncovered(sig, m)) != NULL) {
	result = "fail";
	*reason = why;
    }
    /* RFC 6376 6.1.2 step 6: a key whose k= is not the signature's
     * algorithm's is a permanent failure; libopendkim tries the key as
     * the signature says (an RSA p= under k=ed25519 passed rsa-sha256) */
    if (strcmp(result, "pass") == 0 && dkim_sig_getsignalg(sig, &alg) == DKIM_STAT_OK
	&& (ktag = (const char *) dkim_sig_gettagvalue(sig, 1, (u_char *) "k")) != NULL
	&& strcasecmp(ktag, alg == DKIM_SIGN_ED25519SHA256 ? "ed25519" : "rsa") != 0) {
	result = "permerror";
	*reason = "the key record's k= is not the signature's algorithm";
    }
    /* RFC 8301 3.1: verifiers MUST NOT consider rsa-sha1 valid (SHA-1
     * chosen-prefix collisions); libopendkim still passes it */
    if (strcmp(result, "pass") == 0 && dkim_sig_getsignalg(sig, &alg) == DKIM_STAT_OK
	&& alg == DKIM_SIGN_RSASHA1) {
	result = "policy";
	*reason = "rsa-sha1 is not accepted (RFC 8301)";
    }

    /*
     * l= shorter than the body: libopendkim (and dkimpy) pass a signature
     * over the first l= bytes, and anyone may append text (new bank
     * details) below them; RFC 6376 8.2: that text is not signed. The
     * body as received is compared, which may also call "policy" an l=
     * covering a relaxed body with trailing white space: rare, and not
     * passing is the safe side.
     */
    if (strcmp(result, "pass") == 0
	&& dkim_sig_getcanonlen(dkim, sig, &msglen, &canonlen, &signlen) == DKIM_STAT_OK
	&& signlen >= 0 && msglen > signlen) {
	result = "policy";
	*reason = "l= leaves part of the body unsigned";
    }
    return (result);
}

/*
 * message_unlisted - the A-R names MESSAGE_BADSIG_MAX signatures of a
 * kind (its size bounded whatever a sender adds); how many more there
 * were is said, not dropped silently
 */
static void message_unlisted(int count, const char *kind, char **out, size_t *len)
{
    if (count > MESSAGE_BADSIG_MAX)
	message_append(out, len, ";\n\tdkim=permerror (%d more %ssignatures, not listed)",
		       count - MESSAGE_BADSIG_MAX, kind);
}

/* message_bad_results - a permerror resinfo per invalid signature */

static void message_bad_results(const struct message *m, char **out, size_t *len)
{
    for (int i = 0; i < m->badsig_count && i < MESSAGE_BADSIG_MAX; i++) {
	const char *domain = m->badsig[i].domain;
	char   *d = *domain ? rfc8601_value(domain) : NULL;

	message_append(out, len, ";\n\tdkim=permerror (%s)%s%s", m->badsig[i].why,
		       d ? " header.d=" : "", d ? d : "");
	free(d);
    }
    message_unlisted(m->badsig_count, "invalid ", out, len);
}

/*
 * message_header_b - the signature's header.b (RFC 6008): the shortest
 * prefix of b=, at least 8 characters, that no other signature of the
 * message shares (dkim_get_sigsubstring() finds that length); the whole
 * b= when another signature has the same. A fixed 8 let a forged
 * signature whose b= begins as a good one's show the good one's header.b.
 */
static char *message_header_b(DKIM *dkim, DKIM_SIGINFO *sig)
{
    const char *full = (const char *) dkim_sig_gettagvalue(sig, 0, (u_char *) "b");
    size_t  size = full ? strlen(full) + 1 : 1, blen = size;
    char   *b = xcalloc(1, size);

    if (full && dkim_get_sigsubstring(dkim, sig, b, &blen) == DKIM_STAT_OK)
	b[blen < size ? blen : size - 1] = 0;
    else
	b[0] = 0;
    return (b);
}

/*
 * message_unverified - a permerror resinfo per signature libopendkim was
 * given but verified nothing of (dkim_eoh() refused the header)
 */
static void message_unverified(const struct message *m, char **out, size_t *len)
{
    const char *why = m->eoh_status != DKIM_STAT_SYNTAX ? "signature not verified"
	: m->from_count == 0 ? "no From: header, signature not verified"
	: "From: header unreadable, signature not verified";

    for (int i = 0; i < m->sig_count && i < MESSAGE_BADSIG_MAX; i++) {
	const char *domain = m->sig_domain[i];
	char   *d = *domain ? rfc8601_value(domain) : NULL;

	message_append(out, len, ";\n\tdkim=permerror (%s)%s%s", why, d ? " header.d=" : "",
		       d ? d : "");
	free(d);
    }
    message_unlisted(m->sig_count, "unverified ", out, len);
}

char   *message_auth_results(DKIM *dkim, DKIM_STAT eom_status, const char *authserv_id,
			             const struct message *m)
{
    DKIM_SIGINFO **sigs = NULL;
    int     nsigs = 0;
    char   *out = NULL;
    size_t  len = 0;

    message_append(&out, &len, " %s", authserv_id);	/* SMFIP_HDR_LEADSPC */
    message_bad_results(m, &out, &len);
    if (eom_status == DKIM_STAT_NOSIG
	|| dkim_getsiglist(dkim, &sigs, &nsigs) != DKIM_STAT_OK || nsigs == 0) {
	if (eom_status != DKIM_STAT_NOSIG && m->eoh_status != DKIM_STAT_OK
	    && m->eoh_status != DKIM_STAT_NOSIG && m->sig_count > 0)
	    message_unverified(m, &out, &len);
	else if (m->badsig_count == 0)
	    message_append(&out, &len, ";\n\tdkim=none%s", eom_status == DKIM_STAT_NOSIG ?
			   " (no signatures found)" : "");
	return (out);
    }
    for (int i = 0; i < nsigs; i++) {
	const char *reason, *result;
	const char *domain = (const char *) dkim_sig_getdomain(sigs[i]);
	const char *sel = (const char *) dkim_sig_getselector(sigs[i]);
	char    alg[32] = "", why[200] = "", *b;
	static const char *const known_alg[] = {"rsa-sha256", "ed25519-sha256", "rsa-sha1"};
	const char *tag;
	char   *d, *s;

	if (dkim_sig_getflags(sigs[i]) & DKIM_SIGFLAG_IGNORE)
	    continue;				/* past verify_signatures_max */
	result = message_sig_result(dkim, sigs[i], m, &reason);
	b = message_header_b(dkim, sigs[i]);
	/* the signature's own a=: libopendkim leaves its algorithm unset
	   (rsa-sha1) for one it refused before reading it (i= outside d=,
	   t= in the future) */
	if ((tag = (const char *) dkim_sig_gettagvalue(sigs[i], 0, (u_char *) "a")) != NULL)
	    for (size_t k = 0; k < sizeof(known_alg) / sizeof(known_alg[0]); k++)
		if (strcasecmp(tag, known_alg[k]) == 0)
		    snprintf(alg, sizeof(alg), "%s", known_alg[k]);
	if (reason && strcmp(result, "pass") != 0)
	    snprintf(why, sizeof(why), " (%s)", reason);
	/* d= and s= are the sender's text: quoted unless tokens, so no
	 * value can read as another resinfo ("x dkim=pass") */
	d = rfc8601_value(domain ? domain : "unknown");
	s = rfc8601_value(sel ? sel : "unknown");
	message_append(&out, &len, ";\n\tdkim=%s%s header.d=%s", result, why, d);
	if (strspn(b, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/=")
	    != strlen(b))
	    b[0] = 0;				/* not base64: not ours to repeat */
	message_append(&out, &len, " header.s=%s header.a=%s header.b=%s",
		       s, alg[0] ? alg : "unknown", b[0] ? b : "none");
	free(d);
	free(s);
	free(b);
    }
    return (out);
}

int     message_signature_ok(struct message *m, const char *name, const char *value)
{
    struct sigtags_result r;

    if (strcasecmp(name, DKIM_SIGNHEADER) != 0)
	return (1);
    if (sigtags_check(value, &r) == 0) {
	if (m->sig_count < MESSAGE_BADSIG_MAX)
	    memcpy(m->sig_domain[m->sig_count], r.domain, sizeof(r.domain));
	m->sig_count++;
	return (1);
    }
    if (m->badsig_count < MESSAGE_BADSIG_MAX)
	m->badsig[m->badsig_count] = r;
    m->badsig_count++;
    return (0);
}

/* message_ignored - signatures left unverified (policy_prescreen()) */

int     message_ignored(DKIM *dkim)
{
    DKIM_SIGINFO **sigs = NULL;
    int     nsigs = 0, n = 0;

    if (dkim_getsiglist(dkim, &sigs, &nsigs) == DKIM_STAT_OK)
	for (int i = 0; i < nsigs; i++)
	    n += (dkim_sig_getflags(sigs[i]) & DKIM_SIGFLAG_IGNORE) != 0;
    return (n);
}

static int message_listed(const char *name, char **list)
{
    for (; list && *list; list++)
	if (strcasecmp(name, *list) == 0)
	    return (1);
    return (0);
}

/*
 * message_longest_header - the longest physical line, as Postfix will
 * write it ("Name:" then the value, fold by fold, CR excluded), of the
 * headers named in either list (those a signature covers); *which names
 * its header. Of any other header only "Name:" counts: Postfix's break
 * of a longer line lands in its value, a fold in a header no signature
 * covers, but one inside the name leaves a line without a colon that
 * ends the header section for the next reader (helper-99: a 1202-octet
 * name, every signature failed and Python read no From:).
 */
size_t  message_longest_header(const struct message *m, char **names, char **more,
			               const char **which)
{
    size_t  longest = 0;

    *which = NULL;
    for (int i = 0; i < m->count; i++) {
	const char *line = m->hdr[i].value, *nl;
	size_t  prefix = strlen(m->hdr[i].name) + 1, len;

	if (!message_listed(m->hdr[i].name, names) && !message_listed(m->hdr[i].name, more)) {
	    if (prefix > longest) {
		longest = prefix;
		*which = m->hdr[i].name;
	    }
	    continue;
	}
	for (;; line = nl + 1, prefix = 0) {
	    nl = strchr(line, '\n');
	    len = prefix + (nl ? (size_t) (nl - line) : strlen(line));
	    if (nl && nl > line && nl[-1] == '\r')
		len--;
	    if (len > longest) {
		longest = len;
		*which = m->hdr[i].name;
	    }
	    if (nl == NULL)
		break;
	}
    }
    return (longest);
}

/*
 * message_largest_header - the largest of the headers named in either
 * list, as Postfix's cleanup holds it ("Name:", the value, LF between its
 * lines); *which names it. Past MESSAGE_POSTFIX_HEADER_CUT the milter may
 * have been given less than Postfix stores (message.h).
 */
size_t  message_largest_header(const struct message *m, char **names, char **more,
			               const char **which)
{
    size_t  largest = 0;

    *which = NULL;
    for (int i = 0; i < m->count; i++) {
	const char *v = m->hdr[i].value, *cr;
	size_t  len;

	if (!message_listed(m->hdr[i].name, names) && !message_listed(m->hdr[i].name, more))
	    continue;
	len = strlen(m->hdr[i].name) + 1 + strlen(v);
	for (cr = v; (cr = strstr(cr, "\r\n")) != NULL; cr += 2)
	    len--;
	if (len > largest) {
	    largest = len;
	    *which = m->hdr[i].name;
	}
    }
    return (largest);
}

/* message_add_body - count body line lengths across chunks (CRLF excluded) */

void    message_add_body(struct message *m, const unsigned char *chunk, size_t len)
{
    const unsigned char *end = chunk + len, *nl;

    while (chunk < end) {
	if ((nl = memchr(chunk, '\n', end - chunk)) == NULL) {
	    m->body_line += end - chunk;
	    m->body_cr = end[-1] == '\r';
	    return;
	}
	if (nl > chunk) {
	    m->body_line += nl - chunk;
	    m->body_cr = nl[-1] == '\r';
	}
	if (m->body_line - m->body_cr > m->body_longest)
	    m->body_longest = m->body_line - m->body_cr;
	m->body_line = 0;
	m->body_cr = 0;
	chunk = nl + 1;
    }
}

/* message_longest_body - including a last line without CRLF */

size_t  message_longest_body(const struct message *m)
{
    return (m->body_line > m->body_longest ? m->body_line : m->body_longest);
}

void    message_reset(struct message *m)
{
    for (int i = 0; i < m->count; i++) {
	free(m->hdr[i].name);
	free(m->hdr[i].value);
    }
    free(m->hdr);
    free(m->forged);
    memset(m, 0, sizeof(*m));
}
