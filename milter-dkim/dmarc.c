/*
 * NAME
 *	dmarc 3
 * SUMMARY
 *	RFC 7489 DMARC for one message
 * SYNOPSIS
 *	#include "dmarc.h"
 *
 *	void	dmarc_check(dns, psl, from_domain, sigs, nsigs, &spf, &result)
 *	const char *dmarc_org_domain(psl, domain)
 *	int	dmarc_aligned(psl, a, b, strict)
 * DESCRIPTION
 *	Policy discovery (RFC 7489 6.6.3): the TXT records of
 *	_dmarc.FROM-DOMAIN that start with "v=DMARC1"; none there, those
 *	of _dmarc.ORG-DOMAIN. Exactly one record is used; several end
 *	discovery ("none", as the RFC says); a temporary DNS failure
 *	ends it with "temperror". The organizational domain is the
 *	registrable domain after the public suffix list (libpsl, with
 *	its default rule "*": names under a TLD the list does not know,
 *	like "test", have one).
 *
 *	The record is parsed by libopendmarc (opendmarc_policy_store_dmarc:
 *	p, sp, adkim, aspf, pct) once cleaned (RFC 7489 6.3: syntax errors
 *	in the remainder of the record are discarded in favour of defaults
 *	or ignored): v=DMARC1, the first p= as written, the first sp=,
 *	adkim=, aspf= and pct= (0 to 100) when valid; any other tag, a tag
 *	given again and a malformed one are dropped (its default applies);
 *	a record without a valid p= but with a rua= holding a URI is read
 *	as p=none (RFC 7489 6.6.3), one without either is refused.
 *	libopendmarc refused a whole
 *	"p=reject" record for fo=zz, ri=24h or pct=150, read pct=abc as
 *	pct=0 and took the last of two p=: each let a spoof of a p=reject
 *	domain through. A record libopendmarc still refuses (no valid
 *	p=), or one longer than DMARC_RECORD_MAX (libopendmarc copies
 *	records into a fixed buffer and would parse a truncated one), is
 *	"permerror".
 *	Alignment and the result are computed here: libopendmarc 1.4's
 *	organizational domain ignores the list's default rule (relaxed
 *	alignment then fails under such TLDs) and its DKIM alignment
 *	depends on the order results are stored in.
 *
 *	pass: a DKIM signature that passed with a d= that aligns with the
 *	From domain (adkim: strict is the same name, relaxed the same
 *	organizational domain), or an SPF pass whose domain aligns (aspf).
 *	Otherwise temperror if SPF or a DKIM signature had a temporary
 *	error (the verdict could have been pass), else fail. The policy
 *	for the From domain is sp= when the record was the organizational
 *	domain's and sp= is given, else p=. reject is set for a fail
 *	under p=reject, sampled by pct=; defer for a temperror where the
 *	policy is reject or unknown.
 */

#include "build_config.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <opendmarc/dmarc.h>

#include "dmarc.h"
#include "xalloc.h"

/* dmarc_is_record - "v" *WSP "=" *WSP "DMARC1" *WSP (";" / end), RFC 7489 6.4 */

int     dmarc_is_record(const char *text, size_t len)
{
    const char *cp = text, *end = text + len;

#define DMARC_WSP() while (cp < end && (*cp == ' ' || *cp == '\t')) cp++
    if (strlen(text) != len || cp == end || *cp++ != 'v')
	return (0);
    DMARC_WSP();
    if (cp == end || *cp++ != '=')
	return (0);
    DMARC_WSP();
    if (end - cp < 6 || strncmp(cp, "DMARC1", 6) != 0)
	return (0);
    cp += 6;
    DMARC_WSP();
    return (cp == end || *cp == ';');
}

/* dmarc_lower - a domain lower-cased, without a trailing dot */

static void dmarc_lower(char *buf, size_t size, const char *domain)
{
    size_t  n = 0;

    for (; *domain && n + 1 < size; domain++)
	buf[n++] = tolower((unsigned char) *domain);
    if (n && buf[n - 1] == '.')
	n--;
    buf[n] = 0;
}

const char *dmarc_org_domain(const psl_ctx_t *psl, const char *domain)
{
    const char *org = psl ? psl_registrable_domain(psl, domain) : NULL;

    return (org ? org : domain);
}

