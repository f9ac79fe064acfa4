/*
 * NAME
 *	authres 3
 * SUMMARY
 *	the event's "authentication": who sent the message, from the one
 *	Authentication-Results header the operator trusts
 * SYNOPSIS
 *	#include "authres.h"
#include "dkimsig.h"
 *
 *	int	authres_trusted(value, trusted_id)
 *	const char *authres_parse(value, &ar)
 *	void	authres_free(&ar)
 *	int	authres_aligned(domain, from_domain)
 *	char	*authres_authentication(trusted_value, from_value, from_count, trusted_id, sigs)
 * DESCRIPTION
 *	authres_trusted() says whether an Authentication-Results value
 *	carries the trusted authserv-id. The id is read by milter-dkim's
 *	own reader (rfc8601_authserv_id(), rfc8601_same_id() in
 *	milter-dkim/rfc5322.c, compiled into this part too): the headers
 *	the milter removes as forged and the header this part trusts are
 *	told apart by one reading of RFC 8601, comments, quoted ids and
 *	folding included. An unreadable id, or a NUL in the value, is
 *	never trusted.
 *
 *	authres_parse() reads the whole value (RFC 8601 section 2.2):
 *	authserv-id [version], then "none" or resinfos "method[/version]
 *	= result [reason=value] [ptype.property=pvalue ...]", CFWS
 *	between any two of them. Keywords are lower-cased. A pvalue is a
 *	quoted string or a run of printable ASCII up to white space, ';'
 *	or a comment (header.b= base64 has '/' and '=', which a strict
 *	token refuses), [local-part] "@" domain included. Anything else
 *	(8-bit bytes, a missing '=', an unterminated comment) makes the
 *	whole header unreadable: it is then as if absent.
 *
 *	authres_aligned() is RFC 7489 relaxed identifier alignment: the
 *	same organizational domain (the registrable domain after Debian's
 *	public suffix list, /usr/share/publicsuffix, through libpsl), or
 *	the same domain. Without the list only the same domain aligns.
 *
 *	authres_authentication() is the JSON object, malloc()ed:
 *
 *	{"authserv_id":ID|null,"from_domain":D|null,"dmarc":R,
 *	"dmarc_policy":P|null,"content_signed":B,"dkim":[{"domain":D|null,
 *	"selector":S|null,"result":R,"aligned":B,"covers_content":B}],
 *	"spf":{"result":R,"domain":D|null,"aligned":B}}
 *
 *	built only from trusted_value (the topmost header with the
 *	trusted id: the one our own host added last; the caller finds
 *	it with authres_trusted(); a value with another id counts for
 *	nothing all the same). A result the header does not carry
 *	is "none", never inferred. from_domain is the domain of the
 *	message's From: (rfc5322_mailbox(), the milter's reader), null
 *	unless there is exactly one From: with exactly one mailbox.
 *	dmarc is the header's first dmarc= result, taken only when its
 *	header.from is from_domain (else "none"): a verdict about another
 *	domain is no verdict about this From. dkim lists every dkim=
 *	result (domain from header.d, else header.i's domain); spf is the
 *	first spf= result (domain from smtp.mailfrom, else smtp.helo).
 *	"aligned" is true only for a pass whose domain aligns (relaxed)
 *	with from_domain. "covers_content" is true only for a pass whose
 *	signature in the message (sigs, the top-level headers: the one
 *	whose b= begins with header.b; dkimsig_content()) signs every
 *	top-level MIME header the message has and has no l=.
 *	"content_signed" is true only when one dkim entry is aligned and
 *	covers_content: DMARC passes for a signature whose h= leaves
 *	Content-Type out, and an added Content-Type makes its signed text
 *	read as other attachments. An SPF pass never makes it true: the
 *	vendor's servers relay what their users hand them, and SPF signs
 *	no byte.
 * DIAGNOSTICS
 *	authres_parse() returns NULL, or a static message.
 */

#include "build_config.h"

#include <ctype.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <jansson.h>
#include <libpsl.h>

#include "authres.h"
#include "dkimsig.h"
#include "rfc5322.h"
#include "wh_alloc.h"

#define AUTHRES_PSL_DAFSA	"/usr/share/publicsuffix/public_suffix_list.dafsa"
#define AUTHRES_PSL_DAT		"/usr/share/publicsuffix/public_suffix_list.dat"

