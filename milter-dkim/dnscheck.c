/*
 * NAME
 *	dnscheck 3
 * SUMMARY
 *	is each KeyTable key published in DNS? (milter-dkim -t --dns)
 * SYNOPSIS
 *	#include "dnscheck.h"
 *
 *	struct dnscheck *dnscheck_open(cfg, &err)
 *	int	dnscheck_row(check, domain, selector, &key, why, whylen)
 *	int	dnscheck_tables(cfg, &tables, key_table_name)
 *	void	dnscheck_close(&check)
 * DESCRIPTION
 *	dnscheck_row() looks up the TXT records of
 *	selector._domainkey.domain at each server of dns_servers in turn
 *	(the milter may ask any of them) and judges them against the key
 *	(dnskey(3)): published and matching, missing (NXDOMAIN, or the
 *	name without a TXT record), different key, revoked, syntax
 *	error, or a temporary DNS error (timeout, SERVFAIL, REFUSED, no
 *	server answering): never reported as missing, and never good
 *	enough to activate a key. The first server whose verdict is not
 *	"published and matching" decides, and the reason names it.
 *
 *	Lookups go to the servers of the dns_servers setting (common
 *	dns(3); default the system's resolver). With dns_test_file set,
 *	the records come from that file instead ("name value" lines, as
 *	libopendkim reads it), which is what the milter verifies with.
 *
 *	dnscheck_tables() checks every KeyTable row and prints one line
 *	per row, "file:line: key (selector._domainkey.domain): verdict".
 *	A row whose domain is '%' signs as each From: domain that uses
 *	it: it is checked under every domain the SigningTable rows naming
 *	it spell out (a pattern with '*' in its domain cannot be listed;
 *	a row with no such pattern is reported as not checked).
 * DIAGNOSTICS
 *	dnscheck_tables() returns 0 when every key checked is published
 *	and matching, else 1.
 */

#include "build_config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "dns.h"
#include "dnscheck.h"
#include "tabfile.h"
#include "xalloc.h"

#define DNSCHECK_TIMEOUT	5000		/* ms per lookup */
#define DNSCHECK_RECORDS_MAX	64		/* TXT records judged at one name */

struct dnscheck {
    struct dns_resolver **res;			/* one per listed server */
    char  **server;				/* its name, for the reason */
    int     count;
    char   *test_text;				/* dns_test_file, or NULL */
};

/*
 * dnscheck_resolvers - one resolver per server listed: the milter asks any
 * of them for each lookup (libunbound picks), so a key is published only
 * when every one of them says so. One resolver for them all would ask one
 * at random: a server still answering NXDOMAIN (a lagging secondary behind
 * it, a stale cache) could pass a check that the next lookup fails.
 */
static struct dnscheck *dnscheck_resolvers(struct dnscheck *c, const char *servers,
					           const char **err)
{
    char   *list = xstrdup(servers ? servers : "system"), *tok, *save = NULL;

    for (tok = strtok_r(list, ", \t", &save); tok; tok = strtok_r(NULL, ", \t", &save)) {
	c->res = xrealloc(c->res, (c->count + 1) * sizeof(*c->res));
	c->server = xrealloc(c->server, (c->count + 1) * sizeof(*c->server));
	c->server[c->count] = xstrdup(tok);
	if ((c->res[c->count++] = dns_resolver_create(tok, DNSCHECK_TIMEOUT, err)) == NULL) {
	    c->count--;
	    free(c->server[c->count]);
	    break;
	}
    }
    free(list);
    if (*err == NULL && c->count == 0)
	*err = "dns_servers lists no server";
    if (*err != NULL)
	dnscheck_close(&c);
    return (c);
}

struct dnscheck *dnscheck_open(const struct config *cfg, const char **err)
{
    struct dnscheck *c = xcalloc(1, sizeof(*c));
    const char *test = config_get_str(cfg, "dns_test_file");
    const char *servers = config_get_str(cfg, "dns_servers");

    *err = NULL;
    if (test) {
	if ((*err = tabfile_read(test, &c->test_text)) != NULL) {
	    free(c);
	    return (NULL);
	}
	return (c);
    }
    return (dnscheck_resolvers(c, servers, err));
}

