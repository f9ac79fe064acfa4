/*
 * NAME
 *	metrics_http 3
 * SUMMARY
 *	the Prometheus endpoint
 * SYNOPSIS
 *	#include "metrics_http.h"
#include "skeleton.h"
 *
 *	const char *metrics_http_bind(listen)
 *
 *	const char *metrics_http_start(listen)
 *
 *	void	metrics_http_readiness(check)
 *	const char *(*check)(void);
 *
 *	void	metrics_http_serving(on)
 *
 *	void	metrics_http_stop()
 * DESCRIPTION
 *	Binds listen ("inet:127.0.0.1:9101", "inet6:[::1]:9101") and
 *	serves GET /metrics with libevent's evhttp from a thread of its
 *	own, so that a daemon's event loop, libmilter's threads or a
 *	libcurl loop need not know about it: scrapes read the lock-free
 *	counters of metrics(3).
 *
 *	The same endpoint answers the probes of an orchestrator (kubelet,
 *	podman healthchecks), which cannot send the PROXY header a mail
 *	port may require and should not show up in its counters: GET
 *	/healthz is 200 "alive" as long as the process serves HTTP and,
 *	once serving, every loop registered with liveness(3) turned in the
 *	last 10 s; else 503 "not alive: worker 1 has not run for 12 s"
 *	(an orchestrator then restarts the daemon); GET
 *	/readyz is 200 "ready" once the daemon said metrics_http_serving(1)
 *	(its listeners bound, its configuration and keys loaded, its loop
 *	running) and as long as check() returns NULL; else 503 with the
 *	reason: "starting", "stopping" (after metrics_http_serving(0), so
 *	that a terminating pod leaves its Service at once), or what check()
 *	returned (static text), e.g. "store unreachable and on_store_error
 *	= closed". check() runs in the endpoint's thread, so it may read
 *	only what is safe there (atomics, access(2)); without it, serving
 *	is ready. HEAD works as GET without the body (evhttp sends any
 *	body it is given, which a kept-alive client would read as the next
 *	answer); a request target may be in absolute form
 *	("http://host/healthz", RFC 9112 3.2.2); other paths are a 404,
 *	other methods a 501 (after which the connection is closed, CONNECT
 *	too, which evhttp would keep open with a 501 of no length). No
 *	probe touches a mail port, so none is counted as a connection (or
 *	a rejected PROXY header) there.
 *	Called before privileges are dropped (the port may be low).
 *	metrics_http_bind() binds alone, for a daemon that binds before it
 *	detaches (a port in use then fails where the operator sees it)
 *	and starts the thread after the fork; metrics_http_start() binds
 *	itself when metrics_http_bind() was not called.
 *	Out of descriptors, accept() pauses (skeleton_listener_guard()).
 *
 *	The endpoint holds at most METRICS_HTTP_MAX_CONNECTIONS (16)
 *	connections, idle ones included (a request head of at most 8 KB,
 *	10 s of silence at most, 30 s in all for a connection): while that
 *	many are open it accepts nothing more. A client that opens
 *	connections and sends nothing therefore costs the process at most
 *	16 descriptors, which the daemons' open-files reserve counts, never
 *	the descriptors of the mail ports. So that such a client cannot
 *	starve the probes either (it would hold the 16 and queue more ahead
 *	of them in the listen backlog: an orchestrator then restarts the
 *	daemon), while clients wait in the backlog the connections open
 *	longer than METRICS_HTTP_GRACE_MS (100 ms: a probe or a scrape has
 *	sent its request and had its answer by then) are cut, oldest
 *	first, so that the backlog moves at 16 connections per tenth of a
 *	second whatever they send. libevent 2.1's evhttp has
 *	no such limit (evhttp_set_max_connections() came in 2.2): each
 *	connection's bufferevent is made here, with a reference held, and
 *	a sweep every 100 ms while any is open lets go of those evhttp has
 *	reset or freed (their callbacks cleared); the descriptor is closed
 *	then, so that its number is not reused while the old bufferevent
 *	still watches it.
 *
 *	metrics_http_stop() ends the endpoint's thread and waits for it
 *	(a scrape in flight finishes first), so that a daemon may free
 *	what its gauge callbacks read (skeleton_stop() calls it).
 * DIAGNOSTICS
 *	NULL, or a message (static storage) naming the address and the
 *	system error.
 */

