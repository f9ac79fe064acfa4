/*
 * NAME
 *	conn 3
 * SUMMARY
 *	policy client connections on libevent
 * SYNOPSIS
 *	#include "conn.h"
 *
 *	void	conn_accept(listener, fd, sa, salen, server)
 *	void	conn_reload(server, old_idle_ms)
 *
 *	void	conn_drain(server)
 *
 *	void	conn_drain_watch(server, drain_ms)
 * DESCRIPTION
 *	Postfix keeps policy connections open and sends one request at a
 *	time; a client that pipelines is served in order (requests wait in
 *	the input buffer while one waits for the store, or while
 *	CONN_OUTPUT_MAX bytes of replies wait for the client to read them).
 *	Memory per connection is bounded: CONN_INPUT_MAX of input and
 *	CONN_OUTPUT_MAX of replies (plus one). A client that reads none of
 *	its pending replies for idle_timeout is dropped, as is one that
 *	does not complete a request within idle_timeout of its connect or
 *	of the last request it sent: the clock is not restarted by bytes
 *	that do not end a request (Postfix sends each request whole, and
 *	a client that sends a byte a second must not hold a connection,
 *	and with max_connections of them the service, for ever).
 *
 *	I/O is done with read(2)/writev(2) on a persistent libevent read
 *	event; a write event is added only when the socket is full. (With
 *	bufferevents every reply cost two epoll_ctl calls, a third of the
 *	CPU time at 30k requests/s.)
 *
 *	Each store call has a deadline (the "deadline" parameter). When the
 *	store fails or misses the deadline, on_store_error decides: open
 *	answers from the local memory store (local limits keep counting),
 *	closed answers store_error_reply (a 4xx: Postfix defers).
 *
 *	conn_drain() starts a stop's drain in a worker: every request
 *	received (read, or waiting in the socket) is answered and its answer
 *	written, then the connection is closed; a connection with nothing
 *	received is closed at once (Postfix's policy client sends its next
 *	request on a new connection, to another instance). conn_drain_watch()
 *	(worker 0) ends the loop once no connection is left in any worker,
 *	or when drain_ms has passed (skeleton_drain(3)).
 *
 *	A request that cannot be parsed gets no reply, as the protocol
 *	requires: the problem is logged and that connection closed; every
 *	other connection is unaffected.
 * DIAGNOSTICS
 *	"warning: CLIENT: ERROR; closing connection" for protocol errors
 *	and for a client that does not read or cuts a request short (at
 *	most 10 a second per worker, then a count of the rest, said within
 *	10 s); store failures are never
 *	logged per request: they are counted (server.store_errors, the
 *	reason in store.error) and summarised every 10 seconds.
 */

#include "build_config.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <strings.h>
#include <time.h>

#include <event2/buffer.h>

#include <sys/socket.h>

#include "addr.h"
#include "conn.h"
#include "daemon.h"
#include "skeleton.h"
#include "metrics.h"
#include "msg.h"
#include "xalloc.h"

/*
 * Input kept per connection: starts small (10,000 idle Postfix
 * connections must not cost 1 GB) and grows to one maximal request plus
 * a read's worth.
 */
#define CONN_INPUT_MIN	4096
#define CONN_INPUT_MAX	(POLICY_REQUEST_MAX + POLICY_LINE_MAX + 16384)

/*
 * Replies kept per connection: no request is parsed while this much is
 * unsent. Postfix reads each answer before it sends the next request,
 * so it holds at most one reply; only a client that pipelines and does
 * not read gets here, and it then waits (its input stops being read
 * when CONN_INPUT_MAX is full) until it reads, or is dropped after
 * idle_timeout.
 */
#define CONN_OUTPUT_MAX	65536

