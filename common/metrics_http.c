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
 * DESCRIPTION
 *	Binds listen ("inet:127.0.0.1:9101", "inet6:[::1]:9101") and
 *	serves GET /metrics with libevent's evhttp from a thread of its
 *	own, so that a daemon's event loop, libmilter's threads or a
 *	libcurl loop need not know about it: scrapes read the lock-free
 *	counters of metrics(3). Anything but GET /metrics is a 404.
 *	Called before privileges are dropped (the port may be low).
 *	Out of descriptors, accept() pauses (skeleton_listener_guard()).
 * DIAGNOSTICS
 *	NULL, or a message (static storage) naming the address and the
 *	system error.
 */

#include "build_config.h"

#include <errno.h>
#include <pthread.h>
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

static void metrics_http_handle(struct evhttp_request *req, void *context)
{
    struct evbuffer *body;
    const char *path = evhttp_request_get_uri(req);
    size_t  len;
    char   *text;

    (void) context;
    if (evhttp_request_get_command(req) != EVHTTP_REQ_GET
	|| (strcmp(path, "/metrics") != 0 && strncmp(path, "/metrics?", 9) != 0)) {
	evhttp_send_error(req, HTTP_NOTFOUND, "only GET /metrics here");
	return;
    }
    text = metrics_render(&len);
    body = evbuffer_new();
    evbuffer_add(body, text, len);
    free(text);
    evhttp_add_header(evhttp_request_get_output_headers(req), "Content-Type",
		      "text/plain; version=0.0.4; charset=utf-8");
    evhttp_send_reply(req, HTTP_OK, "OK", body);
    evbuffer_free(body);
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
