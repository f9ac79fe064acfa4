/*
 * NAME
 *	spf 3
 * SUMMARY
 *	RFC 7208 SPF through libspf2, on milter-dkim's DNS
 * SYNOPSIS
 *	#include "spf.h"
 *
 *	struct spf_checker *spf_checker_create(dns)
 *	void	spf_check(checker, client_ip, helo, mail_from, &result)
 *	void	spf_result_free(&result)
 * DESCRIPTION
 *	The identity is the MAIL FROM address, or postmaster@HELO when
 *	MAIL FROM is null (RFC 7208 2.4); the client is the address
 *	Postfix gave the milter at connect (IPv4-mapped IPv6 as IPv4).
 *	No address, or a domain that is not a valid multi-label name
 *	(RFC 7208 4.3): "none".
 *
 *	libspf2 evaluates the record; its DNS layer is ours (mdns(3)),
 *	which is also where three of its departures from RFC 7208 are
 *	put right:
 * .IP \(bu
 *	It gives loopback clients "pass" before any lookup ("localhost
 *	gets a free ride"): mail relayed through a local hop would pass
 *	SPF, and DMARC with it, for any domain. check_host() is run here
 *	without that shortcut.
 * .IP \(bu
 *	It counts the 10 DNS-querying terms per include level (a new
 *	response per include starts at 0), checks the count before the
 *	next term, not the current one, and inspects the first 10 of
 *	more than 10 MX hosts before failing. It does not limit void
 *	lookups. The DNS layer counts terms (include, redirect, a, mx,
 *	ptr, exists: every query but the first TXT and the address
 *	lookups of the hosts an MX or PTR answer named) and void answers
 *	(NXDOMAIN or no data) over the whole evaluation, and MX answers
 *	over 10 hosts: past 10 terms or 2 void lookups (RFC 7208 4.6.4)
 *	the result is permerror. The explanation lookup of an exp=
 *	modifier, the last query of a failing check, does not count.
 * .IP \(bu
 *	It asks for type SPF (99) before TXT: RFC 7208 3.1 retired it,
 *	and a server that times out on it doubles every lookup. The layer
 *	answers it "no data" without asking.
 * .IP \(bu
 *	It uses the last of two redirect= or exp= modifiers in a record;
 *	RFC 7208 6 makes such a record a permerror. The layer looks at
 *	every SPF record it hands over (a TXT starting "v=spf1"), and one
 *	with either modifier twice makes the result permerror.
 * .PP
 *	A temporary DNS failure anywhere (timeout, SERVFAIL, the message's
 *	budget spent) ends in "temperror".
 */

#include "build_config.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <spf2/spf.h>
#include <spf2/spf_dns.h>

#include "msg.h"
#include "spf.h"
#include "xalloc.h"

#define SPF_TERMS_MAX	10		/* RFC 7208 4.6.4 */
#define SPF_VOIDS_MAX	2
#define SPF_MX_MAX	10

struct spf_checker {
    struct mdns *dns;
    SPF_dns_server_t layer;
    SPF_server_t *server;
};

/* One evaluation in this thread: what the DNS layer counted. */
struct spf_eval {
    int     queries;
    int     terms;
    int     voids;
    int     tipped_at;			/* query that crossed a limit */
    int     tipped_txt;			/* ... was a TXT query */
    const char *tipped;			/* which limit */
    const char *invalid;		/* a record RFC 7208 makes permerror */
    char  **hosts;			/* names of the last MX/PTR answer */
    int     nhosts;
};

static __thread struct spf_eval *spf_current;

static void spf_hosts_clear(struct spf_eval *e)
{
    for (int i = 0; i < e->nhosts; i++)
	free(e->hosts[i]);
    free(e->hosts);
    e->hosts = NULL;
    e->nhosts = 0;
}

/* spf_is_sub - an address lookup for a host the last MX/PTR answer named */

static int spf_is_sub(struct spf_eval *e, const char *name, int type)
{
    if (type == ns_t_a || type == ns_t_aaaa)
	for (int i = 0; i < e->nhosts; i++)
	    if (strcasecmp(e->hosts[i], name) == 0)
		return (1);
    spf_hosts_clear(e);
    return (0);
}

static void spf_tip(struct spf_eval *e, const char *why, int type)
{
    if (e->tipped == NULL) {
	e->tipped = why;
	e->tipped_at = e->queries;
	e->tipped_txt = type == ns_t_txt;
    }
}

/* spf_wire_name - an uncompressed wire-format name as text; NULL if odd */