struct conn {
    struct server *srv;
    struct timespec started;		/* of the request being decided */
    evutil_socket_t fd;
    struct event *read_ev;		/* persistent, no timeout */
    struct event *write_ev;
    struct event *idle_ev;		/* awaiting a request: idle_timeout */
    struct evbuffer *out;
    char   *in;				/* unparsed input */
    size_t  in_cap;			/* grows up to CONN_INPUT_MAX */
    size_t  in_len;
    size_t  in_used;			/* parsed prefix of in */
    struct policy_request req;
    struct decide_txn txn;
    struct policy_config *pc;		/* held while a request is in flight */
    struct store_call *call;		/* in flight at the store */
    struct event *deadline;
    int     busy;
    int     in_loop;			/* conn_input() is on the stack */
    int     eof;
    int     eof_logged;
    char    peer[ADDR_TEXT_MAX];
    struct conn *prev, *next;		/* the worker's list (conn_reload()) */
};

void    policy_config_release(struct policy_config **pcp)
{
    struct policy_config *pc = *pcp;

    *pcp = NULL;
    if (pc == NULL || --pc->refcount > 0)
	return;
    ratelimit_free(&pc->limits);
    config_free(&pc->cfg);
    explicit_bzero(&pc->store, sizeof(pc->store));	/* the password */
    free(pc);
}

static void conn_free(struct conn *conn)
{
    if (conn->call) {			/* the store still owns it */
	conn->call->abandoned = 1;
	conn->call = NULL;
    }
    event_free(conn->deadline);
    event_free(conn->idle_ev);
    event_free(conn->read_ev);
    event_free(conn->write_ev);
    evbuffer_free(conn->out);
    evutil_closesocket(conn->fd);
    free(conn->in);
    policy_request_free(&conn->req);
    decide_txn_closed(&conn->txn, &conn->srv->pc->limits);	/* the next one asks */
    policy_config_release(&conn->pc);
    atomic_fetch_sub(conn->srv->connections, 1);
    if (conn->prev)
	conn->prev->next = conn->next;
    else
	conn->srv->conns = conn->next;
    if (conn->next)
	conn->next->prev = conn->prev;
    free(conn);
}

/*
 * conn_warn - a connection's own trouble (a protocol error, a request
 * cut short): at most CONN_WARN_LOGS lines a second per worker, the rest
 * counted and said by conn_warnings_flush() (the worker's 10 s report,
 * or the next second's first warning): a client that reconnects with
 * garbage, or cuts its requests short (or a Redis client that Sentinel
 * pointed at this daemon's own listener, twice a second for ever), must
 * not fill the log.
 */
#define CONN_WARN_LOGS	10

static __thread time_t conn_warn_window;
static __thread int conn_warn_logged, conn_warn_unlogged;

void    conn_warnings_flush(void)
{
    if (conn_warn_unlogged > 0)
	msg_warn("%d more connections closed for protocol errors or cut short: not logged "
		 "(at most %d lines a second)", conn_warn_unlogged, CONN_WARN_LOGS);
    conn_warn_unlogged = 0;
}

static void __attribute__((format(printf, 2, 3))) conn_warn(struct conn *conn, const char *fmt,...)
{
    time_t  now = time(NULL);
    char    text[300];
    va_list ap;

    if (now != conn_warn_window) {
	conn_warnings_flush();
	conn_warn_window = now;
	conn_warn_logged = 0;
    }
    if (conn_warn_logged++ >= CONN_WARN_LOGS) {
	conn_warn_unlogged++;
	return;
    }
    va_start(ap, fmt);
    vsnprintf(text, sizeof(text), fmt, ap);
    va_end(ap);
    msg_warn("%s: %s", conn->peer, text);
}

static void conn_fail(struct conn *conn, const char *err)
{
    conn_warn(conn, "%s; closing connection", err);
    conn_free(conn);
}

static int conn_output_full(const struct conn *conn)
{
    return (evbuffer_get_length(conn->out) >= CONN_OUTPUT_MAX);
}

