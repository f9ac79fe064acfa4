/*
 * NAME
 *	metrics_http 3
 * SUMMARY
 *	the Prometheus endpoint
 * SYNOPSIS
 *	#include "metrics_http.h"
#include "skeleton.h"
 *
 *	const char *metrics_http_start(listen)
 *
 *	void	metrics_http_readiness(check)
 *	const char *(*check)(void);
 *
 *	void	metrics_http_serving(on)
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
 *	/healthz is 200 "alive" as long as the process serves HTTP; GET
 *	/readyz is 200 "ready" once the daemon said metrics_http_serving(1)
 *	(its listeners bound, its configuration and keys loaded, its loop
 *	running) and as long as check() returns NULL; else 503 with the
 *	reason: "starting", "stopping" (after metrics_http_serving(0), so
 *	that a terminating pod leaves its Service at once), or what check()
 *	returned (static text), e.g. "store unreachable and on_store_error
 *	= closed". check() runs in the endpoint's thread, so it may read
 *	only what is safe there (atomics, access(2)); without it, serving
 *	is ready. HEAD works as GET without the body; anything else is a
 *	404. No probe touches a mail port, so none is counted as a
 *	connection (or a rejected PROXY header) there.
 *	Called before privileges are dropped (the port may be low).
 *	Out of descriptors, accept() pauses (skeleton_listener_guard()).
 * DIAGNOSTICS
 *	NULL, or a message (static storage) naming the address and the
 *	system error.
 */

#include "build_config.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/http.h>

#include "addr.h"
#include "metrics.h"
#include "metrics_http.h"
#include "skeleton.h"

typedef const char *(*metrics_http_check_fn) (void);

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

/* metrics_http_path - PATH or PATH?QUERY */

static int metrics_http_path(const char *uri, const char *path)
{
    size_t  len = strlen(path);

    return (strncmp(uri, path, len) == 0 && (uri[len] == 0 || uri[len] == '?'));
}

static void metrics_http_text(struct evhttp_request *req, int code, const char *reason,
			              const char *type, const char *text, size_t len)
{
    struct evbuffer *body = evbuffer_new();

    evbuffer_add(body, text, len);
    evhttp_add_header(evhttp_request_get_output_headers(req), "Content-Type", type);
    evhttp_add_header(evhttp_request_get_output_headers(req), "Cache-Control", "no-store");
    evhttp_send_reply(req, code, reason, body);
    evbuffer_free(body);
}

/* metrics_http_ready - GET /readyz: the daemon's check, 200 or 503 */

static void metrics_http_ready(struct evhttp_request *req)
{
    metrics_http_check_fn check = atomic_load(&metrics_http_check);
    int     state = atomic_load(&metrics_http_state);
    const char *why = state == 0 ? "starting" : state == 2 ? "stopping"
    : check ? check() : NULL;
    char    text[300];

    if (why == NULL) {
	metrics_http_text(req, HTTP_OK, "OK", "text/plain; charset=utf-8", "ready\n", 6);
	return;
    }
    snprintf(text, sizeof(text), "not ready: %s\n", why);
    metrics_http_text(req, 503, "Service Unavailable", "text/plain; charset=utf-8",
		      text, strlen(text));
}

static void metrics_http_handle(struct evhttp_request *req, void *context)
{
    const char *uri = evhttp_request_get_uri(req);
    size_t  len;
    char   *text;

    (void) context;
    if (evhttp_request_get_command(req) != EVHTTP_REQ_GET
	&& evhttp_request_get_command(req) != EVHTTP_REQ_HEAD) {
	evhttp_send_error(req, HTTP_NOTFOUND, "only GET /metrics, /healthz, /readyz here");
    } else if (metrics_http_path(uri, "/metrics")) {
	text = metrics_render(&len);
	metrics_http_text(req, HTTP_OK, "OK", "text/plain; version=0.0.4; charset=utf-8",
			  text, len);
	free(text);
    } else if (metrics_http_path(uri, "/healthz")) {
	metrics_http_text(req, HTTP_OK, "OK", "text/plain; charset=utf-8", "alive\n", 6);
    } else if (metrics_http_path(uri, "/readyz")) {
	metrics_http_ready(req);
    } else {
	evhttp_send_error(req, HTTP_NOTFOUND, "only GET /metrics, /healthz, /readyz here");
    }
}

static void *metrics_http_run(void *context)
{
    event_base_dispatch(context);
    return (NULL);
}

const char *metrics_http_start(const char *listen)
{
    static char err[300];
    struct event_base *base;
    struct evhttp *http;
    struct evhttp_bound_socket *bound = NULL;
    struct addr addr;
    const char *msg;
    pthread_t thread;
    int     fd;

    if ((msg = addr_parse(listen, &addr)) != NULL) {
	snprintf(err, sizeof(err), "metrics_listen: %s", msg);
	return (err);
    }
    if (addr.family == AF_UNIX) {
	snprintf(err, sizeof(err), "metrics_listen: %s: Prometheus scrapes TCP", listen);
	return (err);
    }
    if ((fd = addr_listen(&addr, 64, 1)) < 0) {
	snprintf(err, sizeof(err), "metrics_listen %s: %s", listen, strerror(errno));
	return (err);
    }
    if ((base = event_base_new()) == NULL || (http = evhttp_new(base)) == NULL
	|| (bound = evhttp_accept_socket_with_handle(http, fd)) == NULL) {
	close(fd);
	snprintf(err, sizeof(err), "metrics_listen %s: cannot set up evhttp", listen);
	return (err);
    }
    /* out of descriptors, evhttp would retry accept() in a busy loop */
    skeleton_listener_guard(evhttp_bound_socket_get_listener(bound));
    evhttp_set_allowed_methods(http, EVHTTP_REQ_GET | EVHTTP_REQ_HEAD);
    evhttp_set_gencb(http, metrics_http_handle, NULL);
    evhttp_set_timeout(http, 10);
    if (pthread_create(&thread, NULL, metrics_http_run, base) != 0) {
	snprintf(err, sizeof(err), "metrics_listen %s: cannot start its thread", listen);
	return (err);
    }
    pthread_detach(thread);
    return (NULL);
}
