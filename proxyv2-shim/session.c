/*
 * NAME
 *	session 3
 * SUMMARY
 *	one proxied connection: header, backend, hand-off, relay
 * SYNOPSIS
 *	#include "shim.h"
 *
 *	void	session_accept(evl, fd, sa, salen, listener)
 *	void	session_log_reject(srv, fmt, ...)
 *	void	session_flush_rejects(srv)
 * DESCRIPTION
 *	A connection from outside the listener's trusted networks is
 *	closed at once. Otherwise the PROXY header must arrive within
 *	header_timeout; the reader never consumes a byte past it, so
 *	whatever the client pipelined reaches the backend intact.
 *
 *	Then the backend is connected (non-blocking, connect_timeout):
 * .IP xclient
 *	read its 220, EHLO, "XCLIENT ADDR= PORT=", and hand the 220 that
 *	follows to the client as its greeting. If the backend is down
 *	or refuses, the client gets "421 4.3.2" instead of a silent
 *	close, and will retry.
 * .IP transparent
 *	the backend socket is bound to the client's own address
 *	(IP_TRANSPARENT, optional SO_MARK for policy routing).
 * .IP "proxy-v1, proxy-v2"
 *	a clean header is written first: addresses, and for v2 the
 *	standard TLVs with a fresh CRC32C (left out where it would take
 *	the header past 536 bytes); vendor TLVs are dropped.
 * .PP
 *	A header without a client address (v2 LOCAL, as a balancer's
 *	health checks send; v1 UNKNOWN; v2 UNSPEC or UNIX, as haproxy
 *	sends for a unix@ frontend) never gets the shim's own identity,
 *	which is all a backend would otherwise see. In xclient mode it
 *	gets "XCLIENT ADDR=[UNAVAILABLE] NAME=[UNAVAILABLE] ...", so
 *	Postfix treats it as an unknown client (not in mynetworks, not
 *	offered XCLIENT) and a health check still gets a 220; with
 *	unknown_clients = refuse it is closed. The other modes have no
 *	way to say "unknown" (a backend falls back to the connection's
 *	address, ours) and always close it. An IPv4-mapped client
 *	(::ffff:a.b.c.d) is passed on as the IPv4 address it is in
 *	every mode (an IPv4-only Postfix refuses an IPv6 PROXY header
 *	with 421; one that has IPv6 unmaps it itself); transparent mode
 *	closes a client
 *	whose family is not the backend's instead of connecting from its
 *	own address. A header whose client is no client the balancer can
 *	have (0.0.0.0 or ::, or a loopback address from a balancer that is
 *	not on this host: proxy_header_vet()) is such a header too: its
 *	address would be ours (127.0.0.1 is in Postfix's mynetworks, and
 *	a transparent connection bound to 0.0.0.0 comes from the shim).
 * DIAGNOSTICS
 *	One line per connection when it ends: client, balancer,
 *	listener, mode, TLVs (authority, ALPN, SSL), bytes each way,
 *	duration, and the reason if it ended badly. Rejected
 *	connections are logged at most log_rejects_per_second, with a
 *	count of those not logged.
 */

#include "build_config.h"

#include <errno.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "lookup.h"
#include "metrics.h"
#include "msg.h"
#include "relay.h"
#include "shim.h"
#include "skeleton.h"
#include "xalloc.h"
#include "xclient.h"

/*
 * Sessions open in the whole process. max_connections is one limit for
 * all workers: a share per worker admitted workers * ceil(N / workers)
 * (8 for max_connections = 5 with 4 workers), and refused clients below
 * N whenever SO_REUSEPORT sent more of them to one worker.
 */
static atomic_int session_total;

/* session_open_count - sessions open in all workers (session_files(3)) */

int     session_open_count(void)
{
    return (atomic_load(&session_total));
}

#define SESSION_NO_CLIENT "no client address in the PROXY header"
#define SESSION_CLIENT_GONE "client went away during the XCLIENT hand-off"
#define SESSION_TEMPFAIL "421 4.3.2 Service temporarily unavailable, try again later\r\n"

enum session_state {
    SESSION_HEADER,
    SESSION_CONNECT,
    SESSION_GREETING,			/* xclient: backend's first 220 */
    SESSION_EHLO,			/* xclient: EHLO reply */
    SESSION_NAME,			/* xclient: waiting for the DNS lookup */
    SESSION_XCLIENT,			/* xclient: reply to XCLIENT */
    SESSION_RELAY,
};