static struct timeval conn_idle_timeout(const struct conn *conn)
{
    long long ms = conn->srv->pc->idle_timeout_ms;
    struct timeval tv = {ms / 1000, (ms % 1000) * 1000};

    return (tv);
}

/*
 * conn_reload - a reload changed idle_timeout: connections already open
 * wait for their client with the new one, counted from now (a lowered
 * timeout that reached only new connections gave no relief from a flood
 * of idle ones for the whole old timeout). Unchanged, nothing moves: a
 * run of reloads must not keep idle connections alive.
 */
void    conn_reload(struct server *srv, long long old_idle_ms)
{
    if (srv->pc->idle_timeout_ms == old_idle_ms)
	return;
    for (struct conn *conn = srv->conns; conn; conn = conn->next) {
	struct timeval idle = conn_idle_timeout(conn);

	if (evtimer_pending(conn->idle_ev, NULL))
	    evtimer_add(conn->idle_ev, &idle);
	if (event_pending(conn->write_ev, EV_WRITE, NULL))
	    event_add(conn->write_ev, &idle);
    }
}

/* conn_flush - write what we can; 0 when the connection was freed */

static int conn_flush(struct conn *conn)
{
    while (evbuffer_get_length(conn->out) > 0) {
	int     n = evbuffer_write(conn->out, conn->fd);

	if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
	    struct timeval idle = conn_idle_timeout(conn);

	    /* the timeout counts from the first write that did not fit */
	    if (!event_pending(conn->write_ev, EV_WRITE, NULL))
		event_add(conn->write_ev, &idle);
	    return (1);
	}
	if (n <= 0) {
	    if (msg_verbose)
		msg_info("%s: write error: %m", conn->peer);
	    conn_free(conn);
	    return (0);
	}
    }
    return (1);
}

static void conn_input(struct conn *conn);

static void conn_writable(evutil_socket_t fd, short what, void *context)
{
    struct conn *conn = context;
    char    err[120];

    if (what & EV_TIMEOUT) {
	snprintf(err, sizeof(err), "client did not read its replies for %llds "
		 "(%zu bytes unsent)", conn->srv->pc->idle_timeout_ms / 1000,
		 evbuffer_get_length(conn->out));
	conn_fail(conn, err);
	return;
    }
    if (!conn_flush(conn) || conn->busy || conn_output_full(conn))
	return;
    conn_input(conn);				/* requests held back, or EOF */
}

/* Prometheus series, made at startup (conn_metrics_init) */
static struct {
    struct metrics_series *dunno, *defer, *reject, *other, *latency, *errors, *fallbacks;
} conn_metrics;

void    conn_metrics_init(void)
{
    const char *help = "Policy replies by action.";

    conn_metrics.dunno = metrics_counter("mxkit_policyd_decisions_total", help, "action=\"dunno\"");
    conn_metrics.defer = metrics_counter("mxkit_policyd_decisions_total", help, "action=\"defer\"");
    conn_metrics.reject = metrics_counter("mxkit_policyd_decisions_total", help,
					  "action=\"reject\"");
    conn_metrics.other = metrics_counter("mxkit_policyd_decisions_total", help, "action=\"other\"");
    conn_metrics.latency = metrics_latency_histogram("mxkit_policyd_request_duration_seconds",
				"Time from a complete request to its reply.", NULL);
    conn_metrics.errors = metrics_counter("mxkit_policyd_store_errors_total",
			      "Store calls that failed or missed the deadline.", NULL);
    conn_metrics.fallbacks = metrics_counter("mxkit_policyd_store_fallbacks_total",
		       "Requests decided by the local memory store instead (open).", NULL);
}

static void conn_count_one(struct metrics_series *s)
{
    if (s)					/* not in unit tests */
	metrics_inc(s);
}

/* conn_count - decisions by action, and how long each took */