static char *spf_wire_name(const unsigned char *p, size_t len)
{
    char   *out = xmalloc(len + 2), *o = out;
    size_t  pos = 0;

    while (pos < len && p[pos] != 0) {
	size_t  n = p[pos++];

	if (n > 63 || n > len - pos) {
	    free(out);
	    return (NULL);
	}
	for (size_t i = 0; i < n; i++) {
	    if (p[pos + i] <= ' ' || p[pos + i] >= 127 || p[pos + i] == '.') {
		free(out);
		return (NULL);
	    }
	    *o++ = p[pos + i];
	}
	pos += n;
	*o++ = '.';
    }
    if (o > out)
	o--;					/* no trailing dot */
    *o = 0;
    return (out);
}

/*
 * spf_modifiers_twice - RFC 7208 6: redirect= and exp= "MUST NOT appear
 * in a record more than once each" (else permerror); libspf2 used the
 * last. NULL, or why the SPF record in TXT text is invalid.
 */
static const char *spf_modifiers_twice(const char *text)
{
    int     redirects = 0, exps = 0;

    if (strncasecmp(text, "v=spf1", 6) != 0 || (text[6] != 0 && text[6] != ' '))
	return (NULL);				/* not an SPF record */
    for (const char *p = text + 6; *p;) {
	p += strspn(p, " ");
	redirects += strncasecmp(p, "redirect=", 9) == 0;
	exps += strncasecmp(p, "exp=", 4) == 0;
	p += strcspn(p, " ");
    }
    return (redirects > 1 ? "redirect= given twice, RFC 7208 6"
	    : exps > 1 ? "exp= given twice, RFC 7208 6" : NULL);
}

/* spf_fill - our answer as libspf2's, remembering MX/PTR host names */

static void spf_fill(struct spf_eval *e, SPF_dns_rr_t *rr, const struct dns_answer *ans)
{
    int     n = 0;

    for (int i = 0; i < ans->count; i++) {
	const struct dns_rr *a = ans->rr + i;
	char   *name = NULL;

	if (rr->rr_type == ns_t_a && a->len == 4) {
	    SPF_dns_rr_buf_realloc(rr, n, sizeof(struct in_addr));
	    memcpy(&rr->rr[n++]->a, a->data, 4);
	} else if (rr->rr_type == ns_t_aaaa && a->len == 16) {
	    SPF_dns_rr_buf_realloc(rr, n, sizeof(struct in6_addr));
	    memcpy(&rr->rr[n++]->aaaa, a->data, 16);
	} else if (rr->rr_type == ns_t_txt) {
	    SPF_dns_rr_buf_realloc(rr, n, a->len + 1);
	    memcpy(rr->rr[n++]->txt, a->data, a->len + 1);
	    if (e->invalid == NULL)
		e->invalid = spf_modifiers_twice((const char *) a->data);
	} else if ((rr->rr_type == ns_t_mx && a->len > 2
		    && (name = spf_wire_name(a->data + 2, a->len - 2)) != NULL)
		   || (rr->rr_type == ns_t_ptr && (name = spf_wire_name(a->data, a->len)))) {
	    SPF_dns_rr_buf_realloc(rr, n, strlen(name) + 1);
	    strcpy(rr->rr_type == ns_t_mx ? rr->rr[n]->mx : rr->rr[n]->ptr, name);
	    n++;
	    e->hosts = xrealloc(e->hosts, (e->nhosts + 1) * sizeof(*e->hosts));
	    e->hosts[e->nhosts++] = name;
	}
    }
    rr->num_rr = n;
    if (n == 0)
	rr->herrno = NO_DATA;
}

/* spf_dns_lookup - libspf2's DNS layer */

