/*
 * NAME
 *	mdns 3
 * SUMMARY
 *	milter-dkim's DNS: the operator's servers, or a test file; a
 *	budget per message
 * SYNOPSIS
 *	#include "mdns.h"
 *
 *	const char *mdns_create(servers, timeout_ms, test_file, &dns)
 *	int	mdns_lookup(dns, name, DNS_T_TXT, &answer)
 *	void	mdns_budget_start(budget_ms)
 *	void	mdns_budget_end()
 *	void	mdns_guard_set(domains, count)
 *	int	mdns_guarded(name)
 *	void	mdns_budget_favour(on)
 *	void	mdns_budget_share(parts)
 *	void	mdns_dkim_hooks(dns, lib)
 *	int	mdns_keyrec_verdict(selector, domain, &why)
 *	void	mdns_free(&dns)
 * DESCRIPTION
 *	Every lookup the milter makes (DKIM keys through libopendkim,
 *	SPF through libspf2, the DMARC record) comes here, and from here
 *	goes to dns(3) on the servers of dns_servers, each lookup bounded
 *	by dns_timeout. With dns_test_file, answers come from that file
 *	instead ("name value" lines: TXT records; any other type of a
 *	listed name is NODATA, an unlisted name NXDOMAIN), for tests
 *	that need no DNS server.
 *
 *	mdns_budget_start() gives this thread's following lookups one
 *	shared budget (a message's authentication): the time they spend
 *	waiting is added up, each lookup waits at most what is left, and
 *	once it is spent every lookup fails temporarily at once. Only the
 *	lookups' own time counts, so the budget can start at the end of
 *	the headers (where libopendkim fetches the keys) and go on at the
 *	end of the message (SPF, DMARC) without counting the body's
 *	transfer in between. A hostile sender's SPF record can cause
 *	dozens of lookups (10 terms, 10 MX hosts each) and DKIM up to
 *	verify_signatures_max key lookups: without the budget their
 *	timeouts would add up past Postfix's milter timeouts.
 *
 *	Half of the budget is reserved for the lookups that decide the
 *	From: domain's DMARC verdict: names under one of the
 *	organizational domains mdns_guard_set() gave (the From: domain's:
 *	its _dmarc records, the keys of signatures whose d= aligns) and
 *	every lookup made while mdns_budget_favour(1) is on (the DMARC
 *	records, SPF of an aligned MAIL FROM). Any other lookup waits at
 *	most what is left of the first half. Before, a spoofer's
 *	signatures for his own silent domain spent the whole budget and
 *	the _dmarc lookup of the p=reject From: domain then failed at
 *	once: 451 instead of 550. The total stays auth_timeout.
 *	mdns_budget_share(N) lets the following lookups wait only one
 *	N-th of what is left (0: all of it again), so that each of N
 *	From: domains (an unreadable From: naming several) has its turn.
 *
 *	mdns_dkim_hooks() replaces libopendkim's resolver (libresolv,
 *	which knows only /etc/resolv.conf) with these lookups: the query
 *	runs to completion in the start hook and the wait hook hands over
 *	the reply packet. A temporary failure becomes DKIM_DNS_ERROR (the
 *	key is then "temperror"), never a reply without the key, which
 *	libopendkim would take for "no key" (permerror). A name no query
 *	can carry (DNS_BADNAME: a label over 63 bytes, an empty one) is
 *	such a reply, NXDOMAIN: the key cannot exist, and a DNS error
 *	there let a spoofer's bogus selector turn p=reject's 550 into a
 *	451 (sigtags(3) refuses such signatures before; this is the
 *	backstop).
 *
 *	A key record (one TXT record at a name holding "._domainkey.";
 *	several are left to libopendkim, which refuses them) is judged
 *	by dnskey_verifiable() before libopendkim reads it: libopendkim
 *	passed a record with a tag twice (it reads the last p=, k=, t=),
 *	a malformed tag name or v= not first (RFC 6376 3.2, 3.6.1
 *	make the record invalid), and an RSA key of 1017 to 1023 bits
 *	(it counts whole bytes; RFC 8301 3.2 requires 1024). Such a
 *	record becomes the NXDOMAIN reply, so libopendkim cannot use the
 *	key, and what was wrong is remembered for this thread's message
 *	(cleared by mdns_budget_start() and mdns_budget_end()):
 *	mdns_keyrec_verdict() then says MDNS_KEYREC_INVALID (permerror)
 *	or MDNS_KEYREC_TOOSMALL (policy) with the reason, for a
 *	signature's s= and d=, or MDNS_KEYREC_NONE. A k=rsa p= that is
 *	a bare RSAPublicKey (dkimpy reads it; libopendkim did not:
 *	permerror) is handed over as a reply whose p= is the same key
 *	as SubjectPublicKeyInfo. A revoked key (empty p=) goes over as
 *	it is.
 */