#include "build_config.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/listener.h>

#include "addr.h"
#include "daemon.h"
#include "liveness.h"
#include "metrics.h"
#include "metrics_http.h"
#include "skeleton.h"

typedef const char *(*metrics_http_check_fn) (void);

#define METRICS_HTTP_MAX_CONNECTIONS	16
#define METRICS_HTTP_SWEEP_MS		100
#define METRICS_HTTP_FULL_SWEEP_MS	10	/* while full, clients waiting */
#define METRICS_HTTP_GRACE_MS		100	/* never cut younger */
#define METRICS_HTTP_MAX_HEAD		8192
#define METRICS_HTTP_MAX_AGE		30	/* seconds, request or not */

/* the endpoint's open connections; touched by its thread only */
static struct {
    struct bufferevent *bev[METRICS_HTTP_MAX_CONNECTIONS];
    long long since[METRICS_HTTP_MAX_CONNECTIONS];	/* accepted, monotonic ms */
    int     cut[METRICS_HTTP_MAX_CONNECTIONS];	/* shut down */
    int     count;
    struct evconnlistener *listener;
    struct event *sweep;
}       metrics_http_conns;

/* the endpoint's thread, and an eventfd that tells it to stop */
static struct {
    pthread_t id;
    int     stop_fd;
    int     running;
}       metrics_http_thread;

static _Atomic(metrics_http_check_fn) metrics_http_check;
static atomic_int metrics_http_state;		/* 0 starting, 1 serving, 2 stopping */

void    metrics_http_serving(int on)
{
    atomic_store(&metrics_http_state, on ? 1 : 2);
}

void    metrics_http_readiness(const char *(*check) (void))
{
    atomic_store(&metrics_http_check, check);
}

/* metrics_http_path - PATH or PATH?QUERY, in origin or absolute form */

static int metrics_http_path(const char *uri, const char *path)
{
    size_t  len = strlen(path);

    if (strncasecmp(uri, "http://", 7) == 0)
	uri += 7 + strcspn(uri + 7, "/?#");
    else if (strncasecmp(uri, "https://", 8) == 0)
	uri += 8 + strcspn(uri + 8, "/?#");
    return (strncmp(uri, path, len) == 0 && (uri[len] == 0 || uri[len] == '?'));
}

static void metrics_http_text(struct evhttp_request *req, int code, const char *reason,
			              const char *type, const char *text, size_t len)
{
    struct evkeyvalq *headers = evhttp_request_get_output_headers(req);
    struct evbuffer *body = evbuffer_new();
    char    size[32];

    /* HEAD: the length GET has, no body (evhttp would send it) */
    snprintf(size, sizeof(size), "%zu", len);
    evhttp_add_header(headers, "Content-Length", size);
    if (evhttp_request_get_command(req) != EVHTTP_REQ_HEAD)
	evbuffer_add(body, text, len);
    evhttp_add_header(headers, "Content-Type", type);
    evhttp_add_header(headers, "Cache-Control", "no-store");
    evhttp_send_reply(req, code, reason, body);
    evbuffer_free(body);
}

/* metrics_http_verdict - 200 with "good", or 503 "bad: why" */

static void metrics_http_verdict(struct evhttp_request *req, const char *why,
				         const char *good, const char *bad)
{
    char    text[300];

    if (why == NULL) {
	metrics_http_text(req, HTTP_OK, "OK", "text/plain; charset=utf-8", good, strlen(good));
	return;
    }
    snprintf(text, sizeof(text), "%s: %s\n", bad, why);
    metrics_http_text(req, 503, "Service Unavailable", "text/plain; charset=utf-8",
		      text, strlen(text));
}

#define METRICS_HTTP_PATHS "only GET /metrics, /healthz, /readyz here\n"