void    dnscheck_close(struct dnscheck **cp)
{
    struct dnscheck *c = *cp;

    if (c == NULL)
	return;
    for (int i = 0; i < c->count; i++) {
	dns_resolver_free(&c->res[i]);
	free(c->server[i]);
    }
    free(c->res);
    free(c->server);
    free(c->test_text);
    free(c);
    *cp = NULL;
}

/* dnscheck_file - the records of name in the test file */

static int dnscheck_file(const char *text, const char *name, const struct dnskey *key,
			         char *why, size_t whylen)
{
    const char *texts[DNSCHECK_RECORDS_MAX];
    size_t  lens[DNSCHECK_RECORDS_MAX], nlen = strlen(name);
    int     n = 0;

    for (const char *line = text, *eol; *line; line = *eol ? eol + 1 : eol) {
	eol = line + strcspn(line, "\n");
	if ((size_t) (eol - line) > nlen && strncasecmp(line, name, nlen) == 0
	    && (line[nlen] == ' ' || line[nlen] == '\t')) {
	    if (n == DNSCHECK_RECORDS_MAX) {
		snprintf(why, whylen, "more than %d TXT records", DNSCHECK_RECORDS_MAX);
		return (DNSKEY_INVALID);
	    }
	    texts[n] = line + nlen + 1;
	    lens[n++] = eol - (line + nlen + 1);
	}
    }
    return (dnskey_records(n, texts, lens, key, why, whylen));
}

/* dnscheck_one - the verdict of one server */

static int dnscheck_one(struct dns_resolver *res, const char *name, const struct dnskey *key,
			        char *why, size_t whylen)
{
    const char *texts[DNSCHECK_RECORDS_MAX];
    size_t  lens[DNSCHECK_RECORDS_MAX];
    struct dns_answer *ans = NULL;
    int     status;

    switch (dns_txt(res, name, &ans)) {
    case DNS_OK:
	if (ans->count > DNSCHECK_RECORDS_MAX) {
	    snprintf(why, whylen, "%d TXT records", ans->count);
	    status = DNSKEY_INVALID;
	    break;
	}
	for (int i = 0; i < ans->count; i++) {
	    texts[i] = (const char *) ans->rr[i].data;
	    lens[i] = ans->rr[i].len;
	}
	status = dnskey_records(ans->count, texts, lens, key, why, whylen);
	break;
    case DNS_NXDOMAIN:
	snprintf(why, whylen, "NXDOMAIN: no such name");
	status = DNSKEY_MISSING;
	break;
    case DNS_NODATA:
	snprintf(why, whylen, "the name exists without a TXT record");
	status = DNSKEY_MISSING;
	break;
    case DNS_BADNAME:
	snprintf(why, whylen, "the name cannot be looked up");
	status = DNSKEY_INVALID;
	break;
    default:
	snprintf(why, whylen, "%s: try again later", ans && ans->why ? ans->why : "no answer");
	status = DNSKEY_TEMPERROR;
	break;
    }
    dns_answer_free(&ans);
    return (status);
}

int     dnscheck_row(struct dnscheck *c, const char *domain, const char *selector,
		             const struct dnskey *key, char *why, size_t whylen)
{
    char   *name = xasprintf("%s._domainkey.%s", selector, domain), one[512];
    int     status = DNSKEY_OK;

    if (c->test_text) {
	status = dnscheck_file(c->test_text, name, key, why, whylen);
	free(name);
	return (status);
    }
    for (int i = 0; i < c->count && status == DNSKEY_OK; i++) {
	status = dnscheck_one(c->res[i], name, key, one, sizeof(one));
	if (c->count == 1 || (status == DNSKEY_OK && i + 1 < c->count))
	    snprintf(why, whylen, "%s", one);
	else if (status == DNSKEY_OK)
	    snprintf(why, whylen, "%s%sso say all %d servers", one, one[0] ? "; " : "",
		     c->count);
	else
	    snprintf(why, whylen, "server %s: %s", c->server[i], one);
    }
    free(name);
    return (status);
}

