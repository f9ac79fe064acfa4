/*
 * NAME
 *	auth 3
 * SUMMARY
 *	SPF and DMARC next to DKIM verification
 * SYNOPSIS
 *	#include "auth.h"
 *
 *	void	auth_load(cfg, lib, verify, &conf)
 *	void	auth_begin(conf, msg)
 *	enum auth_verdict auth_evaluate(conf, dkim, eom, msg, &session, &results,
 *		&code, &dsn, &reply)
 *	void	auth_end()
 * DESCRIPTION
 *	auth_load() reads spf, dmarc, dmarc_reject, dns_servers,
 *	dns_timeout, auth_timeout and public_suffix_list, builds the DNS
 *	(mdns(3)) every lookup of the milter goes through, and hands
 *	libopendkim's key lookups to it (unless dns_test_file: then
 *	libopendkim reads keys from that file, and SPF and DMARC their
 *	TXT records). Errors go into cfg, as every other setting's.
 *
 *	auth_begin() starts the message's DNS budget (auth_timeout: the
 *	time its lookups wait, added up), before dkim_eoh() fetches the
 *	keys at the end of the headers; auth_end() ends it after SPF and
 *	DMARC at the end of the message (or at an abort). It also names
 *	the From: domain's organizational domain to mdns(3): lookups under
 *	it, the DMARC records and SPF of an aligned MAIL FROM draw on the
 *	half of the budget other domains' lookups cannot spend, so a
 *	spoofer's silent DNS cannot turn p=reject's 550 into a 451.
 *
 *	auth_evaluate() runs SPF (spf(3)) and DMARC (dmarc(3)) and
 *	appends their resinfos to the A-R value the DKIM part built:
 *
 *	spf=RESULT (why) smtp.mailfrom=ADDRESS  (or smtp.helo=NAME)
 *	dmarc=RESULT (policy and alignment) header.from=DOMAIN policy.dmarc=P
 *
 *	Nothing from outside needs quoting there: an address that would
 *	is written as its domain, a domain is written only when it is a
 *	valid host name (else left out, the comment says why), and every
 *	comment is reduced to characters a comment may hold. With
 *	dmarc_reject, a DMARC fail under p=reject (sp= for subdomains,
 *	pct= sampled) is AUTH_REJECT (550 5.7.1), a temperror where the
 *	policy is reject or could not be read is AUTH_DEFER (451 4.4.3:
 *	a DNS outage must not open the door the policy closes), and a
 *	message without exactly one From: header, to which DMARC cannot
 *	apply, is AUTH_REJECT too. Without dmarc_reject, every outcome is
 *	only recorded.
 */

#include "build_config.h"

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include <libpsl.h>

#include "auth.h"
#include "dmarc.h"
#include "lenient.h"
#include "mdns.h"
#include "metrics.h"
#include "rfc5322.h"
#include "spf.h"
#include "xalloc.h"

struct auth_conf {
    int     spf;
    int     dmarc;
    int     dmarc_reject;
    int     auth_timeout_ms;
    struct mdns *dns;
    struct spf_checker *checker;
    psl_ctx_t *psl;
};

static const char *const auth_spf_names[] = {"none", "neutral", "pass", "fail", "softfail",
"temperror", "permerror"};
static const char *const auth_dmarc_names[] = {"none", "pass", "fail", "temperror",
"permerror"};

static struct {
    struct metrics_series *spf[7], *dmarc[5], *rejected, *deferred;
} auth_metrics;

void    auth_metrics_init(void)
{
    char    labels[64];

    for (int i = 0; i < 7; i++) {
	snprintf(labels, sizeof(labels), "result=\"%s\"", auth_spf_names[i]);
	auth_metrics.spf[i] = metrics_counter("mxkit_dkim_spf_results_total",
					      "SPF results of verified messages.", labels);
    }
    for (int i = 0; i < 5; i++) {
	snprintf(labels, sizeof(labels), "result=\"%s\"", auth_dmarc_names[i]);
	auth_metrics.dmarc[i] = metrics_counter("mxkit_dkim_dmarc_results_total",
					        "DMARC results of verified messages.", labels);
    }
    auth_metrics.rejected = metrics_counter("mxkit_dkim_dmarc_actions_total",
		   "Messages refused by dmarc_reject (550) or deferred (451).",
					    "action=\"reject\"");
    auth_metrics.deferred = metrics_counter("mxkit_dkim_dmarc_actions_total",
		   "Messages refused by dmarc_reject (550) or deferred (451).",
					    "action=\"defer\"");
}

static void auth_count(struct metrics_series *const *set, const char *const *names, int n,
		               const char *result)
{
    for (int i = 0; i < n; i++)
	if (strcmp(names[i], result) == 0 && set[i])
	    metrics_inc(set[i]);
}