static void metrics_http_not_found(struct evhttp_request *req)
{
    metrics_http_text(req, HTTP_NOTFOUND, "Not Found", "text/plain; charset=utf-8",
		      METRICS_HTTP_PATHS, sizeof(METRICS_HTTP_PATHS) - 1);
}

/* metrics_http_hang_up - after the answer: evhttp reads end of file, lets go */

static void metrics_http_hang_up(struct evhttp_request *req, void *context)
{
    struct evhttp_connection *evcon = evhttp_request_get_connection(req);
    evutil_socket_t fd;

    (void) context;
    if (evcon && (fd = bufferevent_getfd(evhttp_connection_get_bufferevent(evcon))) >= 0)
	(void) shutdown(fd, SHUT_RDWR);
}

/*
 * metrics_http_refuse - 501 and close: evhttp's own 501 to CONNECT (which
 * it must let through to here) has no length and keeps the connection.
 */
static void metrics_http_refuse(struct evhttp_request *req)
{
    evhttp_add_header(evhttp_request_get_output_headers(req), "Allow", "GET, HEAD");
    evhttp_add_header(evhttp_request_get_output_headers(req), "Connection", "close");
    evhttp_request_set_on_complete_cb(req, metrics_http_hang_up, NULL);
    metrics_http_text(req, HTTP_NOTIMPLEMENTED, "Not Implemented", "text/plain; charset=utf-8",
		      METRICS_HTTP_PATHS, sizeof(METRICS_HTTP_PATHS) - 1);
}

/* metrics_http_ready - GET /readyz: the daemon's check */

static void metrics_http_ready(struct evhttp_request *req)
{
    metrics_http_check_fn check = atomic_load(&metrics_http_check);
    int     state = atomic_load(&metrics_http_state);
    const char *why = state == 0 ? "starting" : state == 2 ? "stopping"
    : check ? check() : NULL;

    metrics_http_verdict(req, why, "ready\n", "not ready");
}

/* metrics_http_alive - GET /healthz: does every loop still turn? */

static void metrics_http_alive(struct evhttp_request *req)
{
    metrics_http_verdict(req, atomic_load(&metrics_http_state) == 1 ? liveness_check() : NULL,
			 "alive\n", "not alive");
}

static void metrics_http_handle(struct evhttp_request *req, void *context)
{
    const char *uri = evhttp_request_get_uri(req);
    size_t  len;
    char   *text;

    (void) context;
    if (evhttp_request_get_command(req) != EVHTTP_REQ_GET
	&& evhttp_request_get_command(req) != EVHTTP_REQ_HEAD) {
	metrics_http_refuse(req);
    } else if (metrics_http_path(uri, "/metrics")) {
	text = metrics_render(&len);
	metrics_http_text(req, HTTP_OK, "OK", "text/plain; version=0.0.4; charset=utf-8",
			  text, len);
	free(text);
    } else if (metrics_http_path(uri, "/healthz")) {
	metrics_http_alive(req);
    } else if (metrics_http_path(uri, "/readyz")) {
	metrics_http_ready(req);
    } else {
	metrics_http_not_found(req);
    }
}

/* metrics_http_released - evhttp reset or freed the connection */

static int metrics_http_released(struct bufferevent *bev)
{
    bufferevent_data_cb readcb, writecb;
    bufferevent_event_cb eventcb;
    void   *arg;

    bufferevent_getcb(bev, &readcb, &writecb, &eventcb, &arg);
    return (readcb == NULL && writecb == NULL && eventcb == NULL && arg == NULL);
}

/*
 * metrics_http_cut - end a connection that outlived METRICS_HTTP_MAX_AGE:
 * evhttp's timeout restarts with every byte, so a client sending one
 * byte every few seconds would otherwise hold its slot for hours. After
 * shutdown() evhttp reads end of file (or fails to write) and lets go.
 */
static void metrics_http_cut(int i, long long now, long long age)
{
    evutil_socket_t fd;

    if (metrics_http_conns.cut[i] || now - metrics_http_conns.since[i] < age)
	return;
    if ((fd = bufferevent_getfd(metrics_http_conns.bev[i])) >= 0)
	(void) shutdown(fd, SHUT_RDWR);
    metrics_http_conns.cut[i] = 1;
}

