/*
 * NAME
 *	dns 3
 * SUMMARY
 *	DNS lookups through operator-named servers, with a deadline
 * SYNOPSIS
 *	#include "dns.h"
 *
 *	const char *dns_servers_check("127.0.0.1:5353, [::1]:53")
 *	struct dns_resolver *dns_resolver_create(servers, timeout_ms, &err)
 *	int	dns_lookup(res, name, DNS_T_MX, &answer)
 *	int	dns_txt(res, name, &answer)
 *	int	dns_lookup_ms(res, name, DNS_T_A, timeout_ms, &answer)
 *	void	dns_answer_free(&answer)
 *	void	dns_resolver_free(&res)
 * DESCRIPTION
 *	A thin layer over libunbound. Every server the operator lists
 *	becomes a forwarder for the root ("127.0.0.1@5353" in unbound's
 *	notation); without a list, /etc/resolv.conf's servers are used.
 *	Unbound caches answers for their TTL and follows CNAMEs.
 *
 *	libunbound's synchronous ub_resolve() has no deadline, so lookups
 *	are asynchronous underneath: one worker thread per resolver
 *	(started at the first lookup, so that a daemon may fork first)
 *	runs ub_process() and hands each answer to the thread waiting for
 *	it; a waiter whose deadline passes cancels its query and returns
 *	DNS_TEMPFAIL. A query is reference-counted by its waiter and by
 *	its pending callback, so whichever of the two ends last frees it.
 *
 *	The status follows RFC 7208 section 5 and RFC 7489: NOERROR with
 *	records is DNS_OK, NOERROR without is DNS_NODATA, NXDOMAIN is
 *	DNS_NXDOMAIN, and every other RCODE, a timeout or a network error
 *	is DNS_TEMPFAIL (why says which).
 *
 *	TXT answers hold one entry per record of the RRset, the record's
 *	character-strings joined without separator (RFC 7208 3.3, RFC 6376
 *	3.6.2.2). A TXT string may contain a NUL byte: callers that want
 *	C strings compare strlen() with len.
 * DIAGNOSTICS
 *	dns_servers_check() and dns_resolver_create() return/set a static
 *	error string.
 */

#include "build_config.h"

#include <arpa/inet.h>
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <unbound.h>

#include "addr.h"
#include "config.h"
#include "dns.h"
#include "xalloc.h"

struct dns_resolver {
    struct ub_ctx *ctx;
    int     timeout_ms;
    pthread_mutex_t lock;
    pthread_cond_t cond;		/* broadcast at every answer */
    pthread_t worker;
    int     started;
    int     stop_pipe[2];
};

struct dns_query {
    int     refs;			/* waiter + pending callback */
    int     done;
    int     err;			/* libunbound's error code */
    struct ub_result *result;
};

/* dns_parse_server - "addr", "addr:port", "[v6]:port" to "addr@port" */

static const char *dns_parse_server(const char *item, char *out, size_t outlen)
{
    char    host[INET6_ADDRSTRLEN + 1];
    const char *port = NULL;
    const char *end;
    unsigned char bin[16];
    size_t  hlen;
    long    num;

    if (item[0] == '[') {
	if ((end = strchr(item, ']')) == NULL)
	    return ("missing ']' after an IPv6 address");
	hlen = end - item - 1;
	item += 1;
	if (end[1] == ':')
	    port = end + 2;
	else if (end[1] != 0)
	    return ("junk after ']' (expected \":port\")");
    } else if ((end = strchr(item, ':')) != NULL && strchr(end + 1, ':') == NULL) {
	hlen = end - item;			/* exactly one ':' : IPv4:port */
	port = end + 1;
    } else {
	hlen = strlen(item);
    }
    if (hlen == 0 || hlen >= sizeof(host))
	return ("bad server address");
    memcpy(host, item, hlen);
    host[hlen] = 0;
    if (inet_pton(AF_INET, host, bin) != 1 && inet_pton(AF_INET6, host, bin) != 1)
	return ("server must be an IP address (IPv4, IPv4:port, IPv6 or [IPv6]:port)");
    num = 53;
    if (port != NULL && ((num = addr_port_number(port, strlen(port))) < 1 || num > 65535))
	return ("bad port (1-65535)");
    snprintf(out, outlen, "%s@%ld", host, num);
    return (NULL);
}

/* dns_servers_each - parse a server list, calling back with each server */