#include "build_config.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "dnskey.h"
#include "mdns.h"
#include "xalloc.h"

struct mdns_record {
    char   *name;
    char   *value;
};

struct mdns {
    struct dns_resolver *res;		/* NULL with a test file */
    int     timeout_ms;
    struct mdns_record *file;
    int     file_count;
};

static __thread int mdns_budgeted;
static __thread long mdns_budget_ms;		/* lookups may wait this long */
static __thread long mdns_spent_ms;		/* of it, waited so far */
static __thread int mdns_favoured;		/* lookups that decide DMARC */
static __thread long mdns_share_end = -1;	/* spent_ms may reach this */

#define MDNS_GUARD_MAX	9			/* auth(3) names one; room to spare */
static __thread char mdns_guard[MDNS_GUARD_MAX][256];
static __thread int mdns_guard_count;

static long mdns_now_ms(void)
{
    struct timespec now;

    clock_gettime(CLOCK_MONOTONIC, &now);
    return ((long) now.tv_sec * 1000 + now.tv_nsec / 1000000);
}

/* mdns_read_file - "name value" lines, names without a trailing dot */

static const char *mdns_read_file(struct mdns *dns, const char *path)
{
    FILE   *fp = fopen(path, "r");
    char   *line = NULL, *cp, *end;
    size_t  cap = 0;
    ssize_t len;

    if (fp == NULL)
	return ("cannot open dns_test_file");
    while ((len = getline(&line, &cap, fp)) > 0) {
	while (len > 0 && (line[len - 1] == '\n' || line[len - 1] == '\r'))
	    line[--len] = 0;
	cp = line + strspn(line, " \t");
	if (*cp == 0 || *cp == '#' || (end = strpbrk(cp, " \t")) == NULL)
	    continue;
	dns->file = xrealloc(dns->file, (dns->file_count + 1) * sizeof(*dns->file));
	dns->file[dns->file_count].name = xstrndup(cp, end - cp);
	if (end > cp && end[-1] == '.')
	    dns->file[dns->file_count].name[end - cp - 1] = 0;
	dns->file[dns->file_count].value = xstrdup(end + strspn(end, " \t"));
	dns->file_count++;
    }
    free(line);
    fclose(fp);
    return (NULL);
}

const char *mdns_create(const char *servers, int timeout_ms, const char *test_file,
			        struct mdns **out)
{
    struct mdns *dns = xcalloc(1, sizeof(*dns));
    const char *err = NULL;

    dns->timeout_ms = timeout_ms;
    if (test_file)
	err = mdns_read_file(dns, test_file);
    else
	dns->res = dns_resolver_create(servers, timeout_ms, &err);
    if (err) {
	mdns_free(&dns);
	return (err);
    }
    *out = dns;
    return (NULL);
}

void    mdns_free(struct mdns **dnsp)
{
    struct mdns *dns = *dnsp;

    if (dns == NULL)
	return;
    dns_resolver_free(&dns->res);
    for (int i = 0; i < dns->file_count; i++) {
	free(dns->file[i].name);
	free(dns->file[i].value);
    }
    free(dns->file);
    free(dns);
    *dnsp = NULL;
}

/* mdns_file_lookup - the test file as a zone */

static int mdns_file_lookup(struct mdns *dns, const char *name, int rrtype,
			            struct dns_answer *ans)
{
    size_t  len = strlen(name);
    int     found = 0;