/*
 * auth_psl_load - the public suffix list, or an error: a FIFO there hung
 * -t and every reload (and SIGTERM behind it), and any other file (an
 * empty one from a failed download, a table) loaded as a list without
 * rules, under which example.co.uk and evil.co.uk share the
 * organizational domain co.uk and align for DMARC.
 */
static const char *auth_psl_load(const char *path, psl_ctx_t **out)
{
    int     fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
    struct stat st;
    FILE   *fp;

    *out = NULL;
    if (fd < 0)
	return ("cannot open");
    if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode) || (fp = fdopen(fd, "r")) == NULL) {
	close(fd);
	return ("not a regular file");
    }
    *out = psl_load_fp(fp);
    fclose(fp);
    if (*out == NULL)
	return ("cannot load");
    if (!psl_is_public_suffix(*out, "co.uk") || !psl_is_public_suffix(*out, "com")) {
	psl_free(*out);
	*out = NULL;
	return ("not a public suffix list (co.uk and com are not public suffixes in it)");
    }
    return (NULL);
}

void    auth_load(struct config *cfg, DKIM_LIB *lib, int verify, struct auth_conf **out)
{
    struct auth_conf *a = xcalloc(1, sizeof(*a));
    const char *servers = config_get_str(cfg, "dns_servers");
    const char *test_file = config_get_str(cfg, "dns_test_file");
    const char *psl_path = config_get_str(cfg, "public_suffix_list");
    long long dns_ms = config_get_duration(cfg, "dns_timeout");
    long long auth_ms = config_get_duration(cfg, "auth_timeout");
    const char *err;

    *out = a;
    a->spf = config_get_bool(cfg, "spf");
    a->dmarc = config_get_bool(cfg, "dmarc");
    a->dmarc_reject = config_get_bool(cfg, "dmarc_reject");
    a->auth_timeout_ms = (int) auth_ms;
    if (dns_ms < 100 || dns_ms > 60000)
	config_add_error(cfg, config_line(cfg, "dns_timeout"),
			 "dns_timeout must be 100ms to 60s");
    if (auth_ms < dns_ms || auth_ms > 240000)
	config_add_error(cfg, config_line(cfg, "auth_timeout"), "auth_timeout must be at least "
			 "dns_timeout and at most 240s (Postfix waits 300s for a milter)");
    if (a->dmarc_reject && !a->dmarc)
	config_add_error(cfg, config_line(cfg, "dmarc_reject"), "dmarc_reject needs dmarc = yes");
    if (!verify || cfg->error_count)
	return;
    if ((err = mdns_create(servers, (int) dns_ms, test_file, &a->dns)) != NULL) {
	config_add_error(cfg, config_line(cfg, test_file ? "dns_test_file" : "dns_servers"),
			 "%s", err);
	return;
    }
    if (test_file == NULL)
	mdns_dkim_hooks(a->dns, lib);
    if (a->spf)
	a->checker = spf_checker_create(a->dns);
    if (a->dmarc && (err = auth_psl_load(psl_path, &a->psl)) != NULL)
	config_add_error(cfg, config_line(cfg, "public_suffix_list"), "public_suffix_list: "
			 "%s: %s (Debian package publicsuffix)", psl_path, err);
}

void    auth_free(struct auth_conf **ap)
{
    struct auth_conf *a = *ap;

    if (a == NULL)
	return;
    spf_checker_free(&a->checker);
    mdns_free(&a->dns);
    if (a->psl)
	psl_free(a->psl);
    free(a);
    *ap = NULL;
}

/*
 * auth_guard - the From: domain's organizational domain to mdns(3).
 * Not for an unreadable From: its names are the sender's choice (his
 * own silent domain among them would draw on the reserve); their DMARC
 * records still do, a share each (auth_unreadable()).
 */
static void auth_guard(const struct auth_conf *a, const struct message *msg)
{
    const char *at = strrchr(msg->from, '@');
    const char *org;

    if (msg->from_count != 1 || msg->from_error || at == NULL) {
	mdns_guard_set(NULL, 0);
	return;
    }
    org = dmarc_org_domain(a->psl, at + 1);
    mdns_guard_set(&org, 1);
}

void    auth_begin(const struct auth_conf *a, const struct message *msg)
{
    if (a == NULL)
	return;
    auth_guard(a, msg);
    if (a->dns)
	mdns_budget_start(a->auth_timeout_ms);
}

void    auth_end(void)
{
    mdns_budget_end();
}

/* auth_comment - text a comment may hold: printable ASCII, no parens or backslash */