static const char *dns_servers_each(const char *servers, struct ub_ctx *ctx)
{
    char  **items;
    char    buf[INET6_ADDRSTRLEN + 16];
    const char *err = NULL;
    int     count;
    int     i;

    items = config_split_list(servers, &count);
    if (count == 0)
	err = "empty server list";
    for (i = 0; err == NULL && i < count; i++) {
	if ((err = dns_parse_server(items[i], buf, sizeof(buf))) == NULL
	    && ctx != NULL && ub_ctx_set_fwd(ctx, buf) != 0)
	    err = "libunbound refused a server address";
    }
    config_list_free(&items);
    return (err);
}

static int dns_system(const char *servers)
{
    return (servers == NULL || *servers == 0 || strcmp(servers, "system") == 0);
}

/* dns_servers_check - validate a server list */

const char *dns_servers_check(const char *servers)
{
    return (dns_system(servers) ? NULL : dns_servers_each(servers, NULL));
}

/* dns_resolver_create - a resolver on the given servers */

struct dns_resolver *dns_resolver_create(const char *servers, int timeout_ms,
					         const char **err)
{
    struct dns_resolver *res;
    pthread_condattr_t attr;

    *err = NULL;
    if (timeout_ms < 1) {
	*err = "DNS timeout must be positive";
	return (NULL);
    }
    res = xcalloc(1, sizeof(*res));
    res->timeout_ms = timeout_ms;
    res->stop_pipe[0] = res->stop_pipe[1] = -1;
    if ((res->ctx = ub_ctx_create()) == NULL) {
	*err = "cannot create a libunbound context";
	free(res);
	return (NULL);
    }
    /*
     * Threads, not the default forked process; loopback servers allowed;
     * the names unbound would answer itself (RFC 6761 "test.", private
     * reverse zones) go to the servers like any other: they are the
     * operator's to serve, and the tests' zones are under "test.".
     */
    if (ub_ctx_async(res->ctx, 1) != 0
	|| ub_ctx_set_option(res->ctx, "do-not-query-localhost:", "no") != 0
	|| ub_ctx_set_option(res->ctx, "local-zone:", "test. transparent") != 0
	|| ub_ctx_set_option(res->ctx, "unblock-lan-zones:", "yes") != 0
	|| ub_ctx_set_option(res->ctx, "insecure-lan-zones:", "yes") != 0
	|| ub_ctx_set_option(res->ctx, "infra-keep-probing:", "yes") != 0)
	*err = "cannot configure libunbound";
    else if (dns_system(servers)) {
	if (ub_ctx_resolvconf(res->ctx, NULL) != 0)
	    *err = "cannot read the system's resolver configuration (/etc/resolv.conf)";
    } else
	*err = dns_servers_each(servers, res->ctx);
    if (*err != NULL) {
	ub_ctx_delete(res->ctx);
	free(res);
	return (NULL);
    }
    pthread_mutex_init(&res->lock, NULL);
    pthread_condattr_init(&attr);
    pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
    pthread_cond_init(&res->cond, &attr);
    pthread_condattr_destroy(&attr);
    return (res);
}

/* dns_worker - run libunbound's callbacks as answers arrive */

static void *dns_worker(void *arg)
{
    struct dns_resolver *res = arg;
    struct pollfd pfd[2];

    pfd[0].fd = ub_fd(res->ctx);
    pfd[1].fd = res->stop_pipe[0];
    pfd[0].events = pfd[1].events = POLLIN;
    for (;;) {
	if (poll(pfd, 2, -1) < 0 && errno != EINTR)
	    break;
	if (pfd[1].revents)
	    break;
	if (pfd[0].revents && ub_process(res->ctx) != 0)
	    (void) poll(NULL, 0, 10);		/* do not spin on a broken pipe */
    }
    return (NULL);
}

/* dns_query_unref - drop one reference; caller holds the lock */

static void dns_query_unref(struct dns_query *q)
{
    if (--q->refs == 0) {
	if (q->result)
	    ub_resolve_free(q->result);
	free(q);
    }
}

static void dns_callback(void *arg, int err, struct ub_result *result)
{
    struct dns_query *q = arg;
    struct dns_resolver *res = *(struct dns_resolver **) (q + 1);

    pthread_mutex_lock(&res->lock);
    q->err = err;
    q->result = result;
    q->done = 1;
    dns_query_unref(q);
    pthread_cond_broadcast(&res->cond);
    pthread_mutex_unlock(&res->lock);
}