    if (len > 0 && name[len - 1] == '.')
	len--;
    for (int i = 0; i < dns->file_count; i++) {
	if (strlen(dns->file[i].name) != len || strncasecmp(dns->file[i].name, name, len))
	    continue;
	found = 1;
	if (rrtype != DNS_T_TXT)
	    continue;
	ans->rr = xrealloc(ans->rr, (ans->count + 1) * sizeof(*ans->rr));
	ans->rr[ans->count].data = (unsigned char *) xstrdup(dns->file[i].value);
	ans->rr[ans->count].len = strlen(dns->file[i].value);
	ans->count++;
    }
    ans->status = ans->count ? DNS_OK : found ? DNS_NODATA : DNS_NXDOMAIN;
    ans->why = ans->count ? "NOERROR" : found ? "no record of that type" : "NXDOMAIN";
    return (ans->status);
}

/* mdns_guard_set - the organizational domains whose lookups decide DMARC */

void    mdns_guard_set(const char *const *domains, int count)
{
    mdns_guard_count = 0;
    for (int i = 0; i < count && mdns_guard_count < MDNS_GUARD_MAX; i++)
	if (domains[i] && *domains[i] && strlen(domains[i]) < sizeof(mdns_guard[0]))
	    strcpy(mdns_guard[mdns_guard_count++], domains[i]);
}

/* mdns_guarded - NAME is a guarded domain or under one */

int     mdns_guarded(const char *name)
{
    size_t  len = strlen(name), n;

    if (len > 0 && name[len - 1] == '.')
	len--;
    for (int i = 0; i < mdns_guard_count; i++) {
	n = strlen(mdns_guard[i]);
	if (n > len || strncasecmp(name + len - n, mdns_guard[i], n) != 0)
	    continue;
	if (n == len || name[len - n - 1] == '.')
	    return (1);
    }
    return (0);
}

void    mdns_budget_favour(int on)
{
    mdns_favoured = on;
}

void    mdns_budget_share(int parts)
{
    long    left = mdns_budgeted ? mdns_budget_ms - mdns_spent_ms : 0;

    mdns_share_end = parts > 0 ? mdns_spent_ms + (left > 0 ? left / parts : 0) : -1;
}

/*
 * mdns_left - milliseconds left of this thread's budget for a lookup of
 * NAME (-1: no budget; NULL: one that decides DMARC). Other lookups may
 * spend only the first half: a spoofer's own silent names must not
 * starve the From: domain's.
 */
static long mdns_left(const char *name)
{
    long    budget = mdns_budget_ms;

    if (!mdns_budgeted)
	return (-1);
    if (name && !mdns_favoured && !mdns_guarded(name))
	budget -= mdns_budget_ms / 2;
    if (mdns_share_end >= 0 && mdns_share_end < budget)
	budget = mdns_share_end;
    /* overdrawn (a lookup outlived what was left by a millisecond) is
       spent, never -1, which means no budget: then every later lookup
       waited dns_timeout in full */
    return (mdns_spent_ms >= budget ? 0 : budget - mdns_spent_ms);
}

int     mdns_lookup(struct mdns *dns, const char *name, int rrtype, struct dns_answer **answer)
{
    long    left = mdns_left(name), start;
    struct dns_answer *ans;
    int     status;

    if (dns->res == NULL) {
	*answer = xcalloc(1, sizeof(**answer));
	return (mdns_file_lookup(dns, name, rrtype, *answer));
    }
    if (left >= 0 && left < 1) {
	*answer = ans = xcalloc(1, sizeof(*ans));
	ans->status = DNS_TEMPFAIL;
	ans->why = "the message's DNS time budget is spent";
	return (ans->status);
    }
    start = mdns_now_ms();
    status = dns_lookup_ms(dns->res, name, rrtype,
			   left >= 0 && left < dns->timeout_ms ? (int) left : dns->timeout_ms,
			   answer);
    mdns_spent_ms += mdns_now_ms() - start;
    return (status);
}

/*
 * What dnskey_verifiable() found wrong with this thread's message's key
 * records, by query name: as many as the message's signatures looked
 * up (verify_signatures_max, up to 1000), grown as needed, emptied at
 * each message's start and freed at its end (mengine's idle worker
 * threads exit, and a __thread pointer has no destructor).
 */
struct mdns_keyrec {
    char    name[256];			/* no trailing dot */
    int     kind;			/* MDNS_KEYREC_INVALID or _TOOSMALL */
    char    why[160];
};

static __thread struct mdns_keyrec *mdns_keyrec;
static __thread int mdns_keyrec_count;
static __thread int mdns_keyrec_alloc;