struct session {
    struct server *srv;
    struct shim_listener *lst;
    int     client;
    int     backend;
    union addr_sockaddr balancer;
    struct proxy_reader reader;
    struct proxy_header hdr;
    int     parsed;			/* hdr holds a valid header */
    enum session_state state;
    struct event *io;
    struct event *timer;
    struct xclient_reply reply;
    struct relay *relay;
    struct lookup *lookup;		/* pending client name lookup */
    char    name[256];			/* XCLIENT NAME, once known */
    char    reverse_name[256];
    struct timespec t0;
    char    why[320];			/* a reason quoting the backend */
};

static void session_step(evutil_socket_t fd, short what, void *context);
static void session_named(void *context, const char *name, const char *reverse_name);

static long session_ms(const struct timespec *t0)
{
    struct timespec now;

    clock_gettime(CLOCK_MONOTONIC, &now);
    return ((now.tv_sec - t0->tv_sec) * 1000 + (now.tv_nsec - t0->tv_nsec) / 1000000);
}

/* session_rejects_take - called with the lock held */

static long long session_rejects_take(struct shim_rejects *r)
{
    long long n = r->suppressed;

    r->suppressed = 0;
    return (n);
}

void    session_flush_rejects(struct server *srv)
{
    struct shim_rejects *r = srv->rejects;
    long long n;

    if (r == NULL)
	return;
    pthread_mutex_lock(&r->lock);
    n = (long long) time(NULL) != r->window ? session_rejects_take(r) : 0;
    pthread_mutex_unlock(&r->lock);
    if (n)
	msg_warn("%lld more rejected connections not logged", n);
}

void    session_log_reject(struct server *srv, const char *fmt,...)
{
    struct shim_rejects *r = srv->rejects;
    long long now = (long long) time(NULL), missed = 0;
    char    text[3584];			/* a whole session_describe() and its reason */
    int     quiet = 0;
    va_list ap;

    if (r) {
	pthread_mutex_lock(&r->lock);
	if (now != r->window) {
	    missed = session_rejects_take(r);
	    r->window = now;
	    r->logged = 0;
	}
	if (r->logged >= srv->reject_log_rate) {
	    r->suppressed++;
	    quiet = 1;
	} else {
	    r->logged++;
	}
	pthread_mutex_unlock(&r->lock);
    }
    if (missed)
	msg_warn("%lld more rejected connections not logged", missed);
    if (quiet)
	return;
    va_start(ap, fmt);
    vsnprintf(text, sizeof(text), fmt, ap);
    va_end(ap);
    msg_warn("%s", text);
}

/*
 * session_safe - a TLV's text for a log line: the balancer passes on
 * what the client chose (SNI, ALPN, a certificate's CN), so a newline
 * would forge a log line and a space a field. Bytes other than
 * printable ASCII, space and backslash become \xHH.
 */
static const char *session_safe(const char *text, char *buf, size_t size)
{
    size_t  n = 0;

    for (const unsigned char *p = (const unsigned char *) text; *p && n + 5 < size; p++) {
	if (*p > 0x20 && *p < 0x7f && *p != '\\')
	    buf[n++] = (char) *p;
	else
	    n += (size_t) snprintf(buf + n, size - n, "\\x%02X", *p);
    }
    buf[n] = 0;
    return (buf);
}

/* session_describe - "client=... via=..." for log lines */

static void session_describe(const struct session *s, char *buf, size_t size)
{
    char    client[ADDR_TEXT_MAX] = "-", via[ADDR_TEXT_MAX], listen[ADDR_TEXT_MAX];
    char    t1[4 * 256], t2[4 * 256], t3[4 * 256];
    const struct proxy_header *h = &s->hdr;
    size_t  n;

    addr_format(&s->balancer.sa, via, sizeof(via));
    addr_format(&s->lst->listen.u.sa, listen, sizeof(listen));
    if (s->parsed && (proxy_header_has_client(h) || h->not_client != NULL)) {
	addr_format(&h->src.sa, client, sizeof(client) - 16);
	if (h->not_client != NULL)		/* named, not passed on */
	    strcat(client, "(not-a-client)");
    } else if (s->parsed)
	snprintf(client, sizeof(client), "%s", h->local ? "LOCAL"
		 : h->family == AF_UNIX ? "UNIX" : "UNKNOWN");
    n = (size_t) snprintf(buf, size, "client=%s via=%s listener=%s mode=%s", client, via,
			  listen, listener_mode_name(s->lst->mode));
    if (h->authority[0] && n < size)
	n += (size_t) snprintf(buf + n, size - n, " authority=%s",
			       session_safe(h->authority, t1, sizeof(t1)));
    if (h->alpn[0] && n < size)
	n += (size_t) snprintf(buf + n, size - n, " alpn=%s",
			       session_safe(h->alpn, t1, sizeof(t1)));
    if (h->ssl.present && n < size)
	snprintf(buf + n, size - n, " ssl=%s/%s%s%s",
		 h->ssl.version[0] ? session_safe(h->ssl.version, t1, sizeof(t1)) : "-",
		 h->ssl.cipher[0] ? session_safe(h->ssl.cipher, t2, sizeof(t2)) : "-",
		 h->ssl.cn[0] ? " cn=" : "", session_safe(h->ssl.cn, t3, sizeof(t3)));
}