/* metrics_http_reap - drop released connections, cut old ones */

static void metrics_http_reap(long long now)
{
    int     i = 0, last;

    while (i < metrics_http_conns.count) {
	if (metrics_http_released(metrics_http_conns.bev[i])) {
	    bufferevent_decref(metrics_http_conns.bev[i]);
	    last = --metrics_http_conns.count;
	    metrics_http_conns.bev[i] = metrics_http_conns.bev[last];
	    metrics_http_conns.since[i] = metrics_http_conns.since[last];
	    metrics_http_conns.cut[i] = metrics_http_conns.cut[last];
	} else {
	    metrics_http_cut(i++, now, METRICS_HTTP_MAX_AGE * 1000LL);
	}
    }
}

/* metrics_http_waiting - do clients wait in the listen backlog? */

static int metrics_http_waiting(void)
{
    struct pollfd pfd;

    pfd.fd = evconnlistener_get_fd(metrics_http_conns.listener);
    pfd.events = POLLIN;
    return (pfd.fd >= 0 && poll(&pfd, 1, 0) > 0 && (pfd.revents & POLLIN));
}

/*
 * metrics_http_sweep - reap, accept again below the cap; at the cap with
 * clients waiting, cut every connection past its grace (the reap after
 * evhttp read their end of file frees the slots 10 ms later).
 */
static void metrics_http_sweep(evutil_socket_t fd, short what, void *context)
{
    struct timeval again = {0, METRICS_HTTP_SWEEP_MS * 1000};
    long long now = daemon_mono_ms();
    int     i;

    (void) fd;
    (void) what;
    (void) context;
    metrics_http_reap(now);
    if (metrics_http_conns.count < METRICS_HTTP_MAX_CONNECTIONS) {
	evconnlistener_enable(metrics_http_conns.listener);
    } else if (metrics_http_waiting()) {
	for (i = 0; i < metrics_http_conns.count; i++)
	    metrics_http_cut(i, now, METRICS_HTTP_GRACE_MS);
	again.tv_usec = METRICS_HTTP_FULL_SWEEP_MS * 1000;
    }
    if (metrics_http_conns.count > 0)
	evtimer_add(metrics_http_conns.sweep, &again);
}

/*
 * metrics_http_connection - evhttp's bufferevent for one accepted
 * connection, counted; at the cap the listener stops accepting (libevent
 * checks that after each accept, so none more is taken in this round).
 * Connections evhttp let go of since the last sweep are reaped first:
 * counted until the sweep, every 16th of a row of short connections
 * waited for it (100 ms), and such clients got 160 answers a second.
 */
static struct bufferevent *metrics_http_connection(struct event_base *base, void *context)
{
    struct timeval first = {0, METRICS_HTTP_SWEEP_MS * 1000};
    struct bufferevent *bev;

    (void) context;
    metrics_http_reap(daemon_mono_ms());

    /*
     * Closed on the last unref (the sweep's), not by evhttp: while the
     * reference is held the bufferevent still watches its descriptor,
     * which must not be reused by the next connection meanwhile. The
     * read watermark bounds what it may read after evhttp let go of it
     * (evhttp's own limits, 8 KB of head and body, fire well before).
     */
    if ((bev = bufferevent_socket_new(base, -1, BEV_OPT_CLOSE_ON_FREE)) == NULL)
	return (NULL);
    bufferevent_setwatermark(bev, EV_READ, 0, 4 * METRICS_HTTP_MAX_HEAD);
    if (metrics_http_conns.count < METRICS_HTTP_MAX_CONNECTIONS) {
	bufferevent_incref(bev);
	metrics_http_conns.since[metrics_http_conns.count] = daemon_mono_ms();
	metrics_http_conns.cut[metrics_http_conns.count] = 0;
	metrics_http_conns.bev[metrics_http_conns.count++] = bev;
    }
    if (metrics_http_conns.count >= METRICS_HTTP_MAX_CONNECTIONS)
	evconnlistener_disable(metrics_http_conns.listener);
    if (!evtimer_pending(metrics_http_conns.sweep, NULL))
	evtimer_add(metrics_http_conns.sweep, &first);
    return (bev);
}

