/*
 * NAME
 *	message 3
 * SUMMARY
 *	headers of one message; From: address; Authentication-Results
 * SYNOPSIS
 *	#include "message.h"
 *
 *	const char *message_add_header(&m, name, value, authserv_id)
 *	int	message_parse_address(value, buf, len)
 *	char	*message_auth_results(dkim, eom_status, authserv_id)
 * DESCRIPTION
 *	Headers are kept until the end of the header so that libopendkim
 *	sees them in order once the sign/verify decision is made. From:
 *	headers are counted (zero or several: not signed) and the address
 *	of one is extracted. Authentication-Results headers whose
 *	authserv-id is ours are remembered by position, to be deleted
 *	(nobody outside may speak in our name).
 *
 *	message_auth_results() builds the RFC 8601 value: one resinfo per
 *	signature, "dkim=pass header.d=D header.s=S header.a=A
 *	header.b=B", or fail / neutral / temperror / permerror / policy
 *	with a reason comment; "dkim=none" for an unsigned message.
 * DIAGNOSTICS
 *	message_add_header() returns NULL or a static error (headers over
 *	MESSAGE_HEADER_BYTES_MAX in total).
 */

#include "build_config.h"

#include <ctype.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "message.h"
#include "xalloc.h"

/* message_authserv_id - the authserv-id of an A-R value (before ';') */

static int message_claims(const char *value, const char *id)
{
    size_t  n = strlen(id);

    while (isspace((unsigned char) *value))
	value++;
    return (strncasecmp(value, id, n) == 0
	    && (value[n] == ';' || value[n] == 0 || isspace((unsigned char) value[n])));
}

const char *message_add_header(struct message *m, const char *name, const char *value,
			               const char *authserv_id)
{
    size_t  size = strlen(name) + strlen(value) + 2;

    if (m->bytes + size > MESSAGE_HEADER_BYTES_MAX)
	return ("message header larger than 8 MB");
    m->bytes += size;
    m->hdr = xrealloc(m->hdr, sizeof(*m->hdr) * (m->count + 1));
    m->hdr[m->count].name = xstrdup(name);
    m->hdr[m->count].value = xstrdup(value);
    m->count++;
    if (strcasecmp(name, "From") == 0) {
	m->from_count++;
	m->from_ok = message_parse_address(value, m->from, sizeof(m->from));
    } else if (strcasecmp(name, "Authentication-Results") == 0) {
	m->ar_count++;
	if (message_claims(value, authserv_id)
	    && m->forged_count < (int) (sizeof(m->forged) / sizeof(m->forged[0])))
	    m->forged[m->forged_count++] = m->ar_count;
    }
    return (NULL);
}

/*
 * message_parse_address - the one addr-spec of a From: value, lower
 * case domain. "Name <a@b>", "a@b (comment)", "a@b". Groups and
 * lists (a comma outside quotes and angle brackets) are refused.
 */
int     message_parse_address(const char *value, char *buf, size_t len)
{
    const char *start = NULL, *end = NULL, *cp;
    int     quoted = 0, depth = 0, angle = 0;
    char   *at;
    size_t  n;

    for (cp = value; *cp; cp++) {
	if (*cp == '\\' && cp[1]) {
	    cp++;
	} else if (*cp == '"' && depth == 0) {
	    quoted = !quoted;
	} else if (quoted) {
	    continue;
	} else if (*cp == '(') {
	    depth++;
	} else if (*cp == ')' && depth > 0) {
	    depth--;
	} else if (depth == 0 && *cp == '<') {
	    if (angle++)
		return (0);
	    start = cp + 1;
	    if ((end = strchr(start, '>')) == NULL)
		return (0);
	    cp = end;
	} else if (depth == 0 && (*cp == ',' || *cp == ';' || *cp == ':')) {
	    return (0);
	}
    }
    if (start == NULL) {			/* bare addr-spec, maybe a comment */
	for (start = value; isspace((unsigned char) *start); start++)
	     /* void */ ;
	for (end = start; *end && !isspace((unsigned char) *end) && *end != '('; end++)
	     /* void */ ;
    }
    n = end - start;
    if (n == 0 || n >= len)
	return (0);
    memcpy(buf, start, n);
    buf[n] = 0;
    if ((at = strrchr(buf, '@')) == NULL || at == buf || at[1] == 0)
	return (0);
    for (char *c = buf; *c; c++)
	if ((unsigned char) *c <= ' ' || *c == '<' || *c == '>')
	    return (0);
    for (char *c = at + 1; *c; c++)
	*c = tolower((unsigned char) *c);
    return (1);
}

