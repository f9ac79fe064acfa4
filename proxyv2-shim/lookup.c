/*
 * NAME
 *	lookup 3
 * SUMMARY
 *	reverse and forward-confirmed client names on evdns
 * SYNOPSIS
 *	#include "lookup.h"
 *
 *	struct lookup *lookup_start(dns, base, timeout_ms, client, done, context)
 *	void	lookup_cancel(&lookup)
 * DESCRIPTION
 *	Postfix keeps the name it looked up for the shim's own address
 *	unless XCLIENT also sends NAME, so the shim must find the client's
 *	name as Postfix would: a PTR lookup, then a forward lookup of that
 *	name that must return the client's address. The results follow
 *	XCLIENT_README: NAME is the verified name, REVERSE_NAME the PTR
 *	answer; "[UNAVAILABLE]" when there is none, "[TEMPUNAVAIL]" when
 *	DNS failed (time-out, SERVFAIL), so that Postfix's
 *	reject_unknown_client_hostname keeps its meaning.
 *
 *	lookup_start() never calls done() before it returns; it calls it
 *	within timeout_ms (dns_timeout) with what it has by then.
 *	lookup_cancel() drops a pending lookup; done() is not called.
 * DIAGNOSTICS
 *	None; DNS problems become the bracketed results.
 */

#include "build_config.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/event.h>

#include "lookup.h"
#include "xalloc.h"

#define LOOKUP_UNAVAILABLE	"[UNAVAILABLE]"
#define LOOKUP_TEMPUNAVAIL	"[TEMPUNAVAIL]"

struct lookup {
    struct evdns_base *dns;
    struct evdns_request *req;
    struct event *deadline;		/* the PTR and forward lookups together */
    union addr_sockaddr client;
    char    ptr[256];
    lookup_done_fn done;		/* NULL once cancelled */
    void   *context;
};

static const char *lookup_failure(int result)
{
    return (result == DNS_ERR_SERVERFAILED || result == DNS_ERR_TIMEOUT
	    || result == DNS_ERR_SHUTDOWN ? LOOKUP_TEMPUNAVAIL : LOOKUP_UNAVAILABLE);
}

/*
 * lookup_valid_name - a name Postfix takes, by the rules of its own
 * valid_hostname(): labels of letters, digits, '_' and inner '-', at
 * most 63 bytes, none empty, 255 in all, and not all digits. Postfix
 * makes a PTR answer it does not take "unknown", and refuses it in
 * XCLIENT (501 Bad NAME syntax): sent, a client with a PTR of
 * "192.0.2.90", "1234" or "-bad-.example" got 421 on every attempt.
 */
static int lookup_valid_name(const char *name)
{
    size_t  label = 0;
    int     non_numeric = 0;

    for (const char *p = name; *p; p++) {
	if (isalnum((unsigned char) *p) || *p == '_') {
	    non_numeric |= !isdigit((unsigned char) *p);
	    if (++label > 63)
		return (0);
	} else if (*p == '.') {
	    if (label == 0 || p[1] == 0)
		return (0);			/* empty label, or a trailing dot */
	    label = 0;
	} else if (*p == '-') {
	    non_numeric = 1;
	    if (label++ == 0 || p[1] == 0 || p[1] == '.')
		return (0);			/* at a label's start or end */
	} else {
	    return (0);
	}
    }
    return (*name != 0 && non_numeric && strlen(name) <= 255);
}

/* lookup_finish - report once, then free (also after a cancel) */

static void lookup_finish(struct lookup *l, const char *name, const char *reverse_name)
{
    if (l->done)
	l->done(l->context, name, reverse_name);
    if (l->deadline)
	event_free(l->deadline);
    free(l);
}

/*
 * lookup_expired - dns_timeout is the whole lookup's: evdns times each
 * query alone, so a slow PTR and a slow forward answer held the hand-off
 * twice as long. The answer is [TEMPUNAVAIL]; the request's cancel
 * callback frees l.
 */