int     authres_trusted(const char *value, size_t len, const char *trusted_id)
{
    char    id[256], *copy;
    int     ok;

    if (trusted_id == NULL || *trusted_id == 0 || memchr(value, 0, len) != NULL)
	return (0);
    copy = wh_strndup(value, len);
    ok = rfc8601_authserv_id(copy, id, sizeof(id)) == NULL && rfc8601_same_id(id, trusted_id);
    free(copy);
    return (ok);
}

/* authres_keyword - Keyword (letters, digits, '-', '_'), lower-cased */

static const char *authres_keyword(const char *p, char **out)
{
    const char *s = p;

    while (isalnum((unsigned char) *p) || *p == '-' || *p == '_')
	p++;
    if (p == s)
	return (NULL);
    *out = wh_strndup(s, (size_t) (p - s));
    for (char *c = *out; *c; c++)
	*c = tolower((unsigned char) *c);
    return (p);
}

static int authres_pvalue_char(int c)
{
    return (c > 32 && c < 127 && c != ';' && c != '(' && c != ')' && c != '"' && c != '\\');
}

/* authres_pvalue - a quoted string or a run of pvalue characters */

static const char *authres_pvalue(const char *p, char **out)
{
    size_t  len = strlen(p) + 1;
    char   *buf = wh_malloc(len), *o = buf;

    *buf = 0;
    if (*p == '"') {
	if ((p = rfc5322_quoted_string(p, buf, len)) == NULL) {
	    free(buf);
	    return (NULL);
	}
	o = buf + strlen(buf);
    }
    while (authres_pvalue_char((unsigned char) *p))	/* "local"@domain too */
	*o++ = *p++;
    *o = 0;
    for (const char *c = buf; *c; c++)
	if ((unsigned char) *c < 32 || (unsigned char) *c > 126) {
	    free(buf);				/* 8-bit or control in quotes */
	    return (NULL);
	}
    /* sized for the rest of the header: a header of many values must
       not hold that much per value */
    *out = wh_realloc(buf, (size_t) (o - buf) + 1);
    return (p);
}

static const char *authres_cfws(const char *p)
{
    return (p == NULL ? NULL : rfc5322_skip_cfws(p));
}

/* authres_prop - "ptype.property = pvalue" (or reason=value), at p */

static const char *authres_prop(const char *p, struct authres_resinfo *ri)
{
    char   *ptype = NULL, *property = NULL, *value = NULL;
    struct authres_prop *prop;

    if ((p = authres_keyword(p, &ptype)) == NULL)
	return (NULL);
    if (strcmp(ptype, "reason") != 0) {
	if ((p = authres_cfws(p)) == NULL || *p++ != '.' || (p = authres_cfws(p)) == NULL
	    || (p = authres_keyword(p, &property)) == NULL) {
	    free(ptype);
	    free(property);
	    return (NULL);
	}
    }
    if ((p = authres_cfws(p)) == NULL || *p++ != '=' || (p = authres_cfws(p)) == NULL
	|| (p = authres_pvalue(p, &value)) == NULL) {
	free(ptype);
	free(property);
	return (NULL);
    }
    ri->props = wh_realloc(ri->props, (ri->nprops + 1) * sizeof(*ri->props));
    prop = &ri->props[ri->nprops++];
    if (property != NULL) {
	prop->name = wh_malloc(strlen(ptype) + strlen(property) + 2);
	strcpy(prop->name, ptype);
	strcat(prop->name, ".");
	strcat(prop->name, property);
	free(ptype);
	free(property);
    } else {
	prop->name = ptype;
    }
    prop->value = value;
    return (p);
}

/* authres_resinfo - after a ';': methodspec [reasonspec] [propspec...] */

static const char *authres_resinfo(const char *p, struct authres *ar)
{
    struct authres_resinfo *ri;

    ar->res = wh_realloc(ar->res, (ar->count + 1) * sizeof(*ar->res));
    ri = &ar->res[ar->count++];
    memset(ri, 0, sizeof(*ri));
    if ((p = authres_cfws(p)) == NULL || (p = authres_keyword(p, &ri->method)) == NULL
	|| (p = authres_cfws(p)) == NULL)
	return (NULL);
    if (*p == '/') {				/* method-version */
	if ((p = authres_cfws(p + 1)) == NULL || !isdigit((unsigned char) *p))
	    return (NULL);
	while (isdigit((unsigned char) *p))
	    p++;
	if ((p = authres_cfws(p)) == NULL)
	    return (NULL);
    }
    if (*p++ != '=' || (p = authres_cfws(p)) == NULL
	|| (p = authres_keyword(p, &ri->result)) == NULL)
	return (NULL);
    while ((p = authres_cfws(p)) != NULL && *p != ';' && *p != 0)
	if ((p = authres_prop(p, ri)) == NULL)
	    return (NULL);
    return (p);
}