/* dnscheck_label - "name", or "name (selector._domainkey.domain)" */

const char *dnscheck_label(const struct key_entry *k)
{
    static char buf[1024];
    size_t  slen = strlen(k->selector);

    if (strncasecmp(k->name, k->selector, slen) == 0
	&& strncasecmp(k->name + slen, "._domainkey.", 12) == 0
	&& strcasecmp(k->name + slen + 12, k->domain) == 0)
	snprintf(buf, sizeof(buf), "%s", k->name);
    else
	snprintf(buf, sizeof(buf), "%s (%s._domainkey.%s)", k->name, k->selector, k->domain);
    return (buf);
}

/* dnscheck_print - check one (row, domain) and print its line; 1 if good */

static int dnscheck_print(struct dnscheck *c, const char *table, const struct key_entry *k,
			          const char *domain, const struct dnskey *key)
{
    char    why[512];
    int     status = dnscheck_row(c, domain, k->selector, key, why, sizeof(why));

    if (strcmp(domain, k->domain) == 0)
	printf("%s:%d: %s: ", table, k->line, dnscheck_label(k));
    else
	printf("%s:%d: %s (%s._domainkey.%s): ", table, k->line, k->name, k->selector, domain);
    printf("%s (%s)%s%s\n", dnskey_status_text(status), dnskey_type_name(key->type),
	   why[0] ? ": " : "", why);
    return (status == DNSKEY_OK);
}

/*
 * dnscheck_percent - a '%' row signs as each From: domain that uses it:
 * check it under every literal domain of the SigningTable rows naming it
 * (a wildcard domain cannot be listed). Returns the rows not good.
 */
static int dnscheck_percent(struct dnscheck *c, const char *table, const struct tables *t,
			            const struct key_entry *k, const struct dnskey *key)
{
    const char **done = xcalloc(t->sign_count + 1, sizeof(char *));
    int     n = 0, bad = 0, dup;

    for (int i = 0; i < t->sign_count; i++) {
	const char *at = strrchr(t->sign[i].pattern, '@');
	const char *domain = at ? at + 1 : t->sign[i].pattern;
	int     uses = 0;

	for (char **name = t->sign[i].keys; *name; name++)
	    uses |= strcmp(*name, k->name) == 0;
	if (!uses || *domain == 0 || strchr(domain, '*'))
	    continue;
	dup = 0;
	for (int j = 0; j < n; j++)
	    dup |= strcasecmp(done[j], domain) == 0;
	if (dup)
	    continue;
	done[n++] = domain;
	bad += !dnscheck_print(c, table, k, domain, key);
    }
    if (n == 0)
	printf("%s:%d: %s: not checked: its domain is '%%' and no SigningTable row names "
	       "a domain without '*' for it\n", table, k->line, k->name);
    free(done);
    return (bad);
}

int     dnscheck_tables(const struct config *cfg, const struct tables *t, const char *table)
{
    struct dnscheck *c;
    const char *err;
    int     bad = 0;

    if ((c = dnscheck_open(cfg, &err)) == NULL) {
	fprintf(stderr, "DNS: %s\n", err);
	return (1);
    }
    for (int i = 0; i < t->key_count; i++) {
	const struct key_entry *k = t->key + i;
	struct dnskey key;

	if ((err = dnskey_load(k->path, &key)) != NULL) {
	    printf("%s:%d: %s: key file %s: %s\n", table, k->line, k->name, k->path, err);
	    bad++;
	    continue;
	}
	if (strcmp(k->domain, "%") == 0)
	    bad += dnscheck_percent(c, table, t, k, &key);
	else if (strchr(k->domain, '%'))
	    printf("%s:%d: %s: not checked: '%%' inside a domain\n", table, k->line, k->name);
	else
	    bad += !dnscheck_print(c, table, k, k->domain, &key);
	dnskey_free(&key);
    }
    dnscheck_close(&c);
    printf("%s: %s\n", table, bad ? "some keys are not published and matching (above)"
	   : "every key checked is published and matching");
    fflush(stdout);
    return (bad ? 1 : 0);
}