static struct mdns_keyrec *mdns_keyrec_find(const char *name)
{
    size_t  len = strlen(name);

    if (len > 0 && name[len - 1] == '.')
	len--;
    for (int i = 0; i < mdns_keyrec_count; i++)
	if (strlen(mdns_keyrec[i].name) == len
	    && strncasecmp(mdns_keyrec[i].name, name, len) == 0)
	    return (&mdns_keyrec[i]);
    return (NULL);
}

static void mdns_keyrec_note(const char *name, int kind, const char *prefix,
			             const char *why)
{
    struct mdns_keyrec *k = mdns_keyrec_find(name);
    size_t  len = strlen(name);

    if (len > 0 && name[len - 1] == '.')
	len--;
    if (k == NULL) {
	if (len >= sizeof(k->name))
	    return;				/* no query name is that long */
	if (mdns_keyrec_count == mdns_keyrec_alloc)
	    mdns_keyrec = xrealloc(mdns_keyrec, sizeof(*mdns_keyrec)
				   * (mdns_keyrec_alloc = 2 * mdns_keyrec_alloc + 8));
	k = &mdns_keyrec[mdns_keyrec_count++];
	memcpy(k->name, name, len);
	k->name[len] = 0;
    }
    k->kind = kind;
    snprintf(k->why, sizeof(k->why), "%s%s", prefix, why);
}

int     mdns_keyrec_verdict(const char *selector, const char *domain, const char **why)
{
    char    name[300];
    struct mdns_keyrec *k;

    if (selector == NULL || domain == NULL || mdns_keyrec_count == 0
	|| snprintf(name, sizeof(name), "%s._domainkey.%s", selector, domain)
	>= (int) sizeof(name) || (k = mdns_keyrec_find(name)) == NULL)
	return (MDNS_KEYREC_NONE);
    *why = k->why;
    return (k->kind);
}

void    mdns_budget_start(int budget_ms)
{
    mdns_keyrec_count = 0;
    mdns_budget_ms = budget_ms;
    mdns_spent_ms = 0;
    mdns_favoured = 0;
    mdns_share_end = -1;
    mdns_budgeted = 1;
}

void    mdns_budget_end(void)
{
    free(mdns_keyrec);				/* a worker thread may exit next */
    mdns_keyrec = NULL;
    mdns_keyrec_alloc = 0;
    mdns_keyrec_count = 0;
    mdns_budgeted = 0;
    mdns_favoured = 0;
    mdns_share_end = -1;
    mdns_guard_count = 0;
}

int     mdns_budget_spent(void)
{
    long    left = mdns_left(NULL);

    return (left >= 0 && left < 1);
}

/* libopendkim's resolver hooks: the whole query runs in the start hook */

struct mdns_dkim_query {
    int     status;			/* DKIM_DNS_SUCCESS or _ERROR */
    size_t  len;
};

/*
 * mdns_nxdomain - an NXDOMAIN reply for the root name: libopendkim
 * reads the question's type and class and the rcode, nothing else
 */
static const unsigned char mdns_nxdomain[] = {
    0, 0, 0x81, 0x83, 0, 1, 0, 0, 0, 0, 0, 0,	/* QR RD RA, rcode 3; one question */
    0, 0, DNS_T_TXT, 0, 1,			/* ". TXT IN" */
};

/*
 * mdns_txt_reply - a reply to "name TXT" with one record, text: what
 * libopendkim reads of it (question, answer type, class, strings)
 */
static size_t mdns_txt_reply(const char *name, const char *text, unsigned char *buf,
			             size_t buflen)
{
    static const unsigned char head[] = {0, 0, 0x81, 0x80, 0, 1, 0, 1, 0, 0, 0, 0};
    size_t  tlen = strlen(text), rdlen = tlen + (tlen + 254) / 255, n = sizeof(head);

    if (n + strlen(name) + 2 + 4 + 12 + rdlen > buflen || rdlen > 65535)
	return (0);
    memcpy(buf, head, n);
    for (const char *label = name, *dot; *label; label = dot + (*dot != 0)) {
	size_t  llen = (dot = label + strcspn(label, ".")) - label;

	if (llen == 0 || llen > 63)
	    return (0);
	buf[n++] = (unsigned char) llen;
	memcpy(buf + n, label, llen);
	n += llen;
    }
    buf[n++] = 0;
    memcpy(buf + n, (unsigned char[]) {0, DNS_T_TXT, 0, 1, 0xc0, 12, 0, DNS_T_TXT, 0, 1,
	   0, 0, 0, 0, rdlen >> 8, rdlen & 0xff}, 16);
    n += 16;
    for (size_t off = 0, chunk; off < tlen; off += chunk) {
	chunk = tlen - off > 255 ? 255 : tlen - off;
	buf[n++] = (unsigned char) chunk;
	memcpy(buf + n, text + off, chunk);
	n += chunk;
    }
    return (n);
}