/*
 * dns_name_ok - what the wire format can carry (RFC 1035 2.3.4), and no
 * backslash: libunbound reads one as an escape ("\046" is a dot, "\999"
 * a syntax error), so the name asked would not be the name given
 */

static int dns_name_ok(const char *name)
{
    size_t  len = strlen(name);
    size_t  label = 0;
    const char *cp;

    if (len > 0 && name[len - 1] == '.')
	len--;
    if (len == 0 || len > 253)
	return (0);
    for (cp = name; cp < name + len; cp++) {
	if (*cp == '.') {
	    if (label == 0)
		return (0);
	    label = 0;
	} else if (*cp == '\\' || ++label > 63)
	    return (0);
    }
    return (label > 0);
}

/* dns_txt_join - one TXT rdata's character-strings, joined */

static int dns_txt_join(struct dns_rr *rr, const unsigned char *data, size_t len)
{
    size_t  pos = 0;
    size_t  n;

    rr->data = xmalloc(len + 1);
    rr->len = 0;
    while (pos < len) {
	n = data[pos++];
	if (n > len - pos)
	    return (-1);
	memcpy(rr->data + rr->len, data + pos, n);
	rr->len += n;
	pos += n;
    }
    rr->data[rr->len] = 0;
    return (0);
}

/* dns_answer_fill - a libunbound result as our answer */

static void dns_answer_fill(struct dns_answer *ans, int rrtype, struct ub_result *r)
{
    static const char *rcodes[] = {"NOERROR", "FORMERR", "SERVFAIL", "NXDOMAIN",
	"NOTIMP", "REFUSED"};
    int     i;

    if (r->answer_packet != NULL && r->answer_len > 0) {
	ans->packet = xmalloc(r->answer_len);
	memcpy(ans->packet, r->answer_packet, r->answer_len);
	ans->packet_len = r->answer_len;
    }
    if (r->rcode == 3 || r->nxdomain) {
	ans->status = DNS_NXDOMAIN;
	ans->why = "NXDOMAIN";
	return;
    }
    if (r->rcode != 0) {
	ans->status = DNS_TEMPFAIL;
	ans->why = r->rcode < 6 ? rcodes[r->rcode] : "error RCODE";
	return;
    }
    if (!r->havedata) {
	ans->status = DNS_NODATA;
	ans->why = "no record of that type";
	return;
    }
    for (i = 0; r->data[i] != NULL; i++)
	 /* void */ ;
    ans->rr = xcalloc(i, sizeof(*ans->rr));
    for (ans->count = 0; ans->count < i; ans->count++) {
	struct dns_rr *rr = ans->rr + ans->count;

	if (rrtype == DNS_T_TXT) {
	    if (dns_txt_join(rr, (unsigned char *) r->data[ans->count],
			     r->len[ans->count]) < 0) {
		ans->count++;
		ans->status = DNS_TEMPFAIL;
		ans->why = "malformed TXT record";
		return;
	    }
	} else {
	    rr->len = r->len[ans->count];
	    rr->data = xmalloc(rr->len + 1);
	    memcpy(rr->data, r->data[ans->count], rr->len);
	    rr->data[rr->len] = 0;
	}
    }
    ans->status = DNS_OK;
    ans->why = "NOERROR";
}

/* dns_start - the worker thread, once */

static int dns_start(struct dns_resolver *res)
{
    if (res->started)
	return (0);
    if (pipe(res->stop_pipe) < 0)
	return (-1);
    if (pthread_create(&res->worker, NULL, dns_worker, res) != 0) {
	close(res->stop_pipe[0]);
	close(res->stop_pipe[1]);
	res->stop_pipe[0] = res->stop_pipe[1] = -1;
	return (-1);
    }
    res->started = 1;
    return (0);
}

static void dns_deadline(struct timespec *ts, int ms)
{
    clock_gettime(CLOCK_MONOTONIC, ts);
    ts->tv_sec += ms / 1000;
    ts->tv_nsec += (long) (ms % 1000) * 1000000;
    if (ts->tv_nsec >= 1000000000) {
	ts->tv_sec++;
	ts->tv_nsec -= 1000000000;
    }
}

/* dns_wait - wait for an answer until the deadline; caller holds the lock */

