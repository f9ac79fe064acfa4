#ifndef MXKIT_DNS_H
#define MXKIT_DNS_H

/*
 * dns - DNS lookups through servers the operator names, with a deadline.
 *
 * Usage (the whole API):
 *
 *	const char *err;
 *	struct dns_resolver *res = dns_resolver_create("127.0.0.1:5353", 5000, &err);
 *	struct dns_answer *ans;
 *
 *	switch (dns_txt(res, "sel._domainkey.example.com", &ans)) {
 *	case DNS_OK:		ans->rr[0..ans->count-1]: one per TXT record
 *	case DNS_NXDOMAIN:	the name does not exist
 *	case DNS_NODATA:	the name exists, no record of that type
 *	case DNS_TEMPFAIL:	timeout, SERVFAIL, REFUSED, network: try later
 *	case DNS_BADNAME:	the name cannot be queried (too long, empty label, a backslash)
 *	}
 *	dns_answer_free(&ans);		(an answer exists for every status)
 *	dns_resolver_free(&res);
 *
 * Servers: NULL, "" or "system" use /etc/resolv.conf; otherwise a comma or
 * space separated list of "IPv4", "IPv4:port", "IPv6", "[IPv6]:port".
 * dns_servers_check() validates such a list without creating anything
 * (for "-t"). timeout_ms bounds each dns_lookup() call from start to
 * answer; past it the lookup returns DNS_TEMPFAIL with why "timeout".
 * dns_lookup_ms() takes its own bound (a caller's remaining budget).
 *
 * One resolver may be shared by any number of threads. Create it after
 * any fork(): its worker thread starts at the first lookup.
 */

#include <stddef.h>

#define DNS_OK		0
#define DNS_NXDOMAIN	1
#define DNS_NODATA	2
#define DNS_TEMPFAIL	3
#define DNS_BADNAME	4

/* RR types callers use; any other numeric type works with dns_lookup(). */
#define DNS_T_A		1
#define DNS_T_PTR	12
#define DNS_T_MX	15
#define DNS_T_TXT	16
#define DNS_T_AAAA	28

struct dns_rr {
    unsigned char *data;		/* rdata; TXT: the strings joined */
    size_t  len;			/* bytes in data (NUL not counted) */
};

struct dns_answer {
    int     status;			/* DNS_OK, ... as returned */
    const char *why;			/* static: "timeout", "SERVFAIL", ... */
    int     count;			/* records in rr (0 unless DNS_OK) */
    struct dns_rr *rr;			/* every data is NUL-terminated */
    unsigned char *packet;		/* the reply as received (NULL on timeout) */
    size_t  packet_len;
};

struct dns_resolver;

const char *dns_servers_check(const char *servers);
struct dns_resolver *dns_resolver_create(const char *servers, int timeout_ms,
					         const char **err);
void    dns_resolver_free(struct dns_resolver **res);
int     dns_lookup(struct dns_resolver *res, const char *name, int rrtype,
		           struct dns_answer **answer);
int     dns_lookup_ms(struct dns_resolver *res, const char *name, int rrtype,
		              int timeout_ms, struct dns_answer **answer);
int     dns_txt(struct dns_resolver *res, const char *name, struct dns_answer **answer);
void    dns_answer_free(struct dns_answer **answer);
const char *dns_status_str(int status);
int     dns_resolver_timeout(const struct dns_resolver *res);

#endif