static void conn_count(struct conn *conn, const char *reply)
{
    struct timespec now;

    if (strcmp(reply, "DUNNO") == 0)
	conn_count_one(conn_metrics.dunno);
    else if (reply[0] == '4' || strncasecmp(reply, "DEFER", 5) == 0)
	conn_count_one(conn_metrics.defer);
    else if (reply[0] == '5' || strncasecmp(reply, "REJECT", 6) == 0)
	conn_count_one(conn_metrics.reject);
    else
	conn_count_one(conn_metrics.other);
    clock_gettime(CLOCK_MONOTONIC, &now);
    if (conn_metrics.latency)
	metrics_observe(conn_metrics.latency, (now.tv_sec - conn->started.tv_sec)
			+ (now.tv_nsec - conn->started.tv_nsec) / 1e9);
}

static void conn_reply(struct conn *conn, const char *reply)
{
    conn_count(conn, reply);
    decide_answered(&conn->txn, &conn->req, reply);	/* what Postfix may hold */
    /* three copies, no printf: formatting was 3% of the CPU per reply */
    evbuffer_add(conn->out, "action=", 7);
    evbuffer_add(conn->out, reply, strlen(reply));
    evbuffer_add(conn->out, "\n\n", 2);
    policy_request_reset(&conn->req);
    policy_config_release(&conn->pc);
    conn->busy = 0;
    if (!conn->in_loop) {		/* an asynchronous answer */
	if (conn_flush(conn))
	    conn_input(conn);
    }
}

static void conn_store_done(struct store_call *call);

static void conn_submit(struct conn *conn, struct store *store, struct store_call *call)
{
    struct timeval tv = {conn->pc->deadline_ms / 1000, (conn->pc->deadline_ms % 1000) * 1000};

    call->done = conn_store_done;
    call->context = conn;
    conn->call = call;
    if (store != conn->srv->local)
	evtimer_add(conn->deadline, &tv);
    store->submit(store, call);
}

/* conn_store_failed - the store did not answer: on_store_error decides */

static void conn_store_failed(struct conn *conn)
{
    struct store_call *call;
    const char *reply;

    conn_count_one(conn_metrics.errors);
    conn->srv->store_errors++;
    if (conn->pc->fail_open)
	conn_count_one(conn_metrics.fallbacks);
    if (!conn->pc->fail_open) {
	conn_reply(conn, conn->pc->store_error_reply);
	return;
    }
    call = decide_prepare(conn->pc, &conn->txn, &conn->req, &reply);
    if (call == NULL)
	conn_reply(conn, reply);
    else
	conn_submit(conn, conn->srv->local, call);
}

static void conn_store_done(struct store_call *call)
{
    struct conn *conn = call->context;
    char   *reply;

    evtimer_del(conn->deadline);
    conn->call = NULL;
    if (call->error) {
	store_call_free(&call);
	conn_store_failed(conn);
	return;
    }
    reply = decide_finish(conn->pc, &conn->txn, &conn->req, call);
    store_call_free(&call);
    conn_reply(conn, reply);
    free(reply);
}

static void conn_deadline(evutil_socket_t fd, short what, void *context)
{
    struct conn *conn = context;

    if (conn->call == NULL)
	return;
    conn->call->abandoned = 1;		/* the store frees it when it answers */
    conn->call->refund_late = !conn->pc->fail_open;	/* answered 451: not admitted */
    conn->call = NULL;
    store_set_error(conn->srv->store, "no answer within the deadline (%lld ms)",
		    conn->pc->deadline_ms);
    conn_store_failed(conn);
}

static void conn_process(struct conn *conn)
{
    struct store_call *call;
    const char *reply;

    conn->busy = 1;
    evtimer_del(conn->idle_ev);			/* the next request's clock: later */
    clock_gettime(CLOCK_MONOTONIC, &conn->started);
    conn->pc = conn->srv->pc;
    conn->pc->refcount++;
    call = decide_prepare(conn->pc, &conn->txn, &conn->req, &reply);
    if (call == NULL)
	conn_reply(conn, reply);
    else
	conn_submit(conn, conn->srv->store, call);
}