static void metrics_http_break(evutil_socket_t fd, short what, void *context)
{
    (void) fd;
    (void) what;
    event_base_loopbreak(context);
}

static void *metrics_http_run(void *context)
{
    event_base_dispatch(context);
    return (NULL);
}

void    metrics_http_stop(void)
{
    uint64_t one = 1;

    if (!metrics_http_thread.running)
	return;
    if (write(metrics_http_thread.stop_fd, &one, sizeof(one)) == sizeof(one))
	pthread_join(metrics_http_thread.id, NULL);
    metrics_http_thread.running = 0;
}

static char metrics_http_err[300];
static int metrics_http_bound_fd = -1;

const char *metrics_http_bind(const char *listen)
{
    char   *err = metrics_http_err;
    struct addr addr;
    const char *msg;

    if ((msg = addr_parse(listen, &addr)) != NULL) {
	snprintf(err, sizeof(metrics_http_err), "metrics_listen: %s", msg);
	return (err);
    }
    if (addr.family == AF_UNIX) {
	snprintf(err, sizeof(metrics_http_err), "metrics_listen: %s: Prometheus scrapes TCP",
		 listen);
	return (err);
    }
    if ((metrics_http_bound_fd = addr_listen(&addr, 64, 1)) < 0) {
	snprintf(err, sizeof(metrics_http_err), "metrics_listen %s: %s", listen, strerror(errno));
	return (err);
    }
    return (NULL);
}

const char *metrics_http_start(const char *listen)
{
    char   *err = metrics_http_err;
    struct event_base *base;
    struct evhttp *http;
    struct evhttp_bound_socket *bound = NULL;
    const char *msg;
    struct event *stop;
    int     fd, rc;

    if (metrics_http_bound_fd < 0 && (msg = metrics_http_bind(listen)) != NULL)
	return (msg);
    fd = metrics_http_bound_fd;
    metrics_http_bound_fd = -1;
    if ((base = event_base_new()) == NULL || (http = evhttp_new(base)) == NULL
	|| (bound = evhttp_accept_socket_with_handle(http, fd)) == NULL
	|| (metrics_http_conns.sweep = evtimer_new(base, metrics_http_sweep, NULL)) == NULL
	|| (metrics_http_thread.stop_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)) < 0
	|| (stop = event_new(base, metrics_http_thread.stop_fd, EV_READ, metrics_http_break,
			     base)) == NULL || event_add(stop, NULL) < 0) {
	close(fd);
	snprintf(err, sizeof(metrics_http_err), "metrics_listen %s: cannot set up evhttp", listen);
	return (err);
    }
    /* out of descriptors, evhttp would retry accept() in a busy loop */
    metrics_http_conns.listener = evhttp_bound_socket_get_listener(bound);
    skeleton_listener_guard(metrics_http_conns.listener);
    evhttp_set_bevcb(http, metrics_http_connection, NULL);
    evhttp_set_max_headers_size(http, METRICS_HTTP_MAX_HEAD);
    evhttp_set_max_body_size(http, METRICS_HTTP_MAX_HEAD);
    /* CONNECT through to metrics_http_refuse(), which closes after its 501 */
    evhttp_set_allowed_methods(http, EVHTTP_REQ_GET | EVHTTP_REQ_HEAD | EVHTTP_REQ_CONNECT);
    evhttp_set_gencb(http, metrics_http_handle, NULL);
    evhttp_set_timeout(http, 10);
    if ((rc = pthread_create(&metrics_http_thread.id, NULL, metrics_http_run, base)) != 0) {
	snprintf(err, sizeof(metrics_http_err), "metrics_listen %s: cannot start its thread: %s",
		 listen, strerror(rc));
	return (err);
    }
    metrics_http_thread.running = 1;
    return (NULL);
}