int     dmarc_aligned(const psl_ctx_t *psl, const char *a, const char *b, int strict)
{
    char    x[256], y[256];

    if (a == NULL || b == NULL)
	return (0);
    dmarc_lower(x, sizeof(x), a);
    dmarc_lower(y, sizeof(y), b);
    if (strcmp(x, y) == 0)
	return (1);
    return (!strict && strcmp(dmarc_org_domain(psl, x), dmarc_org_domain(psl, y)) == 0);
}

enum dmarc_found { FOUND_NONE, FOUND_ONE, FOUND_SEVERAL, FOUND_TEMP, FOUND_BAD };

/* dmarc_fetch - the one DMARC record at _dmarc.DOMAIN */

static enum dmarc_found dmarc_fetch(struct mdns *dns, const char *domain, char **record)
{
    char   *name = xasprintf("_dmarc.%s", domain);
    struct dns_answer *ans;
    enum dmarc_found found = FOUND_NONE;
    int     status, n = 0;

    mdns_budget_favour(1);			/* the reserve: see mdns(3) */
    status = mdns_lookup(dns, name, DNS_T_TXT, &ans);
    mdns_budget_favour(0);
    free(name);
    if (status == DNS_TEMPFAIL)
	found = FOUND_TEMP;
    for (int i = 0; status == DNS_OK && i < ans->count; i++) {
	const char *text = (const char *) ans->rr[i].data;

	if (!dmarc_is_record(text, ans->rr[i].len))
	    continue;
	if (n++ == 0)
	    *record = xstrdup(text);
    }
    if (n > 1) {
	free(*record);
	*record = NULL;
	found = FOUND_SEVERAL;
    } else if (n == 1 && strlen(*record) > DMARC_RECORD_MAX) {
	found = FOUND_BAD;
    } else if (n == 1) {
	found = FOUND_ONE;
    }
    dns_answer_free(&ans);
    return (found);
}

/* dmarc_valid - is value one of the words of list (case-insensitive)? */

static int dmarc_valid(const char *value, size_t len, const char *const *list)
{
    for (; *list; list++)
	if (strlen(*list) == len && strncasecmp(value, *list, len) == 0)
	    return (1);
    return (0);
}

/* dmarc_pct_ok - 1*3DIGIT, at most 100 */

static int dmarc_pct_ok(const char *value, size_t len)
{
    return (len > 0 && len <= 3 && strspn(value, "0123456789") >= len
	    && atoi(value) <= 100);
}

/*
 * dmarc_clean - the record as libopendmarc is to read it (see above): a
 * copy to be freed; the record starts with "v=DMARC1" (dmarc_is_record())
 */
/* dmarc_rua_ok - a rua= value holding a URI (RFC 7489 6.4: "mailto:x@y") */

static int dmarc_rua_ok(const char *value, size_t len)
{
    for (size_t i = 0; i < len;) {
	size_t  n = strcspn(value + i, ",");
	size_t  s = strspn(value + i, " \t"), j;

	n = n > len - i ? len - i : n;
	for (j = s; j < n && (isalnum((unsigned char) value[i + j])
			      || strchr("+.-", value[i + j])); j++)
	     /* void */ ;
	if (j > s && isalpha((unsigned char) value[i + s]) && j + 1 < n && value[i + j] == ':'
	    && !isspace((unsigned char) value[i + j + 1]))
	    return (1);
	i += n + 1;
    }
    return (0);
}