/* conn_line - one line without its LF; returns 0 when conn was freed */

static int conn_line(struct conn *conn, const char *line, size_t len)
{
    const char *err;

    if (len == 0 || (len == 1 && line[0] == '\r')) {
	if ((err = policy_request_finish(&conn->req)) != NULL) {
	    conn_fail(conn, err);
	    return (0);
	}
	conn_process(conn);
	return (1);
    }
    if ((err = policy_request_add_line(&conn->req, line, len)) != NULL) {
	conn_fail(conn, err);
	return (0);
    }
    return (1);
}

static void conn_resume_reading(struct conn *conn)
{
    event_add(conn->read_ev, NULL);
}

/*
 * conn_await_request - start the clock for the next request, unless it
 * runs already: bytes that do not complete a request leave it running.
 */
static void conn_await_request(struct conn *conn)
{
    struct timeval idle = conn_idle_timeout(conn);

    if (!evtimer_pending(conn->idle_ev, NULL))
	evtimer_add(conn->idle_ev, &idle);
}

static void conn_idle(evutil_socket_t fd, short what, void *context)
{
    struct conn *conn = context;

    if (conn->req.count > 0 || conn->in_len > conn->in_used)
	msg_info("%s: idle timeout: no complete request within %llds", conn->peer,
		 conn->srv->pc->idle_timeout_ms / 1000);
    else
	msg_info("%s: idle timeout", conn->peer);
    conn_free(conn);
}

/* conn_input - parse buffered input until a request goes to the store */

static void conn_input(struct conn *conn)
{
    char   *line, *nl;

    conn->in_loop = 1;
    while (!conn->busy && conn->in_used < conn->in_len && !conn_output_full(conn)) {
	line = conn->in + conn->in_used;
	if ((nl = memchr(line, '\n', conn->in_len - conn->in_used)) == NULL) {
	    if (conn->in_len - conn->in_used > POLICY_LINE_MAX + 1) {
		conn_fail(conn, "attribute line too long");
		return;
	    }
	    break;
	}
	conn->in_used += nl - line + 1;
	if (!conn_line(conn, line, nl - line))
	    return;
    }
    conn->in_loop = 0;
    if (conn->in_used == conn->in_len)	/* all parsed: start over */
	conn->in_used = conn->in_len = 0;
    if (!conn_flush(conn))
	return;
    if (conn->busy || conn_output_full(conn))	/* conn_reply/conn_writable resume */
	return;
    if (conn->srv->draining && conn->in_used == conn->in_len && conn->req.count == 0) {
	if (evbuffer_get_length(conn->out) == 0)
	    conn_free(conn);			/* answered: the drain closes it */
	return;					/* conn_writable() comes back */
    }
    if (!conn->eof && !event_pending(conn->read_ev, EV_READ, NULL))
	conn_resume_reading(conn);
    if (!conn->eof)
	conn_await_request(conn);
    if (conn->eof) {
	if ((conn->req.count > 0 || conn->in_len > conn->in_used) && !conn->eof_logged)
	    conn_warn(conn, "connection closed in the middle of a request");
	conn->eof_logged = 1;
	if (evbuffer_get_length(conn->out) == 0)
	    conn_free(conn);
    }
}