static SPF_dns_rr_t *spf_dns_lookup(SPF_dns_server_t *layer, const char *domain,
				            ns_type type, int should_cache)
{
    struct spf_checker *chk = layer->hook;
    struct spf_eval *e = spf_current;
    struct dns_answer *ans;
    int     term, status;
    SPF_dns_rr_t *rr;

    if (type == ns_t_spf || e == NULL)		/* RFC 7208 3.1: type 99 retired */
	return (SPF_dns_rr_new_init(layer, domain, type, 0, NO_DATA));
    e->queries++;
    if (e->tipped)				/* the result is permerror already */
	return (SPF_dns_rr_new_init(layer, domain, type, 0, HOST_NOT_FOUND));
    term = e->queries > 1 && !spf_is_sub(e, domain, type);
    if (term && ++e->terms > SPF_TERMS_MAX) {
	spf_tip(e, "more than 10 DNS-querying terms", type);
	return (SPF_dns_rr_new_init(layer, domain, type, 0, HOST_NOT_FOUND));
    }
    status = mdns_lookup(chk->dns, domain, type, &ans);
    switch (status) {
    case DNS_OK:
	rr = SPF_dns_rr_new_init(layer, domain, type, 0, NETDB_SUCCESS);
	spf_fill(e, rr, ans);
	if (type == ns_t_mx && ans->count > SPF_MX_MAX)
	    spf_tip(e, "more than 10 MX hosts", type);
	break;
    case DNS_NXDOMAIN:
    case DNS_NODATA:
    case DNS_BADNAME:
	rr = SPF_dns_rr_new_init(layer, domain, type, 0,
				 status == DNS_NODATA ? NO_DATA : HOST_NOT_FOUND);
	break;
    default:
	rr = SPF_dns_rr_new_init(layer, domain, type, 0, TRY_AGAIN);
	break;
    }
    if (term && (status != DNS_OK || rr->num_rr == 0) && status != DNS_TEMPFAIL
	&& ++e->voids > SPF_VOIDS_MAX)
	spf_tip(e, "more than 2 void DNS lookups", type);
    dns_answer_free(&ans);
    return (rr);
}

static void __attribute__((noreturn)) spf_log_error(const char *file, int line, const char *text)
{
    msg_error("libspf2: %s:%d: %s", file ? file : "?", line, text);
    abort();
}

static void spf_log_other(const char *file, int line, const char *text)
{
    if (msg_verbose)
	msg_info("libspf2: %s", text);
}

struct spf_checker *spf_checker_create(struct mdns *dns)
{
    struct spf_checker *chk = xcalloc(1, sizeof(*chk));

    SPF_error_handler = spf_log_error;
    SPF_warning_handler = spf_log_other;
    SPF_info_handler = spf_log_other;
    SPF_debug_handler = spf_log_other;
    chk->dns = dns;
    chk->layer.lookup = spf_dns_lookup;
    chk->layer.name = "mxkit";
    chk->layer.hook = chk;
    chk->server = SPF_server_new_dns(&chk->layer, 0);
    /* ours count across includes; libspf2's only stop runaway records */
    SPF_server_set_max_dns_mech(chk->server, 1000);
    SPF_server_set_max_dns_mx(chk->server, 1000);
    SPF_server_set_max_dns_ptr(chk->server, SPF_MX_MAX);
    return (chk);
}

void    spf_checker_free(struct spf_checker **chkp)
{
    if (*chkp) {
	SPF_server_free((*chkp)->server);	/* the layer is not its to free */
	free(*chkp);
	*chkp = NULL;
    }
}

/* spf_domain_ok - a multi-label LDH name (RFC 7208 4.3), underscores allowed */

int     spf_domain_ok(const char *d)
{
    size_t  len = strlen(d), label = 0;
    int     labels = 1;

    if (len && d[len - 1] == '.')
	len--;
    if (len == 0 || len > 253)
	return (0);
    for (size_t i = 0; i < len; i++) {
	if (d[i] == '.') {
	    if (label == 0)
		return (0);
	    label = 0;
	    labels++;
	} else if ((!isalnum((unsigned char) d[i]) && d[i] != '-' && d[i] != '_')
		   || ++label > 63)
	    return (0);
    }
    return (label > 0 && labels >= 2);
}

static const char *spf_result_name(SPF_result_t r)
{
    static const char *names[] = {"permerror", "neutral", "pass", "fail", "softfail",
    "none", "temperror", "permerror"};

    return ((unsigned) r < sizeof(names) / sizeof(names[0]) ? names[r] : "permerror");
}

/* spf_request - libspf2's request for the client; 0 if it has no address */

static SPF_request_t *spf_request(struct spf_checker *chk, const char *client)
{
    SPF_request_t *req = SPF_request_new(chk->server);
    struct in6_addr a6;
    struct in_addr a4;

    if (client && inet_pton(AF_INET, client, &a4) == 1) {
	SPF_request_set_ipv4(req, a4);
    } else if (client && inet_pton(AF_INET6, client, &a6) == 1) {
	if (IN6_IS_ADDR_V4MAPPED(&a6)) {
	    memcpy(&a4, a6.s6_addr + 12, 4);
	    SPF_request_set_ipv4(req, a4);
	} else
	    SPF_request_set_ipv6(req, a6);
    } else {
	SPF_request_free(req);
	return (NULL);
    }
    return (req);
}