static void lookup_expired(evutil_socket_t fd, short what, void *arg)
{
    struct lookup *l = arg;

    if (l->done)
	l->done(l->context, LOOKUP_TEMPUNAVAIL, l->ptr[0] ? l->ptr : LOOKUP_TEMPUNAVAIL);
    l->done = NULL;
    if (l->req)
	evdns_cancel_request(l->dns, l->req);
}

static int lookup_matches(const struct lookup *l, char type, int count, const void *addresses)
{
    for (int i = 0; i < count; i++) {
	if (type == DNS_IPv4_A && l->client.sa.sa_family == AF_INET
	    && memcmp((const struct in_addr *) addresses + i, &l->client.in.sin_addr, 4) == 0)
	    return (1);
	if (type == DNS_IPv6_AAAA && l->client.sa.sa_family == AF_INET6
	    && memcmp((const struct in6_addr *) addresses + i, &l->client.in6.sin6_addr, 16) == 0)
	    return (1);
    }
    return (0);
}

static void lookup_forward_done(int result, char type, int count, int ttl, void *addresses,
				        void *arg)
{
    struct lookup *l = arg;

    if (result == DNS_ERR_NONE && lookup_matches(l, type, count, addresses))
	lookup_finish(l, l->ptr, l->ptr);
    else
	lookup_finish(l, result == DNS_ERR_NONE || result == DNS_ERR_NOTEXIST
		      ? LOOKUP_UNAVAILABLE : lookup_failure(result), l->ptr);
}

static void lookup_reverse_done(int result, char type, int count, int ttl, void *addresses,
				        void *arg)
{
    struct lookup *l = arg;
    const char *name = result == DNS_ERR_NONE && count > 0 ? *(char **) addresses : NULL;

    l->req = NULL;
    if (l->done == NULL || result != DNS_ERR_NONE || name == NULL || !lookup_valid_name(name)) {
	const char *why = result == DNS_ERR_NONE ? LOOKUP_UNAVAILABLE : lookup_failure(result);

	lookup_finish(l, why, why);
	return;
    }
    snprintf(l->ptr, sizeof(l->ptr), "%s", name);
    l->req = l->client.sa.sa_family == AF_INET
	? evdns_base_resolve_ipv4(l->dns, l->ptr, DNS_QUERY_NO_SEARCH, lookup_forward_done, l)
	: evdns_base_resolve_ipv6(l->dns, l->ptr, DNS_QUERY_NO_SEARCH, lookup_forward_done, l);
    if (l->req == NULL)
	lookup_finish(l, LOOKUP_TEMPUNAVAIL, l->ptr);
}

struct lookup *lookup_start(struct evdns_base *dns, struct event_base *base, int timeout_ms,
			            const union addr_sockaddr *client, lookup_done_fn done,
			            void *context)
{
    struct lookup *l = xcalloc(1, sizeof(*l));
    struct timeval tv = {timeout_ms / 1000, (timeout_ms % 1000) * 1000};

    l->dns = dns;
    l->client = *client;
    l->done = done;
    l->context = context;
    l->req = client->sa.sa_family == AF_INET
	? evdns_base_resolve_reverse(dns, &client->in.sin_addr, DNS_QUERY_NO_SEARCH,
				     lookup_reverse_done, l)
	: evdns_base_resolve_reverse_ipv6(dns, &client->in6.sin6_addr, DNS_QUERY_NO_SEARCH,
					  lookup_reverse_done, l);
    if (l->req == NULL) {
	free(l);
	return (NULL);
    }
    l->deadline = evtimer_new(base, lookup_expired, l);
    evtimer_add(l->deadline, &tv);
    return (l);
}

void    lookup_cancel(struct lookup **lp)
{
    struct lookup *l = *lp;

    if (l == NULL)
	return;
    /* evdns still calls back (DNS_ERR_CANCEL); that call frees l. */
    l->done = NULL;
    evtimer_del(l->deadline);
    if (l->req)
	evdns_cancel_request(l->dns, l->req);
    *lp = NULL;
}
