/*
 * NAME
 *	store_resolve 3
 * SUMMARY
 *	look up Redis and Sentinel host names without blocking the loop
 * SYNOPSIS
 *	#include "msg.h"
#include "store_resolve.h"
 *
 *	int	resolve_literal(host)
 *	const char *resolve_check(resolv_conf, hosts_file)
 *	struct resolve *resolve_create(base, resolv_conf, hosts_file)
 *	void	resolve_free(&resolve)
 *	struct resolve_req *resolve_start(resolve, name, fn, context)
 *	void	resolve_cancel(&req)
 * DESCRIPTION
 *	hiredis resolves a host name with getaddrinfo(), which blocks the
 *	thread (and with it every request of that worker) for as long as
 *	the DNS servers take: seconds when one does not answer. So the
 *	stores connect hiredis to numeric addresses only, and names are
 *	looked up here, with libevent's evdns on the worker's own loop.
 *
 *	Why evdns and not common/dns(3): dns(3) is a blocking call with a
 *	deadline (libunbound on a worker thread), made for milter threads
 *	that may wait; here nothing may wait. evdns runs on the loop the
 *	store already uses and, unlike libunbound, reads resolv.conf's
 *	"search", "domain" and "ndots" (a Kubernetes Service name such as
 *	"redis" needs them) and the hosts file, as getaddrinfo() would.
 *
 *	resolve_create() reads resolv_conf (NULL: /etc/resolv.conf;
 *	nameserver lines may carry a port, "127.0.0.1:5353") and
 *	hosts_file (NULL: /etc/hosts). Each query is tried for 1 s, twice
 *	per server, unless resolv.conf's "options timeout: attempts:" say
 *	otherwise; 0x20 case randomisation is off (glibc does not do it,
 *	and some servers do not keep the case); one family's answer waits
 *	at most 1 s for the other's. Whatever those say, a lookup ends
 *	after RESOLVE_MS. evdns marks a server that missed 3 answers in a
 *	row as down, prefers the others, and probes it (an A query for
 *	"google.com", first after 10 s, then less and less often) until it
 *	answers.
 *
 *	resolve_start() looks up name in the hosts file (its addresses in
 *	the file's order), else its A and AAAA records (IPv4 first, as
 *	hiredis prefers), and calls fn exactly once, never from inside
 *	resolve_start() itself, with every numeric address evdns found
 *	(RESOLVE_ADDRS_MAX: all it keeps of one answer) or why there are
 *	none. The handle is invalid once fn
 *	runs: fn must forget it first. resolve_cancel() forgets a lookup
 *	under way; fn is then never called.
 *
 *	resolve_create() runs in each worker, after "user" took effect: a
 *	configured file that cannot be opened then is logged (once) and no
 *	server is used at all, so every lookup fails visibly instead of
 *	going to evdns's default server.
 *
 *	resolve_literal() says whether host is an IP address (IPv4, or
 *	anything with a ':': IPv6, with a "%zone"), which is given to
 *	hiredis as is. resolve_check() is for -t: the files must be
 *	readable and resolv_conf must name a server.
 */

#include "build_config.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <event2/dns.h>
#include <event2/util.h>

#include "config.h"
#include "msg.h"
#include "store_resolve.h"
#include "xalloc.h"

struct resolve {
    struct event_base *base;
    struct evdns_base *dns;
};

struct resolve_req {
    struct event_base *base;
    resolve_fn fn;			/* NULL: cancelled, evdns still owes */
    void   *context;
    struct evdns_getaddrinfo_request *dns;
    int     in_evdns;			/* evdns's callback still to come */
    struct event *timer;		/* RESOLVE_MS */
    struct event *deliver;		/* fn, outside evdns's call stack */
    struct resolve_result result;
    char    name[256];
};

int     resolve_literal(const char *host)
{
    struct in_addr a4;

    return (strchr(host, ':') != NULL || inet_pton(AF_INET, host, &a4) == 1);
}

/* resolve_quiet - evdns's own lines would repeat per worker: ours say it */

static void resolve_quiet(int severity, const char *text)
{
    (void) severity;
    (void) text;
}

static void resolve_quiet_init(void)
{
    evdns_set_log_fn(resolve_quiet);
}

static void resolve_init(void)
{
    static pthread_once_t once = PTHREAD_ONCE_INIT;

    pthread_once(&once, resolve_quiet_init);	/* every worker creates one */
}

/* resolve_file_error - NULL when path can be opened for reading */