/* Prometheus series, made before the workers start (session_metrics_init) */
static struct {
    struct metrics_series *relayed, *untrusted, *full, *bad_header, *header_timeout, *unknown;
    struct metrics_series *backend_failed, *client_gone, *bytes_up, *bytes_down, *handoff;
} session_metrics;

void    session_metrics_init(void)
{
    const char *conns = "Client connections by outcome.";
    const char *bytes = "Bytes relayed, counted when a connection ends.";

#define C(field, result) session_metrics.field = metrics_counter( \
	"mxkit_proxy_connections_total", conns, "result=\"" result "\"")
    C(relayed, "relayed");
    C(untrusted, "untrusted");
    C(full, "max_connections");
    C(bad_header, "bad_header");
    C(header_timeout, "header_timeout");
    C(unknown, "no_client_address");
    C(backend_failed, "backend_failed");
    C(client_gone, "client_gone");
#undef C
    session_metrics.bytes_up = metrics_counter("mxkit_proxy_bytes_total", bytes,
					       "direction=\"client_to_backend\"");
    session_metrics.bytes_down = metrics_counter("mxkit_proxy_bytes_total", bytes,
					     "direction=\"backend_to_client\"");
    session_metrics.handoff = metrics_latency_histogram("mxkit_proxy_handoff_seconds",
				"From accept to relaying: PROXY header, backend connect, XCLIENT.", NULL);
}

static void session_count(const struct session *s, const char *why,
			          unsigned long long up, unsigned long long down)
{
    if (session_metrics.relayed == NULL)
	return;					/* unit tests */
    if (s->state == SESSION_RELAY || why == NULL)
	metrics_inc(session_metrics.relayed);
    else if (s->state == SESSION_HEADER && strncmp(why, SESSION_NO_CLIENT,
						      sizeof(SESSION_NO_CLIENT) - 1) == 0)
	metrics_inc(session_metrics.unknown);
    else if (s->state == SESSION_HEADER)
	metrics_inc(strncmp(why, "timeout", 7) == 0 ? session_metrics.header_timeout
		    : session_metrics.bad_header);
    else if (strncmp(why, SESSION_CLIENT_GONE, sizeof(SESSION_CLIENT_GONE) - 1) == 0)
	metrics_inc(session_metrics.client_gone);	/* not the backend's doing */
    else
	metrics_inc(session_metrics.backend_failed);
    metrics_add(session_metrics.bytes_up, up);
    metrics_add(session_metrics.bytes_down, down);
}

static void session_free(struct session *s, const char *why)
{
    char    desc[3072];
    unsigned long long up = 0, down = 0;

    session_describe(s, desc, sizeof(desc));
    if (s->relay)
	relay_bytes(s->relay, &up, &down);
    session_count(s, why, up, down);
    if (s->state == SESSION_RELAY || why == NULL)
	msg_info("%s up=%llu down=%llu duration=%ldms%s%s", desc, up, down, session_ms(&s->t0),
		 why ? " end=" : "", why ? why : "");
    else
	session_log_reject(s->srv, "%s: %s", desc, why);
    relay_free(&s->relay);
    lookup_cancel(&s->lookup);
    if (s->io)
	event_free(s->io);
    if (s->timer)
	event_free(s->timer);
    proxy_reader_free(&s->reader);
    close(s->client);
    if (s->backend >= 0)
	close(s->backend);
    s->srv->sessions--;
    atomic_fetch_sub(&session_total, 1);
    free(s);
}

