/*
 * NAME
 *	conn 3
 * SUMMARY
 *	policy client connections on libevent
 * SYNOPSIS
 *	#include "conn.h"
 *
 *	void	conn_accept(listener, fd, sa, salen, server)
 * DESCRIPTION
 *	Postfix keeps policy connections open and sends one request at a
 *	time; a client that pipelines is served in order (reading pauses
 *	while a request waits for the store).
 *
 *	Each store call has a deadline (the "deadline" parameter). When the
 *	store fails or misses the deadline, on_store_error decides: open
 *	answers from the local memory store (local limits keep counting),
 *	closed answers store_error_reply (a 4xx: Postfix defers).
 *
 *	A request that cannot be parsed gets no reply, as the protocol
 *	requires: the problem is logged and that connection closed; every
 *	other connection is unaffected.
 * DIAGNOSTICS
 *	"warning: CLIENT: ERROR; closing connection" for protocol errors;
 *	store failures are summarised every 10 seconds.
 */

#include "build_config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>

#include "addr.h"
#include "conn.h"
#include "msg.h"
#include "xalloc.h"

struct conn {
    struct server *srv;
    struct bufferevent *bev;
    struct policy_request req;
    struct decide_txn txn;
    struct policy_config *pc;		/* held while a request is in flight */
    struct store_call *call;		/* in flight at the store */
    struct event *deadline;
    int     busy;
    int     in_read;
    char    peer[ADDR_TEXT_MAX];
};

static void conn_read(struct bufferevent *bev, void *context);

void    policy_config_release(struct policy_config **pcp)
{
    struct policy_config *pc = *pcp;

    *pcp = NULL;
    if (pc == NULL || --pc->refcount > 0)
	return;
    ratelimit_free(&pc->limits);
    config_free(&pc->cfg);
    free(pc);
}

static void conn_free(struct conn *conn)
{
    if (conn->call) {			/* the store still owns it */
	conn->call->abandoned = 1;
	conn->call = NULL;
    }
    event_free(conn->deadline);
    bufferevent_free(conn->bev);
    policy_request_free(&conn->req);
    decide_txn_free(&conn->txn);
    policy_config_release(&conn->pc);
    conn->srv->connections--;
    free(conn);
}

static void conn_fail(struct conn *conn, const char *err)
{
    msg_warn("%s: %s; closing connection", conn->peer, err);
    conn_free(conn);
}

static void conn_reply(struct conn *conn, const char *reply)
{
    struct evbuffer *out = bufferevent_get_output(conn->bev);

    evbuffer_add_printf(out, "action=%s\n\n", reply);
    policy_request_reset(&conn->req);
    policy_config_release(&conn->pc);
    conn->busy = 0;
    bufferevent_enable(conn->bev, EV_READ);
    if (!conn->in_read)			/* resume after an asynchronous answer */
	conn_read(conn->bev, conn);
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

    conn->srv->store_errors++;
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
    conn->call = NULL;
    conn_store_failed(conn);
}

static void conn_process(struct conn *conn)
{
    struct store_call *call;
    const char *reply;

    conn->busy = 1;
    conn->pc = conn->srv->pc;
    conn->pc->refcount++;
    call = decide_prepare(conn->pc, &conn->txn, &conn->req, &reply);
    if (call == NULL) {
	conn_reply(conn, reply);
	return;
    }
    bufferevent_disable(conn->bev, EV_READ);
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

static void conn_read(struct bufferevent *bev, void *context)
{
    struct conn *conn = context;
    struct evbuffer *in = bufferevent_get_input(bev);
    struct evbuffer_ptr eol;
    size_t  eol_len;
    const char *data;

    conn->in_read = 1;
    while (!conn->busy) {
	eol = evbuffer_search_eol(in, NULL, &eol_len, EVBUFFER_EOL_LF);
	if (eol.pos < 0) {
	    if (evbuffer_get_length(in) > POLICY_LINE_MAX + 1) {
		conn_fail(conn, "attribute line too long");
		return;
	    }
	    break;
	}
	if ((size_t) eol.pos > POLICY_LINE_MAX + 1) {
	    conn_fail(conn, "attribute line too long");
	    return;
	}
	data = (const char *) evbuffer_pullup(in, eol.pos + eol_len);
	if (!conn_line(conn, data, eol.pos))
	    return;
	evbuffer_drain(in, eol.pos + eol_len);
    }
    conn->in_read = 0;
}

static void conn_event(struct bufferevent *bev, short what, void *context)
{
    struct conn *conn = context;

    if ((what & BEV_EVENT_EOF) && conn->req.count > 0 && !conn->busy)
	msg_warn("%s: connection closed in the middle of a request", conn->peer);
    else if (what & BEV_EVENT_TIMEOUT)
	msg_info("%s: idle timeout", conn->peer);
    else if ((what & BEV_EVENT_ERROR) && msg_verbose)
	msg_info("%s: connection error", conn->peer);
    conn_free(conn);
}

void    conn_accept(struct evconnlistener *listener, evutil_socket_t fd,
		            struct sockaddr *sa, int salen, void *context)
{
    struct server *srv = context;
    struct conn *conn;
    struct timeval idle = {srv->idle_timeout_ms / 1000, (srv->idle_timeout_ms % 1000) * 1000};
    static time_t last_warning;

    if (srv->connections >= srv->max_connections) {
	if (time(NULL) != last_warning)
	    msg_warn("max_connections (%lld) reached; refusing connections",
		     srv->max_connections);
	last_warning = time(NULL);
	evutil_closesocket(fd);
	return;
    }
    conn = xcalloc(1, sizeof(*conn));
    conn->srv = srv;
    srv->connections++;
    if (sa->sa_family == AF_UNIX)
	snprintf(conn->peer, sizeof(conn->peer), "unix-client");
    else
	addr_format(sa, conn->peer, sizeof(conn->peer));
    policy_request_init(&conn->req);
    conn->deadline = evtimer_new(srv->base, conn_deadline, conn);
    conn->bev = bufferevent_socket_new(srv->base, fd, BEV_OPT_CLOSE_ON_FREE);
    bufferevent_setcb(conn->bev, conn_read, NULL, conn_event, conn);
    bufferevent_set_timeouts(conn->bev, &idle, NULL);
    bufferevent_enable(conn->bev, EV_READ | EV_WRITE);
}