static void dns_wait(struct dns_resolver *res, struct dns_query *q, int id,
		             struct dns_answer *ans, int rrtype, int timeout_ms)
{
    struct timespec deadline;

    dns_deadline(&deadline, timeout_ms);
    while (!q->done)
	if (pthread_cond_timedwait(&res->cond, &res->lock, &deadline) == ETIMEDOUT)
	    break;
    if (!q->done) {
	pthread_mutex_unlock(&res->lock);
	int     cancelled = ub_cancel(res->ctx, id) == 0;

	pthread_mutex_lock(&res->lock);
	if (cancelled)
	    q->refs--;				/* the callback will never run */
    }
    if (!q->done) {
	ans->status = DNS_TEMPFAIL;
	ans->why = "timeout";
    } else if (q->err != 0 || q->result == NULL) {
	ans->status = DNS_TEMPFAIL;
	ans->why = q->err ? ub_strerror(q->err) : "no result";
    } else
	dns_answer_fill(ans, rrtype, q->result);
}

/* dns_lookup_ms - one lookup, bounded by timeout_ms (<= 0: the resolver's) */

int     dns_lookup_ms(struct dns_resolver *res, const char *name, int rrtype,
		              int timeout_ms, struct dns_answer **answer)
{
    struct dns_answer *ans = xcalloc(1, sizeof(*ans));
    struct dns_query *q;
    int     id;
    int     err;

    *answer = ans;
    if (!dns_name_ok(name)) {
	ans->status = DNS_BADNAME;
	ans->why = "name too long, with an empty label or a backslash";
	return (ans->status);
    }
    /* The callback finds the resolver right after the query. */
    q = xcalloc(1, sizeof(*q) + sizeof(res));
    *(struct dns_resolver **) (q + 1) = res;
    q->refs = 2;
    pthread_mutex_lock(&res->lock);
    if (dns_start(res) < 0) {
	pthread_mutex_unlock(&res->lock);
	free(q);
	ans->status = DNS_TEMPFAIL;
	ans->why = "cannot start the resolver thread";
	return (ans->status);
    }
    pthread_mutex_unlock(&res->lock);
    err = ub_resolve_async(res->ctx, name, rrtype, 1, q, dns_callback, &id);
    pthread_mutex_lock(&res->lock);
    if (err != 0) {
	free(q);
	ans->status = err == UB_SYNTAX ? DNS_BADNAME : DNS_TEMPFAIL;
	ans->why = ub_strerror(err);
    } else {
	dns_wait(res, q, id, ans, rrtype, timeout_ms > 0 ? timeout_ms : res->timeout_ms);
	dns_query_unref(q);
    }
    pthread_mutex_unlock(&res->lock);
    return (ans->status);
}

int     dns_lookup(struct dns_resolver *res, const char *name, int rrtype,
		           struct dns_answer **answer)
{
    return (dns_lookup_ms(res, name, rrtype, 0, answer));
}

int     dns_txt(struct dns_resolver *res, const char *name, struct dns_answer **answer)
{
    return (dns_lookup(res, name, DNS_T_TXT, answer));
}

void    dns_answer_free(struct dns_answer **answer)
{
    struct dns_answer *ans = *answer;
    int     i;

    if (ans == NULL)
	return;
    for (i = 0; i < ans->count; i++)
	free(ans->rr[i].data);
    free(ans->rr);
    free(ans->packet);
    free(ans);
    *answer = NULL;
}

const char *dns_status_str(int status)
{
    static const char *names[] = {"ok", "nxdomain", "nodata", "tempfail", "badname"};

    return (status >= 0 && status <= DNS_BADNAME ? names[status] : "unknown");
}

int     dns_resolver_timeout(const struct dns_resolver *res)
{
    return (res->timeout_ms);
}

/* dns_resolver_free - stop the worker; no lookup may be running */

void    dns_resolver_free(struct dns_resolver **resp)
{
    struct dns_resolver *res = *resp;

    if (res == NULL)
	return;
    if (res->started) {
	close(res->stop_pipe[1]);		/* EOF: POLLHUP wakes the worker */
	pthread_join(res->worker, NULL);
	close(res->stop_pipe[0]);
    }
    ub_ctx_delete(res->ctx);
    pthread_mutex_destroy(&res->lock);
    pthread_cond_destroy(&res->cond);
    free(res);
    *resp = NULL;
}