/*
 * mdns_dkim_keyrec - a lone key record judged before libopendkim reads
 * it; 1 when the reply to hand over is made (buf, q->len)
 */
static int mdns_dkim_keyrec(const char *name, const struct dns_answer *ans,
			            unsigned char *buf, size_t buflen, struct mdns_dkim_query *q)
{
    char    why[200], *record = NULL;
    int     bits;

    switch (dnskey_verifiable((const char *) ans->rr[0].data, ans->rr[0].len, &bits, &record,
			      why, sizeof(why))) {
    case DNSKEY_INVALID:
	mdns_keyrec_note(name, MDNS_KEYREC_INVALID, "key record: ", why);
	break;
    case DNSKEY_TOOSMALL:
	mdns_keyrec_note(name, MDNS_KEYREC_TOOSMALL, "", why);
	break;
    case DNSKEY_REENCODE:
	q->len = mdns_txt_reply(name, record, buf, buflen);
	free(record);
	return (q->len > 0);
    default:
	return (0);
    }
    if (sizeof(mdns_nxdomain) > buflen)
	return (0);
    memcpy(buf, mdns_nxdomain, sizeof(mdns_nxdomain));
    q->len = sizeof(mdns_nxdomain);
    return (1);
}

static int mdns_dkim_start(void *srv, int type, unsigned char *query, unsigned char *buf,
			           size_t buflen, void **qh)
{
    struct mdns_dkim_query *q = xcalloc(1, sizeof(*q));
    struct dns_answer *ans;

    q->status = DKIM_DNS_ERROR;
    mdns_lookup(srv, (char *) query, type, &ans);
    if (type == DNS_T_TXT && ans->status == DNS_OK && ans->count == 1
	&& strstr((char *) query, "._domainkey.") != NULL
	&& mdns_dkim_keyrec((char *) query, ans, buf, buflen, q)) {
	q->status = DKIM_DNS_SUCCESS;
    } else if (ans->status == DNS_BADNAME && sizeof(mdns_nxdomain) <= buflen) {
	memcpy(buf, mdns_nxdomain, sizeof(mdns_nxdomain));
	q->len = sizeof(mdns_nxdomain);
	q->status = DKIM_DNS_SUCCESS;
    } else if ((ans->status == DNS_OK || ans->status == DNS_NXDOMAIN || ans->status == DNS_NODATA)
	&& ans->packet != NULL && ans->packet_len <= buflen) {
	memcpy(buf, ans->packet, ans->packet_len);
	q->len = ans->packet_len;
	q->status = DKIM_DNS_SUCCESS;
    }
    dns_answer_free(&ans);
    *qh = q;
    return (0);
}

static int mdns_dkim_wait(void *srv, void *qh, struct timeval *timeout, size_t *bytes,
			          int *error, int *dnssec)
{
    struct mdns_dkim_query *q = qh;

    *bytes = q->len;
    if (error)
	*error = 0;
    if (dnssec)
	*dnssec = DKIM_DNSSEC_UNKNOWN;
    return (q->status);
}

static int mdns_dkim_cancel(void *srv, void *qh)
{
    free(qh);
    return (0);
}

void    mdns_dkim_hooks(struct mdns *dns, DKIM_LIB *lib)
{
    dkim_dns_set_query_service(lib, dns);
    dkim_dns_set_query_start(lib, mdns_dkim_start);
    dkim_dns_set_query_waitreply(lib, mdns_dkim_wait);
    dkim_dns_set_query_cancel(lib, mdns_dkim_cancel);
    dkim_dns_set_init(lib, NULL);		/* the service is ours: never res_init'ed */
    dkim_dns_set_close(lib, NULL);		/* ... nor closed by dkim_close() */
}