const char *authres_parse(const char *value, struct authres *ar)
{
    const char *p;
    char   *word = NULL;

    memset(ar, 0, sizeof(*ar));
    if (rfc8601_authserv_id(value, ar->authserv_id, sizeof(ar->authserv_id)) != NULL)
	return ("unreadable authserv-id");
    /* past the id (read above: it is well-formed) and its version */
    p = authres_cfws(value);
    if (*p == '"')
	p = rfc5322_quoted_string(p, word = wh_malloc(strlen(p) + 1), strlen(p) + 1);
    else
	p += strcspn(p, " \t\r\n(;");
    free(word);
    p = authres_cfws(p);
    while (isdigit((unsigned char) *p))
	p++;
    p = authres_cfws(p);
    /* no-result: "; none" and nothing else */
    if (*p == ';') {
	const char *q = authres_cfws(p + 1);

	if (q != NULL && strncasecmp(q, "none", 4) == 0
	    && (q = authres_cfws(q + 4)) != NULL && *q == 0)
	    return (NULL);
    }
    while (*p == ';')
	if ((p = authres_resinfo(p + 1, ar)) == NULL) {
	    authres_free(ar);
	    return ("unreadable resinfo");
	}
    if (*p != 0 || ar->count == 0) {
	authres_free(ar);
	return ("unreadable resinfo");
    }
    return (NULL);
}

void    authres_free(struct authres *ar)
{
    for (int i = 0; i < ar->count; i++) {
	for (int k = 0; k < ar->res[i].nprops; k++) {
	    free(ar->res[i].props[k].name);
	    free(ar->res[i].props[k].value);
	}
	free(ar->res[i].props);
	free(ar->res[i].method);
	free(ar->res[i].result);
    }
    free(ar->res);
    memset(ar, 0, sizeof(*ar));
}

/* authres_psl - Debian's public suffix list, loaded once (NULL: none) */

static const psl_ctx_t *authres_psl(void)
{
    static psl_ctx_t *psl;
    static int tried;

    if (!tried) {
	tried = 1;
	if ((psl = psl_load_file(AUTHRES_PSL_DAFSA)) == NULL)
	    psl = psl_load_file(AUTHRES_PSL_DAT);
    }
    return (psl);
}

/* authres_org - the organizational domain (RFC 7489 3.2), lower case */

static char *authres_org(const char *domain)
{
    char   *lower = wh_strdup(domain), *org;
    const char *reg;
    size_t  len;

    for (char *c = lower; *c; c++)
	*c = tolower((unsigned char) *c);
    if ((len = strlen(lower)) > 0 && lower[len - 1] == '.')
	lower[len - 1] = 0;
    if (authres_psl() == NULL || (reg = psl_registrable_domain(authres_psl(), lower)) == NULL)
	return (lower);				/* a public suffix: itself */
    org = wh_strdup(reg);
    free(lower);
    return (org);
}

int     authres_aligned(const char *domain, const char *from_domain)
{
    char   *a, *b;
    int     same;

    if (domain == NULL || from_domain == NULL || *domain == 0 || *from_domain == 0)
	return (0);
    if (rfc8601_same_id(domain, from_domain))
	return (1);
    if (authres_psl() == NULL)
	return (0);
    a = authres_org(domain);
    b = authres_org(from_domain);
    same = strcmp(a, b) == 0 && strchr(a, '.') != NULL;
    free(a);
    free(b);
    return (same);
}

/* authres_prop_get - the value of a property of a resinfo, or NULL */

static const char *authres_prop_get(const struct authres_resinfo *ri, const char *name)
{
    for (int k = 0; k < ri->nprops; k++)
	if (strcmp(ri->props[k].name, name) == 0)
	    return (ri->props[k].value);
    return (NULL);
}

/* authres_domain - the domain of "local@domain", "@domain" or "domain" */

static const char *authres_domain(const char *value)
{
    const char *at = value ? strrchr(value, '@') : NULL;

    return (at ? (at[1] ? at + 1 : NULL) : value);
}

/* authres_str - a JSON string, or null; a domain lower-cased */