/* session_fail - a backend problem: xclient clients get a 421 */

static void session_fail(struct session *s, const char *why)
{
    if (s->lst->mode == SHIM_XCLIENT && s->state >= SESSION_CONNECT)
	(void) send(s->client, SESSION_TEMPFAIL, sizeof(SESSION_TEMPFAIL) - 1,
		    MSG_DONTWAIT | MSG_NOSIGNAL);
    session_free(s, why);
}

/* session_out_of_files - a session's socket or pipes failed: EMFILE? */

static void session_out_of_files(struct session *s, int err)
{
    if (skeleton_accept_exhausted(err))
	session_files_hold(s->srv);
}

static void session_relay_done(void *context, const char *why)
{
    session_free(context, why);
}

static void session_start_relay(struct session *s)
{
    event_free(s->io);
    s->io = NULL;
    event_del(s->timer);
    s->state = SESSION_RELAY;
    if (session_metrics.handoff)
	metrics_observe(session_metrics.handoff, session_ms(&s->t0) / 1000.0);
    s->relay = relay_start(s->srv->base, s->client, s->backend, s->srv->idle_timeout_ms,
			   session_relay_done, s);
    if (s->relay == NULL) {
	session_out_of_files(s, errno);
	session_free(s, "cannot create relay pipes");
    }
}

/* session_watch - wait for fd with the given events, under a timeout */

static void session_watch(struct session *s, int fd, short events, int timeout_ms)
{
    struct timeval tv = {timeout_ms / 1000, (timeout_ms % 1000) * 1000};

    if (s->io)
	event_free(s->io);
    s->io = event_new(s->srv->base, fd, events | EV_PERSIST, session_step, s);
    event_add(s->io, NULL);
    event_add(s->timer, &tv);
}

static int session_send(struct session *s, int fd, const char *text)
{
    size_t  len = strlen(text);

    /* Small writes on a fresh socket: they fit in the send buffer. */
    ssize_t n = send(fd, text, len, MSG_DONTWAIT | MSG_NOSIGNAL);

    if (n >= 0 && (size_t) n != len)
	errno = EAGAIN;				/* cut short: said as such */
    return (n == (ssize_t) len ? 0 : -1);
}

/* session_transparent - bind the backend socket to the client's address */

static const char *session_transparent(struct session *s)
{
    int     one = 1, v6 = s->hdr.family == AF_INET6;
    socklen_t len = v6 ? sizeof(struct sockaddr_in6) : sizeof(struct sockaddr_in);
    union addr_sockaddr any;

    if (v6 ? setsockopt(s->backend, SOL_IPV6, IPV6_TRANSPARENT, &one, sizeof(one))
	: setsockopt(s->backend, SOL_IP, IP_TRANSPARENT, &one, sizeof(one)))
	return ("IP_TRANSPARENT failed (needs CAP_NET_ADMIN)");
    if (s->lst->mark
	&& setsockopt(s->backend, SOL_SOCKET, SO_MARK, &s->lst->mark, sizeof(s->lst->mark)))
	return ("SO_MARK failed (needs CAP_NET_ADMIN)");
    if (bind(s->backend, &s->hdr.src.sa, len) == 0)
	return (NULL);
    if (errno != EADDRINUSE)
	return ("cannot bind to the client's address");
    /*
     * The client's port is taken (it reconnected quickly): any port, on
     * a copy: s->hdr.src stays what the log line names (it said
     * client=198.51.100.7:0).
     */
    any = s->hdr.src;
    if (v6)
	any.in6.sin6_port = 0;
    else
	any.in.sin_port = 0;
    return (bind(s->backend, &any.sa, len) ? "cannot bind to the client's address" : NULL);
}