static const char *message_result(DKIM_SIGINFO *sig, const char **reason)
{
    unsigned flags = dkim_sig_getflags(sig);
    int     err = dkim_sig_geterror(sig);

    *reason = err != DKIM_SIGERROR_OK ? dkim_sig_geterrorstr(err) : NULL;
    if ((flags & DKIM_SIGFLAG_PASSED) && dkim_sig_getbh(sig) == DKIM_SIGBH_MATCH)
	return ("pass");
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
    char    piece[1024];
    va_list ap;
    int     n;

    va_start(ap, fmt);
    n = vsnprintf(piece, sizeof(piece), fmt, ap);
    va_end(ap);

    if (n < 0)
	return;
    if ((size_t) n >= sizeof(piece))
	n = sizeof(piece) - 1;
    *out = xrealloc(*out, *len + n + 1);
    memcpy(*out + *len, piece, n + 1);
    *len += n;
}

char   *message_auth_results(DKIM *dkim, DKIM_STAT eom_status, const char *authserv_id)
{
    DKIM_SIGINFO **sigs = NULL;
    int     nsigs = 0;
    char   *out = NULL;
    size_t  len = 0;

    message_append(&out, &len, " %s", authserv_id);	/* SMFIP_HDR_LEADSPC */
    if (eom_status == DKIM_STAT_NOSIG
	|| dkim_getsiglist(dkim, &sigs, &nsigs) != DKIM_STAT_OK || nsigs == 0) {
	message_append(&out, &len, ";\n\tdkim=none%s", eom_status == DKIM_STAT_NOSIG ?
		       " (no signatures found)" : "");
	return (out);
    }
    for (int i = 0; i < nsigs; i++) {
	const char *reason, *result = message_result(sigs[i], &reason);
	const char *domain = (const char *) dkim_sig_getdomain(sigs[i]);
	const char *sel = (const char *) dkim_sig_getselector(sigs[i]);
	char    b[16] = "", alg[32] = "", why[200] = "";
	size_t  blen = 9;
	dkim_alg_t a;

	if (dkim_get_sigsubstring(dkim, sigs[i], b, &blen) != DKIM_STAT_OK)
	    b[0] = 0;
	b[blen < 8 ? blen : 8] = 0;
	if (dkim_sig_getsignalg(sigs[i], &a) == DKIM_STAT_OK)
	    snprintf(alg, sizeof(alg), "%s", a == DKIM_SIGN_ED25519SHA256 ? "ed25519-sha256"
		     : a == DKIM_SIGN_RSASHA1 ? "rsa-sha1" : "rsa-sha256");
	if (reason && strcmp(result, "pass") != 0)
	    snprintf(why, sizeof(why), " (%s)", reason);
	message_append(&out, &len, ";\n\tdkim=%s%s header.d=%s", result, why,
		       domain ? domain : "unknown");
	message_append(&out, &len, " header.s=%s header.a=%s header.b=%s",
		       sel ? sel : "unknown", alg[0] ? alg : "unknown", b[0] ? b : "none");
    }
    return (out);
}

void    message_reset(struct message *m)
{
    for (int i = 0; i < m->count; i++) {
	free(m->hdr[i].name);
	free(m->hdr[i].value);
    }
    free(m->hdr);
    memset(m, 0, sizeof(*m));
}
