#ifndef MXKIT_CONN_H
#define MXKIT_CONN_H

/* conn - one Postfix policy client connection (persistent). */

#include <stdatomic.h>

#include <event2/event.h>
#include <event2/listener.h>

#include "decide.h"
#include "store.h"

struct server {
    struct event_base *base;
    struct policy_config *pc;		/* current configuration */
    struct store *store;		/* memory, or redis */
    struct store *local;		/* memory: the store, or redis's fallback */
    _Atomic int *connections;		/* one count for all workers */
    long long store_errors;		/* since the last report */
    struct event *report;
    struct conn *conns;			/* this worker's open connections */
    int     draining;			/* stopping: answer, then close */
    struct event *drain_ev;		/* worker 0: is the drain over? */
    long long drain_until;		/* daemon_mono_ms() */
    long long drain_ms;
};

void    conn_accept(struct evconnlistener *listener, evutil_socket_t fd,
		            struct sockaddr *sa, int salen, void *context);
void    conn_reload(struct server *srv, long long old_idle_ms);
void    policy_config_release(struct policy_config **pc);
void    conn_metrics_init(void);
void    conn_warnings_flush(void);
void    conn_drain(struct server *srv);
void    conn_drain_watch(struct server *srv, long long drain_ms);

#endif