/* spf_evaluate - check_host() without libspf2's loopback shortcut */

static SPF_result_t spf_evaluate(struct spf_checker *chk, SPF_request_t *req, const char **why)
{
    SPF_response_t *resp = SPF_response_new(req);
    SPF_record_t *rec = NULL;
    SPF_errcode_t err;
    SPF_result_t r;

    req->cur_dom = req->use_helo ? req->helo_dom : req->env_from_dp;
    err = SPF_server_get_record(chk->server, req, resp, &rec);
    if (err == SPF_E_SUCCESS) {
	resp->spf_record_exp = rec;
	(void) SPF_record_interpret(rec, req, resp, 0);
	r = resp->result;
    } else if (resp->result != SPF_RESULT_INVALID) {
	r = resp->result;			/* none, temperror, several records */
	*why = r == SPF_RESULT_NONE ? "no SPF record" : err == SPF_E_MULTIPLE_RECORDS
	    ? "several SPF records" : NULL;
    } else {
	/* a record that does not compile comes back as SPF_E_NOT_SPF too */
	r = err == SPF_E_DNS_ERROR ? SPF_RESULT_TEMPERROR : SPF_RESULT_PERMERROR;
	*why = r == SPF_RESULT_PERMERROR ? "SPF record syntax error" : NULL;
    }
    if (rec)
	SPF_record_free(rec);
    if (r == SPF_RESULT_PERMERROR && err == SPF_E_SUCCESS)
	*why = SPF_strerror(resp->err);
    SPF_response_free(resp);
    return (r);
}

void    spf_check(struct spf_checker *chk, const char *client, const char *helo,
		          const char *mail_from, struct spf_result *out)
{
    struct spf_eval eval = {0};
    const char *at = mail_from ? strrchr(mail_from, '@') : NULL, *why = NULL;
    char    ip[INET6_ADDRSTRLEN + 1];
    SPF_request_t *req;
    SPF_result_t r;

    memset(out, 0, sizeof(*out));
    out->result = "none";
    out->helo = mail_from == NULL || *mail_from == 0;
    out->identity = xstrdup(out->helo ? (helo ? helo : "") : mail_from);
    out->domain = xstrdup(out->helo ? out->identity : at ? at + 1 : mail_from);
    snprintf(ip, sizeof(ip), "%s", client ? client : "");
    if (!spf_domain_ok(out->domain)) {
	snprintf(out->comment, sizeof(out->comment), "no valid %s domain",
		 out->helo ? "HELO" : "MAIL FROM");
	return;
    }
    if ((req = spf_request(chk, client)) == NULL) {
	snprintf(out->comment, sizeof(out->comment), "no client address");
	return;
    }
    if (helo && *helo)
	SPF_request_set_helo_dom(req, helo);
    SPF_request_set_env_from(req, out->helo ? "" : mail_from);
    spf_current = &eval;
    r = spf_evaluate(chk, req, &why);
    spf_current = NULL;
    SPF_request_free(req);
    if (eval.tipped && !(eval.tipped_at == eval.queries && eval.tipped_txt
			 && (r == SPF_RESULT_FAIL || r == SPF_RESULT_SOFTFAIL
			     || r == SPF_RESULT_NEUTRAL))) {
	r = SPF_RESULT_PERMERROR;
	why = eval.tipped;
    }
    if (eval.invalid && r != SPF_RESULT_TEMPERROR) {
	r = SPF_RESULT_PERMERROR;		/* any record consulted */
	why = eval.invalid;
    }
    spf_hosts_clear(&eval);
    out->result = spf_result_name(r);
    if (r == SPF_RESULT_PASS || r == SPF_RESULT_FAIL || r == SPF_RESULT_SOFTFAIL
	|| r == SPF_RESULT_NEUTRAL)
	snprintf(out->comment, sizeof(out->comment), "%s is %s by %s", ip,
		 r == SPF_RESULT_PASS ? "permitted" : r == SPF_RESULT_NEUTRAL ?
		 "neither permitted nor denied" : "not permitted", out->domain);
    else
	snprintf(out->comment, sizeof(out->comment), "%s", why ? why : r ==
		 SPF_RESULT_TEMPERROR ? "DNS failure" : "no SPF record");
}

void    spf_result_free(struct spf_result *out)
{
    free(out->identity);
    free(out->domain);
    out->identity = out->domain = NULL;
}