static char *dmarc_clean(const char *record)
{
    static const char *const policies[] = {"none", "quarantine", "reject", 0};
    static const char *const modes[] = {"r", "s", 0};
    static const char *const tags[] = {"p", "sp", "adkim", "aspf", "pct", "rua", 0};
    const char *cp = record + strcspn(record, ";");
    char   *out = xstrdup("v=DMARC1"), *more;
    unsigned seen = 0;
    int     p_valid = 0, p_given = 0, rua_ok = 0;

    while (*cp == ';') {
	const char *name = cp + 1 + strspn(cp + 1, " \t"), *eq, *value, *end;
	size_t  name_len, len;
	int     k;

	cp = name + strcspn(name, ";");
	if ((eq = memchr(name, '=', cp - name)) == NULL)
	    continue;
	for (name_len = eq - name; name_len && strchr(" \t", name[name_len - 1]); name_len--)
	     /* void */ ;
	value = eq + 1 + strspn(eq + 1, " \t");
	for (end = cp; end > value && strchr(" \t", end[-1]); end--)
	     /* void */ ;
	len = end - value;
	for (k = 0; tags[k] && !(strlen(tags[k]) == name_len
				 && strncasecmp(name, tags[k], name_len) == 0); k++)
	     /* void */ ;
	if (tags[k] == NULL || (seen & (1u << k)))
	    continue;				/* unused by us, or again */
	seen |= 1u << k;
	if (k == 5) {
	    rua_ok = dmarc_rua_ok(value, len);
	    continue;
	}
	if (k == 0) {
	    p_given = 1;
	    p_valid = dmarc_valid(value, len, policies);
	}
	if ((k == 1 && !dmarc_valid(value, len, policies))
	    || ((k == 2 || k == 3) && !dmarc_valid(value, len, modes))
	    || (k == 4 && !dmarc_pct_ok(value, len)))
	    continue;				/* malformed: the default */
	more = xasprintf("%s; %s=%.*s", out, tags[k], (int) len, value);
	free(out);
	out = more;
    }
    /* RFC 7489 6.6.3: no valid p= but a reporting address: p=none */
    if (!p_valid && rua_ok) {
	char   *keep = out;

	if (p_given && (more = strstr(out, "; p=")) != NULL) {
	    size_t  n = strcspn(more + 2, ";");

	    memmove(more, more + 2 + n, strlen(more + 2 + n) + 1);
	}
	out = xasprintf("%s; p=none", keep);
	free(keep);
    }
    return (out);
}

static const char *dmarc_policy_name(int p)
{
    return (p == DMARC_RECORD_P_REJECT ? "reject" : p == DMARC_RECORD_P_QUARANTINE ?
	    "quarantine" : p == DMARC_RECORD_P_NONE ? "none" : "unknown");
}

/* dmarc_align - the verdict from DKIM and SPF; *temp: a temporary error seen */

static int dmarc_align(const psl_ctx_t *psl, const char *from, const struct dmarc_sig *sigs,
		               int nsigs, const struct spf_result *spf, int adkim, int aspf,
		               int *dkim_ok, int *spf_ok, int *temp)
{
    /*
     * A temporary error counts only for an identity that would align: one
     * of another domain (the spoofer's own SPF or key, on a DNS server
     * that never answers) cannot make a pass, and let it turn the 550 of
     * p=reject into a 451 the spoofer's MTA retries for days.
     */
    *dkim_ok = *spf_ok = *temp = 0;
    for (int i = 0; i < nsigs; i++) {
	if (strcmp(sigs[i].result, "temperror") == 0
	    && dmarc_aligned(psl, sigs[i].domain, from, adkim == DMARC_RECORD_A_STRICT))
	    *temp = 1;
	if (strcmp(sigs[i].result, "pass") == 0
	    && dmarc_aligned(psl, sigs[i].domain, from, adkim == DMARC_RECORD_A_STRICT))
	    *dkim_ok = 1;
    }
    if (spf && strcmp(spf->result, "temperror") == 0
	&& dmarc_aligned(psl, spf->domain, from, aspf == DMARC_RECORD_A_STRICT))
	*temp = 1;
    if (spf && strcmp(spf->result, "pass") == 0
	&& dmarc_aligned(psl, spf->domain, from, aspf == DMARC_RECORD_A_STRICT))
	*spf_ok = 1;
    return (*dkim_ok || *spf_ok);
}

/* dmarc_apply - parse the record (libopendmarc) and decide */