static void conn_readable(evutil_socket_t fd, short what, void *context)
{
    struct conn *conn = context;
    ssize_t n;

    if (conn->in_used > 0 && !conn->busy) {	/* keep the unparsed tail */
	memmove(conn->in, conn->in + conn->in_used, conn->in_len - conn->in_used);
	conn->in_len -= conn->in_used;
	conn->in_used = 0;
    }
    if (conn->in_len == conn->in_cap && conn->in_cap < CONN_INPUT_MAX) {
	conn->in_cap = conn->in_cap * 4 > CONN_INPUT_MAX ? CONN_INPUT_MAX : conn->in_cap * 4;
	conn->in = xrealloc(conn->in, conn->in_cap);
    }
    if (conn->in_len >= conn->in_cap) {	/* a pipelining client: wait */
	event_del(conn->read_ev);
	return;
    }
    n = read(fd, conn->in + conn->in_len, conn->in_cap - conn->in_len);
    if (n < 0 && (errno == EAGAIN || errno == EINTR))
	return;
    if (n <= 0) {
	if (n < 0 && msg_verbose)
	    msg_info("%s: read error: %m", conn->peer);
	conn->eof = 1;
	event_del(conn->read_ev);
    } else {
	conn->in_len += n;
    }
    if (!conn->busy)
	conn_input(conn);
}

void    conn_accept(struct evconnlistener *listener, evutil_socket_t fd,
		            struct sockaddr *sa, int salen, void *context)
{
    struct server *srv = context;
    struct conn *conn;
    static _Atomic time_t last_warning;

    /* one count for all workers: none may take more than what is left */
    if (atomic_fetch_add(srv->connections, 1) >= srv->pc->max_connections) {
	atomic_fetch_sub(srv->connections, 1);
	if (time(NULL) != last_warning)
	    msg_warn("max_connections (%lld) reached; refusing connections",
		     srv->pc->max_connections);
	last_warning = time(NULL);
	evutil_closesocket(fd);
	return;
    }
    evutil_make_socket_nonblocking(fd);
    conn = xcalloc(1, sizeof(*conn));
    conn->srv = srv;
    conn->fd = fd;
    if (sa->sa_family == AF_UNIX)
	snprintf(conn->peer, sizeof(conn->peer), "unix-client");
    else
	addr_format(sa, conn->peer, sizeof(conn->peer));
    policy_request_init(&conn->req);
    conn->in_cap = CONN_INPUT_MIN;
    conn->in = xmalloc(conn->in_cap);
    conn->out = evbuffer_new();
    conn->deadline = evtimer_new(srv->base, conn_deadline, conn);
    conn->idle_ev = evtimer_new(srv->base, conn_idle, conn);
    conn->read_ev = event_new(srv->base, fd, EV_READ | EV_PERSIST, conn_readable, conn);
    conn->write_ev = event_new(srv->base, fd, EV_WRITE, conn_writable, conn);
    conn->next = srv->conns;
    if (srv->conns)
	srv->conns->prev = conn;
    srv->conns = conn;
    conn_resume_reading(conn);
    conn_await_request(conn);
}

/* conn_quiet - nothing received and unanswered: no request read or waiting */

static int conn_quiet(const struct conn *conn)
{
    char    byte;

    if (conn->busy || conn->in_used < conn->in_len || conn->req.count > 0
	|| evbuffer_get_length(conn->out) > 0)
	return (0);
    return (recv(conn->fd, &byte, 1, MSG_PEEK | MSG_DONTWAIT) <= 0);
}

void    conn_drain(struct server *srv)
{
    struct conn *conn, *next;

    srv->draining = 1;
    for (conn = srv->conns; conn; conn = next) {
	next = conn->next;
	if (conn_quiet(conn))
	    conn_free(conn);
    }
}

static void conn_drain_check(evutil_socket_t fd, short what, void *context)
{
    struct server *srv = context;
    int     left = atomic_load(srv->connections);
    long long now = daemon_mono_ms();

    if (left > 0 && now < srv->drain_until)
	return;
    skeleton_drained(left, srv->drain_ms);
    event_base_loopbreak(srv->base);
}

void    conn_drain_watch(struct server *srv, long long drain_ms)
{
    struct timeval tick = {0, 50000};

    srv->drain_ms = drain_ms;
    srv->drain_until = daemon_mono_ms() + drain_ms;
    srv->drain_ev = event_new(srv->base, -1, EV_PERSIST, conn_drain_check, srv);
    event_add(srv->drain_ev, &tick);
}