static const char *resolve_file_error(const char *what, const char *path)
{
    static char err[400];
    const char *why;
    int     fd;

    if ((fd = config_open_regular(path, &why)) >= 0) {
	close(fd);
	return (NULL);
    }
    snprintf(err, sizeof(err), "%s: cannot open %.200s: %s", what, path, why);
    return (err);
}

const char *resolve_check(const char *resolv_conf, const char *hosts_file)
{
    static char err[400];
    struct event_base *base;
    struct evdns_base *dns;
    const char *why;
    int     rc = 0, hosts_rc = 0;

    if (hosts_file && (why = resolve_file_error("hosts_file", hosts_file)) != NULL)
	return (why);
    if (resolv_conf && (why = resolve_file_error("resolv_conf", resolv_conf)) != NULL)
	return (why);
    if (resolv_conf == NULL && hosts_file == NULL)
	return (NULL);
    resolve_init();
    if ((base = event_base_new()) == NULL || (dns = evdns_base_new(base, 0)) == NULL) {
	if (base)
	    event_base_free(base);
	return ("resolv_conf: cannot check it (out of memory)");
    }
    /* opened is not read: a directory opens */
    if (hosts_file)
	hosts_rc = evdns_base_load_hosts(dns, hosts_file);
    if (resolv_conf && (rc = evdns_base_resolv_conf_parse(dns, DNS_OPTION_NAMESERVERS
			    | DNS_OPTION_NAMESERVERS_NO_DEFAULT, resolv_conf)) == 0
	&& evdns_base_count_nameservers(dns) == 0)
	rc = 6;
    evdns_base_free(dns, 0);
    event_base_free(base);
    if (hosts_rc != 0) {
	snprintf(err, sizeof(err), "hosts_file: %.200s cannot be read", hosts_file);
	return (err);
    }
    if (rc == 0)
	return (NULL);
    snprintf(err, sizeof(err), "resolv_conf: %.200s %s", resolv_conf,
	     rc == 6 ? "names no usable nameserver" : rc == 3 ? "is too large"
	     : "cannot be read");
    return (err);
}

/*
 * resolve_unreadable - the daemon reads the files after "user" took
 * effect: a file only root may read would silently give evdns's
 * defaults (127.0.0.1). Say so once, not once per worker.
 */
static int resolve_unreadable(const char *what, const char *path)
{
    static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
    static int warned;
    const char *err;

    if (path == NULL || (err = resolve_file_error(what, path)) == NULL)
	return (0);
    pthread_mutex_lock(&lock);
    if (!warned++)
	msg_warn("%s (as uid %ld): host names in store will not resolve", err, (long) getuid());
    pthread_mutex_unlock(&lock);
    return (1);
}

struct resolve *resolve_create(struct event_base *base, const char *resolv_conf,
			               const char *hosts_file)
{
    struct resolve *r = xcalloc(1, sizeof(*r));
    int     flags = DNS_OPTIONS_ALL;
    int     bad = resolve_unreadable("resolv_conf", resolv_conf)
    | resolve_unreadable("hosts_file", hosts_file);

    resolve_init();
    r->base = base;
    /* no socket, no event until a lookup: the loop can still end */
    if ((r->dns = evdns_base_new(base, EVDNS_BASE_DISABLE_WHEN_INACTIVE)) == NULL)
	msg_fatal("resolve: evdns_base_new: out of memory");
    /* defaults first, so that resolv.conf's options override them */
    evdns_base_set_option(r->dns, "timeout:", "1");
    evdns_base_set_option(r->dns, "attempts:", "2");
    evdns_base_set_option(r->dns, "randomize-case:", "0");
    /* an AAAA query left unanswered must not hold back the A answer */
    evdns_base_set_option(r->dns, "getaddrinfo-allow-skew:", "1");
    if (hosts_file)
	flags &= ~DNS_OPTION_HOSTSFILE;
    if (bad)					/* no server rather than a wrong one */
	return (r);
    /* a missing /etc/resolv.conf means 127.0.0.1, as for getaddrinfo() */
    (void) evdns_base_resolv_conf_parse(r->dns, flags, resolv_conf ? resolv_conf
					: "/etc/resolv.conf");
    if (hosts_file)
	(void) evdns_base_load_hosts(r->dns, hosts_file);
    return (r);
}

void    resolve_free(struct resolve **rp)
{
    struct resolve *r = *rp;

    if (r == NULL)
	return;
    *rp = NULL;
    evdns_base_free(r->dns, 1);			/* cancelled ones are told */
    free(r);
}

static void resolve_req_destroy(struct resolve_req *req)
{
    event_free(req->timer);
    event_free(req->deliver);
    free(req);
}