static void dmarc_apply(const psl_ctx_t *psl, const char *from, const char *org_used,
			        const char *record, const struct dmarc_sig *sigs, int nsigs,
			        const struct spf_result *spf, struct dmarc_result *out)
{
    DMARC_POLICY_T *pctx = opendmarc_policy_connect_init((u_char *) "0.0.0.0", 0);
    int     status, p = 0, sp = 0, adkim = 0, aspf = 0, pct = 100, dkim_ok, spf_ok, temp;
    char   *clean = dmarc_clean(record);

    status = opendmarc_policy_store_dmarc(pctx, (u_char *) clean, (u_char *) from,
					  (u_char *) org_used);
    free(clean);
    if (status != DMARC_PARSE_OKAY) {
	out->result = "permerror";
	snprintf(out->comment, sizeof(out->comment), "DMARC record of %s refused: %s",
		 org_used ? org_used : from, opendmarc_policy_status_to_str(status));
	opendmarc_policy_connect_shutdown(pctx);
	return;
    }
    opendmarc_policy_fetch_p(pctx, &p);
    opendmarc_policy_fetch_sp(pctx, &sp);
    opendmarc_policy_fetch_adkim(pctx, &adkim);
    opendmarc_policy_fetch_aspf(pctx, &aspf);
    opendmarc_policy_fetch_pct(pctx, &pct);
    opendmarc_policy_connect_shutdown(pctx);
    out->policy = org_used && sp != DMARC_RECORD_P_UNSPECIFIED ? sp : p;
    if (dmarc_align(psl, from, sigs, nsigs, spf, adkim, aspf, &dkim_ok, &spf_ok, &temp))
	out->result = "pass";
    else
	out->result = temp ? "temperror" : "fail";
    out->reject = strcmp(out->result, "fail") == 0 && out->policy == DMARC_RECORD_P_REJECT
	&& (pct >= 100 || random() % 100 < pct);
    out->defer = strcmp(out->result, "temperror") == 0 && out->policy == DMARC_RECORD_P_REJECT;
    snprintf(out->comment, sizeof(out->comment),
	     "p=%s sp=%s pct=%d adkim=%c aspf=%c, dkim %saligned, spf %saligned%s%s",
	     dmarc_policy_name(p), dmarc_policy_name(sp ? sp : p), pct,
	     adkim == DMARC_RECORD_A_STRICT ? 's' : 'r', aspf == DMARC_RECORD_A_STRICT ? 's' : 'r',
	     dkim_ok ? "" : "not ", spf_ok ? "" : "not ", org_used ? ", record of " : "",
	     org_used ? org_used : "");
}

void    dmarc_check(struct mdns *dns, const psl_ctx_t *psl, const char *from_domain,
		            const struct dmarc_sig *sigs, int nsigs,
		            const struct spf_result *spf, struct dmarc_result *out)
{
    char    from[256], org[256];
    char   *record = NULL;
    const char *org_used = NULL;
    enum dmarc_found found;

    memset(out, 0, sizeof(*out));
    dmarc_lower(from, sizeof(from), from_domain);
    snprintf(out->from_domain, sizeof(out->from_domain), "%s", from);
    snprintf(org, sizeof(org), "%s", dmarc_org_domain(psl, from));
    if (!spf_domain_ok(from)) {
	out->result = "permerror";
	snprintf(out->comment, sizeof(out->comment), "From: domain is not a valid name");
	return;
    }
    if ((found = dmarc_fetch(dns, from, &record)) == FOUND_NONE && strcmp(org, from) != 0)
	if ((found = dmarc_fetch(dns, org, &record)) != FOUND_NONE)
	    org_used = org;
    switch (found) {
    case FOUND_ONE:
	dmarc_apply(psl, from, org_used, record, sigs, nsigs, spf, out);
	break;
    case FOUND_NONE:
	out->result = "none";
	snprintf(out->comment, sizeof(out->comment), "no DMARC record");
	break;
    case FOUND_SEVERAL:
	out->result = "none";
	snprintf(out->comment, sizeof(out->comment), "several DMARC records at %s",
		 org_used ? org_used : from);
	break;
    case FOUND_BAD:
	out->result = "permerror";
	snprintf(out->comment, sizeof(out->comment), "DMARC record longer than %d bytes",
		 DMARC_RECORD_MAX);
	break;
    case FOUND_TEMP:
	out->result = "temperror";
	out->defer = 1;				/* the policy may be reject */
	snprintf(out->comment, sizeof(out->comment), "DNS failure looking up the DMARC record");
	break;
    }
    free(record);
}