static void session_connect(struct session *s)
{
    const struct addr *b = &s->lst->backend;
    const char *err;
    int     spoof = s->lst->mode == SHIM_TRANSPARENT;	/* session_admit() checked */

    proxy_reader_free(&s->reader);
    s->state = SESSION_CONNECT;
    s->backend = socket(b->family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (s->backend < 0) {
	session_out_of_files(s, errno);
	session_fail(s, "cannot create a backend socket");
	return;
    }
    if (spoof && (err = session_transparent(s)) != NULL) {
	session_fail(s, err);
	return;
    }
    if (connect(s->backend, &b->u.sa, b->salen) < 0 && errno != EINPROGRESS) {
	session_fail(s, "backend connect failed");
	return;
    }
    session_watch(s, s->backend, EV_WRITE, s->srv->connect_timeout_ms);
}

/*
 * session_reemit - write a clean PROXY header to the backend; its CRC32C
 * TLV only while the header stays within the 536 bytes Postfix's reader
 * takes (the spec's suggested buffer): 7 more made 530-536-byte headers
 * that max_header_size let in 421s at postscreen (helper-118)
 */
#define SESSION_REEMIT_CRC_MAX	536


static const char *session_reemit(struct session *s)
{
    /*
     * The most a clean header can hold, whatever max_header_size let in:
     * 16 + 216 (UNIX) + ALPN, AUTHORITY, NETNS 3 + 255 each, UNIQUE_ID
     * 3 + 128, SSL 3 + 5 + 5 sub-TLVs (3 + 63, 255, 127, 63, 63), CRC32C
     * 3 + 4: 1,738 bytes. 1,024 refused valid headers' clients.
     */
    unsigned char buf[2048];
    size_t  n;

    if (s->lst->mode == SHIM_PROXY_V1)
	n = proxy_build_v1(&s->hdr, (char *) buf, sizeof(buf));
    else if ((n = proxy_build_v2(&s->hdr, PROXY_BUILD_CRC32C, buf, sizeof(buf)))
	     > SESSION_REEMIT_CRC_MAX)		/* the CRC32C TLV is optional */
	n = proxy_build_v2(&s->hdr, 0, buf, sizeof(buf));
    if (n == 0)
	return ("cannot build the PROXY header for the backend");
    if (send(s->backend, buf, n, MSG_DONTWAIT | MSG_NOSIGNAL) != (ssize_t) n)
	return ("cannot write the PROXY header to the backend");
    return (NULL);
}

/*
 * session_spoofed - transparent mode: did the connection come from the
 * client's address? The kernel takes a bind to an address no TCP peer
 * can have (a subnet's broadcast, which no header check can know) and
 * then connects from the address its route gives: the backend saw the
 * shim's own (127.0.0.1 to a backend on loopback), and gave the client
 * its trust. Closed before anything is relayed.
 */
static const char *session_spoofed(struct session *s)
{
    union addr_sockaddr local;
    socklen_t len = sizeof(local);
    int     same;

    if (getsockname(s->backend, &local.sa, &len) < 0)
	return ("cannot read the backend connection's own address");
    if (local.sa.sa_family == AF_INET6)
	same = s->hdr.src.sa.sa_family == AF_INET6
	    && memcmp(&local.in6.sin6_addr, &s->hdr.src.in6.sin6_addr, 16) == 0;
    else
	same = s->hdr.src.sa.sa_family == AF_INET
	    && local.in.sin_addr.s_addr == s->hdr.src.in.sin_addr.s_addr;
    return (same ? NULL : "the backend connection does not come from the client's address "
	    "(one no TCP client can have, such as a broadcast address): closed before a "
	    "byte was relayed, so that no client speaks as this host");
}

static void session_connected(struct session *s)
{
    int     error = 0;
    socklen_t len = sizeof(error);
    const char *err;

    if (getsockopt(s->backend, SOL_SOCKET, SO_ERROR, &error, &len) < 0 || error) {
	session_fail(s, error == ECONNREFUSED ? "backend refused the connection"
		     : "backend connect failed");
	return;
    }
    if (s->lst->mode == SHIM_TRANSPARENT && (err = session_spoofed(s)) != NULL) {
	session_fail(s, err);
	return;
    }
    if (s->lst->mode == SHIM_PROXY_V1 || s->lst->mode == SHIM_PROXY_V2) {
	if ((err = session_reemit(s)) != NULL)
	    session_fail(s, err);
	else
	    session_start_relay(s);
    } else if (s->lst->mode == SHIM_XCLIENT) {
	s->state = SESSION_GREETING;
	s->reply.len = 0;
	if (s->srv->dns && proxy_header_has_client(&s->hdr))	/* in parallel */
	    s->lookup = lookup_start(s->srv->dns, s->srv->base, s->srv->dns_timeout_ms,
				     &s->hdr.src, session_named, s);
	else
	    session_named(s, XCLIENT_UNAVAILABLE, XCLIENT_UNAVAILABLE);
	if (s->srv->dns && proxy_header_has_client(&s->hdr) && s->lookup == NULL)
	    session_named(s, "[TEMPUNAVAIL]", "[TEMPUNAVAIL]");
	session_watch(s, s->backend, EV_READ, s->srv->connect_timeout_ms);
    } else {
	session_start_relay(s);
    }
}

/* session_xclient - send XCLIENT with the address (and name) */

static void session_xclient(struct session *s)
{
    char    cmd[2048];
    const char *err;

    if ((err = xclient_command(&s->hdr, s->name[0] ? s->name : NULL,
			       s->reverse_name[0] ? s->reverse_name : NULL,
			       cmd, sizeof(cmd))) != NULL) {
	session_fail(s, err);
	return;
    }
    s->state = SESSION_XCLIENT;
    s->reply.len = 0;
    if (session_send(s, s->backend, cmd) < 0)
	session_fail(s, "cannot write to the backend");
}

static void session_named(void *context, const char *name, const char *reverse_name)
{
    struct session *s = context;

    s->lookup = NULL;
    snprintf(s->name, sizeof(s->name), "%s", name);
    snprintf(s->reverse_name, sizeof(s->reverse_name), "%s", reverse_name);
    if (s->state == SESSION_NAME) {		/* the XCLIENT answer: connect_timeout */
	struct timeval tv = {s->srv->connect_timeout_ms / 1000,
	(s->srv->connect_timeout_ms % 1000) * 1000};

	event_add(s->timer, &tv);
	session_xclient(s);
    }
}

/* session_refused - the reason, with the backend's first reply line */

static const char *session_refused(struct session *s, const char *what)
{
    int     len = (int) strcspn(s->reply.text, "\r\n");

    snprintf(s->why, sizeof(s->why), "%s: %.*s", what, len > 200 ? 200 : len, s->reply.text);
    return (s->why);
}

/* session_smtp - one step of the XCLIENT hand-off on a complete reply */

static void session_smtp(struct session *s, int code)
{
    char    cmd[sizeof("EHLO \r\n") + 256];	/* a host name: 255 bytes at most */

    switch (s->state) {
    case SESSION_GREETING:
	if (code != 220) {
	    session_fail(s, session_refused(s, "backend greeting is not 220"));
	    return;
	}
	snprintf(cmd, sizeof(cmd), "EHLO %s\r\n", s->srv->xclient_helo);
	s->state = SESSION_EHLO;
	break;
    case SESSION_EHLO:
	if (code != 250 || !xclient_offered(&s->reply)) {
	    session_fail(s, session_refused(s, "backend does not offer XCLIENT to us "
					    "(is the shim in smtpd_authorized_xclient_hosts?)"));
	    return;
	}
	if (s->lookup) {			/* XCLIENT once the name is known */
	    struct timeval tv = {s->srv->dns_timeout_ms / 1000 + 1,
	    (s->srv->dns_timeout_ms % 1000) * 1000};

	    /* the lookup answers within dns_timeout (lookup(3)), however
	       long that is against connect_timeout: a hung DNS server is
	       [TEMPUNAVAIL], not a 421 */
	    s->state = SESSION_NAME;
	    event_add(s->timer, &tv);
	    return;
	}
	session_xclient(s);
	return;
    default:					/* SESSION_XCLIENT */
	if (code != 220) {
	    session_fail(s, session_refused(s, "backend refused XCLIENT"));
	    return;
	}
	s->reply.text[s->reply.len] = 0;
	if (session_send(s, s->client, s->reply.text) < 0) {
	    /* a balancer's port probe (connect, reset) lands here: the
	       backend did its part, so it is not counted against it */
	    snprintf(s->why, sizeof(s->why), "%s (%s)", SESSION_CLIENT_GONE,
		     strerror(errno));
	    session_free(s, s->why);
	    return;
	}
	session_start_relay(s);
	return;
    }
    s->reply.len = 0;
    if (session_send(s, s->backend, cmd) < 0)
	session_fail(s, "cannot write to the backend");
}

static void session_backend_reply(struct session *s)
{
    ssize_t n = recv(s->backend, s->reply.text + s->reply.len,
		     XCLIENT_REPLY_MAX - s->reply.len, MSG_DONTWAIT);
    const char *err;
    int     code;

    if (n < 0 && (errno == EAGAIN || errno == EINTR))
	return;
    if (n <= 0) {
	session_fail(s, "backend closed the connection during the XCLIENT hand-off");
	return;
    }
    s->reply.len += (size_t) n;
    if ((err = xclient_reply_scan(&s->reply, &code)) == NULL)
	session_smtp(s, code);
    else if (strcmp(err, "incomplete") != 0)
	session_fail(s, err);
}

/*
 * session_admit - can this listener pass the header's client on? Every
 * path that would connect without a client address would hand the
 * client the shim's own identity (see DESCRIPTION).
 */
static const char *session_admit(struct session *s)
{
    static _Thread_local char why[300];
    struct proxy_header *h = &s->hdr;
    enum shim_mode mode = s->lst->mode;

    proxy_header_unmap(h);			/* every mode: Postfix's view */
    (void) proxy_header_vet(h, &s->balancer);
    if (proxy_header_has_client(h))
	return (mode == SHIM_TRANSPARENT && h->family != s->lst->backend.family
		? "client address family differs from the backend's: transparent mode "
		"cannot connect from it" : NULL);
    if (mode == SHIM_XCLIENT && s->srv->unknown_clients == SHIM_UNKNOWN_UNAVAILABLE)
	return (NULL);				/* XCLIENT ADDR=[UNAVAILABLE] */
    snprintf(why, sizeof(why), "%s (%s%s%s)", SESSION_NO_CLIENT,
	     h->not_client ? h->not_client : "", h->not_client ? "; " : "",
	     mode == SHIM_XCLIENT ? "unknown_clients = refuse"
	     : "this mode could only pass on the shim's own");
    return (why);
}

static void session_header(struct session *s)
{
    const char *err = proxy_reader_step(&s->reader, s->client, &s->hdr);

    if (err == proxy_header_incomplete)
	return;
    if (err == NULL) {
	s->parsed = 1;
	err = session_admit(s);
    }
    if (err != NULL) {
	session_free(s, err);
	return;
    }
    session_connect(s);
}

static void session_step(evutil_socket_t fd, short what, void *context)
{
    struct session *s = context;

    if (what & EV_TIMEOUT) {
	if (s->state == SESSION_HEADER)
	    session_free(s, "timeout waiting for the PROXY header");
	else
	    session_fail(s, s->state == SESSION_CONNECT ? "backend connect timed out"
			 : "backend did not answer in time");
	return;
    }
    switch (s->state) {
    case SESSION_HEADER:
	session_header(s);
	break;
    case SESSION_CONNECT:
	session_connected(s);
	break;
    default:
	session_backend_reply(s);
	break;
    }
}

void    session_accept(struct evconnlistener *evl, evutil_socket_t fd, struct sockaddr *sa,
		               int salen, void *context)
{
    struct shim_listener *lst = context;
    struct server *srv = lst->srv;
    char    peer[ADDR_TEXT_MAX], listen[ADDR_TEXT_MAX];
    struct session *s;
    int     timeout, trusted;

    if (!(trusted = cidr_list_match_addr(lst->trusted, sa))
	|| atomic_fetch_add(&session_total, 1) >= srv->max_connections) {
	if (trusted)				/* take back the place not used */
	    atomic_fetch_sub(&session_total, 1);
	if (session_metrics.relayed)
	    metrics_inc(trusted ? session_metrics.full : session_metrics.untrusted);
	session_log_reject(srv, "listener=%s: connection from %s refused: %s",
			   addr_format(&lst->listen.u.sa, listen, sizeof(listen)),
			   addr_format(sa, peer, sizeof(peer)),
			   trusted ? "max_connections reached" : "not in trusted");
	close(fd);
	return;
    }
    if (!session_files_room(0)) {		/* another worker took the last */
	atomic_fetch_sub(&session_total, 1);
	session_files_park(lst, fd, sa, salen);	/* it waits, as in the backlog */
	return;
    }
    s = xcalloc(1, sizeof(*s));
    s->srv = srv;
    s->lst = lst;
    s->client = fd;
    s->backend = -1;
    memcpy(&s->balancer, sa, (size_t) salen < sizeof(s->balancer) ? (size_t) salen
	   : sizeof(s->balancer));
    clock_gettime(CLOCK_MONOTONIC, &s->t0);
    srv->sessions++;
    proxy_reader_init(&s->reader, srv->v2_max);
    s->timer = evtimer_new(srv->base, session_step, s);
    timeout = lst->header_timeout_ms ? lst->header_timeout_ms : srv->header_timeout_ms;
    session_watch(s, fd, EV_READ, timeout);
    if (!session_files_room(1))		/* none for the next: hold it back */
	session_files_hold(srv);
}