/* resolve_why - getaddrinfo-style errors in an operator's words */

static const char *resolve_why(int code)
{
    switch (code) {
    case EVUTIL_EAI_NONAME:
	return ("no such name (NXDOMAIN)");
    case EVUTIL_EAI_NODATA:
	return ("the name has no address (no A or AAAA record)");
    case EVUTIL_EAI_FAIL:
	/* evdns says "failed" for all of these, NODATA included */
	return ("no address from the DNS servers "
		"(no answer, SERVFAIL, REFUSED or no A/AAAA record)");
    case EVUTIL_EAI_MEMORY:
	return ("out of memory");
    default:
	return (evutil_gai_strerror(code));
    }
}

/* resolve_got - evdns's answer (maybe inside evdns_getaddrinfo()) */

static void resolve_got(int code, struct evutil_addrinfo *ai, void *context)
{
    struct resolve_req *req = context;
    struct resolve_result *res = &req->result;

    req->in_evdns = 0;
    req->dns = NULL;
    if (req->fn == NULL) {			/* cancelled: nobody waits */
	if (ai)
	    evutil_freeaddrinfo(ai);
	resolve_req_destroy(req);
	return;
    }
    for (struct evutil_addrinfo *a = ai; a && res->count < RESOLVE_ADDRS_MAX; a = a->ai_next) {
	const void *addr = a->ai_family == AF_INET
	    ? (const void *) &((struct sockaddr_in *) a->ai_addr)->sin_addr
	    : (const void *) &((struct sockaddr_in6 *) a->ai_addr)->sin6_addr;

	if ((a->ai_family == AF_INET || a->ai_family == AF_INET6)
	    && inet_ntop(a->ai_family, addr, res->addr[res->count], sizeof(res->addr[0])))
	    res->count++;
    }
    if (ai)
	evutil_freeaddrinfo(ai);
    if (res->count == 0)
	snprintf(res->why, sizeof(res->why), "%s", resolve_why(code ? code : EVUTIL_EAI_NODATA));
    evtimer_del(req->timer);
    event_active(req->deliver, 0, 0);
}

/* resolve_deliver - the result to its caller; the handle dies first */

static void resolve_deliver(evutil_socket_t fd, short what, void *context)
{
    struct resolve_req *req = context;
    struct resolve_result result = req->result;
    resolve_fn fn = req->fn;
    void   *fn_context = req->context;

    resolve_req_destroy(req);
    fn(fn_context, &result);
}

/* resolve_timeout - RESOLVE_MS passed: give up, tell the caller */

static void resolve_timeout(evutil_socket_t fd, short what, void *context)
{
    struct resolve_req *req = context;
    struct resolve_result result = {0};
    resolve_fn fn = req->fn;
    void   *fn_context = req->context;

    snprintf(result.why, sizeof(result.why), "no answer within %d ms", RESOLVE_MS);
    resolve_cancel(&req);
    fn(fn_context, &result);
}

struct resolve_req *resolve_start(struct resolve *r, const char *name,
				          resolve_fn fn, void *context)
{
    struct resolve_req *req = xcalloc(1, sizeof(*req));
    struct timeval cap = {RESOLVE_MS / 1000, (RESOLVE_MS % 1000) * 1000};
    struct evutil_addrinfo hints;
    struct evdns_getaddrinfo_request *dns;

    req->base = r->base;
    req->fn = fn;
    req->context = context;
    snprintf(req->name, sizeof(req->name), "%s", name);
    req->timer = evtimer_new(r->base, resolve_timeout, req);
    req->deliver = event_new(r->base, -1, 0, resolve_deliver, req);
    memset(&hints, 0, sizeof(hints));
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;		/* one entry per address */
    hints.ai_protocol = IPPROTO_TCP;
    req->in_evdns = 1;
    dns = evdns_getaddrinfo(r->dns, req->name, NULL, &hints, resolve_got, req);
    if (req->in_evdns) {			/* not answered at once */
	req->dns = dns;
	evtimer_add(req->timer, &cap);
    }
    return (req);
}

void    resolve_cancel(struct resolve_req **reqp)
{
    struct resolve_req *req = *reqp;

    if (req == NULL)
	return;
    *reqp = NULL;
    req->fn = NULL;
    evtimer_del(req->timer);
    event_del(req->deliver);
    if (req->in_evdns && req->dns)
	evdns_getaddrinfo_cancel(req->dns);	/* resolve_got() frees it */
    else
	resolve_req_destroy(req);
}