static json_t *authres_str(const char *s, int lower)
{
    json_t *j;
    char   *copy;

    if (s == NULL)
	return (json_null());
    copy = wh_strdup(s);
    for (char *c = copy; lower && *c; c++)
	*c = tolower((unsigned char) *c);
    j = json_string(copy);			/* ASCII: authres_pvalue() */
    free(copy);
    return (j ? j : json_null());
}

static void authres_fill(json_t *obj, const struct authres *ar, const char *from_domain,
			         const struct dkimsig_msg *sigs)
{
    json_t *dkim = json_object_get(obj, "dkim"), *spf = json_object_get(obj, "spf");
    int     dmarc_seen = 0, spf_seen = 0;

    for (int i = 0; i < ar->count; i++) {
	const struct authres_resinfo *ri = &ar->res[i];
	int     pass = strcmp(ri->result, "pass") == 0, aligned, covers;

	if (strcmp(ri->method, "dkim") == 0) {
	    const char *d = authres_prop_get(ri, "header.d");
	    json_t *sig = json_object();

	    if (d == NULL)
		d = authres_domain(authres_prop_get(ri, "header.i"));
	    json_object_set_new(sig, "domain", authres_str(d, 1));
	    json_object_set_new(sig, "selector", authres_str(authres_prop_get(ri, "header.s"), 0));
	    json_object_set_new(sig, "result", json_string(ri->result));
	    aligned = pass && authres_aligned(d, from_domain);
	    covers = pass && dkimsig_content(sigs, d, authres_prop_get(ri, "header.b"));
	    json_object_set_new(sig, "aligned", json_boolean(aligned));
	    json_object_set_new(sig, "covers_content", json_boolean(covers));
	    json_array_append_new(dkim, sig);
	    if (aligned && covers)
		json_object_set_new(obj, "content_signed", json_true());
	} else if (strcmp(ri->method, "spf") == 0 && !spf_seen++) {
	    const char *d = authres_domain(authres_prop_get(ri, "smtp.mailfrom"));

	    if (d == NULL)
		d = authres_domain(authres_prop_get(ri, "smtp.helo"));
	    json_object_set_new(spf, "result", json_string(ri->result));
	    json_object_set_new(spf, "domain", authres_str(d, 1));
	    json_object_set_new(spf, "aligned", json_boolean(pass && authres_aligned(d, from_domain)));
	} else if (strcmp(ri->method, "dmarc") == 0 && !dmarc_seen++) {
	    const char *hf = authres_prop_get(ri, "header.from");

	    if (from_domain != NULL && hf != NULL && rfc8601_same_id(hf, from_domain)) {
		json_object_set_new(obj, "dmarc", json_string(ri->result));
		json_object_set_new(obj, "dmarc_policy",
				    authres_str(authres_prop_get(ri, "policy.dmarc"), 1));
	    }
	}
    }
}

char   *authres_authentication(const char *trusted_value, const char *from_value,
				       int from_count, const char *trusted_id,
				       const struct dkimsig_msg *sigs)
{
    char    mailbox[512], *from_domain = NULL, *text;
    json_t *obj = json_object(), *spf = json_object();
    struct authres ar;

    if (from_count == 1 && from_value != NULL
	&& rfc5322_mailbox(from_value, mailbox, sizeof(mailbox)) == NULL)
	from_domain = strrchr(mailbox, '@') + 1;
    json_object_set_new(obj, "authserv_id", authres_str(trusted_id && *trusted_id ?
							 trusted_id : NULL, 0));
    json_object_set_new(obj, "from_domain", authres_str(from_domain, 1));
    json_object_set_new(obj, "dmarc", json_string("none"));
    json_object_set_new(obj, "dmarc_policy", json_null());
    json_object_set_new(obj, "content_signed", json_false());
    json_object_set_new(obj, "dkim", json_array());
    json_object_set_new(spf, "result", json_string("none"));
    json_object_set_new(spf, "domain", json_null());
    json_object_set_new(spf, "aligned", json_false());
    json_object_set_new(obj, "spf", spf);
    if (trusted_value != NULL && authres_parse(trusted_value, &ar) == NULL) {
	if (trusted_id != NULL && rfc8601_same_id(ar.authserv_id, trusted_id))
	    authres_fill(obj, &ar, from_domain, sigs);	/* the caller chose it; still ours */
	authres_free(&ar);
    }
    text = json_dumps(obj, JSON_COMPACT | JSON_PRESERVE_ORDER);
    json_decref(obj);
    if (text == NULL)
	abort();				/* out of memory */
    return (text);
}