static char *auth_comment(const char *text)
{
    char   *out = xstrdup(text);

    for (char *cp = out; *cp; cp++)
	if (*cp < 32 || *cp > 126 || *cp == '(' || *cp == ')' || *cp == '\\')
	    *cp = ' ';
    return (out);
}

static void auth_append(char **results, const char *method, const char *result,
			        const char *comment, const char *props)
{
    char   *c = auth_comment(comment), *more;

    more = xasprintf("%s;\n\t%s=%s%s%s%s%s", *results, method, result, *c ? " (" : "",
		     c, *c ? ")" : "", props);
    free(c);
    free(*results);
    *results = more;
}

/* auth_sigs - each verified DKIM signature's domain and result */

static int auth_sigs(DKIM *dkim, DKIM_STAT eom, const struct message *m,
		             struct dmarc_sig **out)
{
    DKIM_SIGINFO **sigs = NULL;
    int     nsigs = 0, n = 0;
    const char *reason;

    *out = NULL;
    if (dkim == NULL || eom == DKIM_STAT_NOSIG
	|| dkim_getsiglist(dkim, &sigs, &nsigs) != DKIM_STAT_OK)
	return (0);
    *out = xcalloc(nsigs + 1, sizeof(**out));
    for (int i = 0; i < nsigs; i++) {
	const char *d = (const char *) dkim_sig_getdomain(sigs[i]);

	if (d == NULL || (dkim_sig_getflags(sigs[i]) & DKIM_SIGFLAG_IGNORE))
	    continue;
	(*out)[n].domain = d;
	(*out)[n++].result = message_sig_result(dkim, sigs[i], m, &reason);
    }
    return (n);
}

static void auth_spf(const struct auth_conf *a, const struct auth_session *s,
		             struct spf_result *spf, char **results)
{
    char   *v, *props;
    const char *at = strrchr(s->mail_from, '@');
    const char *domain = *s->mail_from ? (at ? at + 1 : "") : s->helo ? s->helo : "";

    /* an aligned MAIL FROM's SPF can make the DMARC pass: the reserve */
    mdns_budget_favour(*domain && mdns_guarded(domain));
    spf_check(a->checker, s->client, s->helo, s->mail_from, spf);
    mdns_budget_favour(0);
    v = rfc8601_value(spf->identity);
    /*
     * An address that needs quoting ("x;dmarc=pass"@d) is written as its
     * domain, which RFC 8601 allows and is what was checked: a consumer
     * that splits on ';' or '=' then has nothing to misread.
     */
    if (*v == '"') {
	free(v);
	v = xstrdup(spf_domain_ok(spf->domain) ? spf->domain : "");
    }
    props = *v ? xasprintf(" smtp.%s=%s", spf->helo ? "helo" : "mailfrom", v) : xstrdup("");
    auth_append(results, "spf", spf->result, spf->comment, props);
    auth_count(auth_metrics.spf, auth_spf_names, 7, spf->result);
    free(props);
    free(v);
}

/*
 * auth_unreadable - the verdict under dmarc_reject for a From: our strict
 * parser refuses ("<a@vendor.test>, <b@x.test>", an unclosed comment or
 * angle bracket, a comment after the '@', an encoded word in the
 * address): a mail reader may still show it as an address of a
 * p=reject domain, so each domain a lenient reader finds in it
 * (lenient(3): after every '@', past comments, encoded words decoded)
 * is checked as if it were the From: domain and the strictest outcome
 * applies (RFC 7489 6.6.1); an unreadable From: is no way around the
 * policy. More names than AUTH_FROM_NAMES_MAX, more '@' than
 * LENIENT_AT_MAX, or a domain the lenient reader cannot read for sure
 * (lenient(3): an encoded word in a charset that does not write ASCII
 * as ASCII, a label longer than DNS allows, 8-bit bytes that are no
 * valid IDN; a UTF-8 name is looked up as its A-labels): refused,
 * without looking anything up.
 */
#define AUTH_FROM_NAMES_MAX 8

static enum auth_verdict auth_unreadable(const struct auth_conf *a, const char *value,
					         const struct dmarc_sig *sigs, int n,
					         const struct spf_result *spf, const char **reply)
{
    char    names[AUTH_FROM_NAMES_MAX][LENIENT_NAME_SIZE];
    enum auth_verdict verdict = AUTH_ACCEPT;
    struct dmarc_result d;
    int     count = lenient_domains(value, names, AUTH_FROM_NAMES_MAX);

    if (count < 0) {
	*reply = "Unreadable From: header whose domains cannot all be read";
	return (AUTH_REJECT);
    }
    for (int i = 0; i < count; i++) {
	if (!spf_domain_ok(names[i])) {		/* lenient(3) gives none: cannot be */
	    *reply = "Unreadable From: header whose domains cannot all be read";
	    return (AUTH_REJECT);
	}
	/* a share each: the sender's silent names must not starve the
	   lookup of a p=reject domain after them (mdns(3)) */
	mdns_budget_share(count - i);
	dmarc_check(a->dns, a->psl, names[i], sigs, n, a->spf ? spf : NULL, &d);
	mdns_budget_share(0);
	if (d.reject) {
	    *reply = "Rejected by the DMARC policy of a domain in the unreadable From: header";
	    return (AUTH_REJECT);
	}
	if (d.defer) {
	    *reply = "DMARC verdict unavailable (DNS failure); try again later";
	    verdict = AUTH_DEFER;
	}
    }
    return (verdict);
}

/* auth_from_value - the value of the one From: header */

static const char *auth_from_value(const struct message *msg)
{
    for (int i = 0; i < msg->count; i++)
	if (strcasecmp(msg->hdr[i].name, "From") == 0)
	    return (msg->hdr[i].value);
    return ("");
}

/* auth_dmarc - the DMARC resinfo; the verdict under dmarc_reject */

static enum auth_verdict auth_dmarc(const struct auth_conf *a, DKIM *dkim, DKIM_STAT eom,
				            const struct message *msg,
				            const struct spf_result *spf, char **results,
				            const char **reply)
{
    struct dmarc_result d;
    struct dmarc_sig *sigs;
    int     n = auth_sigs(dkim, eom, msg, &sigs);
    const char *at = strrchr(msg->from, '@');
    char   *from, *props, comment[64];
    enum auth_verdict verdict = AUTH_ACCEPT;

    if (msg->from_count != 1 || msg->from_error || at == NULL) {
	snprintf(comment, sizeof(comment), msg->from_count != 1 ? "%d From: headers"
		 : "From: address unreadable", msg->from_count);
	auth_append(results, "dmarc", "permerror", comment, "");
	auth_count(auth_metrics.dmarc, auth_dmarc_names, 5, "permerror");
	if (a->dmarc_reject && msg->from_count != 1) {
	    *reply = "DMARC needs exactly one From: header";
	    verdict = AUTH_REJECT;
	} else if (a->dmarc_reject) {
	    verdict = auth_unreadable(a, auth_from_value(msg), sigs, n, spf, reply);
	}
	free(sigs);
	return (verdict);
    }
    dmarc_check(a->dns, a->psl, at + 1, sigs, n, a->spf ? spf : NULL, &d);
    free(sigs);
    from = xasprintf(" header.from=%s", d.from_domain);
    props = xasprintf("%s%s%s", spf_domain_ok(d.from_domain) ? from : "",
		      d.policy ? " policy.dmarc=" : "",
		      d.policy == 'r' ? "reject" : d.policy == 'q' ? "quarantine"
		      : d.policy == 'n' ? "none" : "");
    auth_append(results, "dmarc", d.result, d.comment, props);
    auth_count(auth_metrics.dmarc, auth_dmarc_names, 5, d.result);
    free(props);
    free(from);
    if (a->dmarc_reject && d.reject) {
	*reply = "Rejected by the DMARC policy of the From: domain";
	verdict = AUTH_REJECT;
    } else if (a->dmarc_reject && !spf_domain_ok(d.from_domain)) {
	/* RFC 7489 6.6.1: a From: domain that cannot exist is refused (a
	   label of 64 bytes under a p=reject domain escaped its policy) */
	*reply = "From: domain is not a valid name";
	verdict = AUTH_REJECT;
    } else if (a->dmarc_reject && d.defer) {
	*reply = "DMARC verdict unavailable (DNS failure); try again later";
	verdict = AUTH_DEFER;
    }
    return (verdict);
}

enum auth_verdict auth_evaluate(const struct auth_conf *a, DKIM *dkim, DKIM_STAT eom,
				        const struct message *msg,
				        const struct auth_session *s, char **results,
				        const char **code, const char **dsn, const char **reply)
{
    struct spf_result spf = {.result = "none"};
    enum auth_verdict verdict = AUTH_ACCEPT;

    if (a == NULL || a->dns == NULL)
	return (AUTH_ACCEPT);
    if (a->spf)
	auth_spf(a, s, &spf, results);
    if (a->dmarc)
	verdict = auth_dmarc(a, dkim, eom, msg, &spf, results, reply);
    spf_result_free(&spf);
    if (verdict == AUTH_REJECT && auth_metrics.rejected)
	metrics_inc(auth_metrics.rejected);
    if (verdict == AUTH_DEFER && auth_metrics.deferred)
	metrics_inc(auth_metrics.deferred);
    *code = verdict == AUTH_REJECT ? "550" : "451";
    *dsn = verdict == AUTH_REJECT ? "5.7.1" : "4.4.3";
    return (verdict);
}
