#ifndef MXKIT_SHIM_H
#define MXKIT_SHIM_H

/* shim - proxyv2-shim's listeners, server and sessions. */

#include <pthread.h>

#include <event2/dns.h>
#include <event2/event.h>
#include <event2/listener.h>

#include "addr.h"
#include "cidr_list.h"
#include "config.h"
#include "proxy_header.h"

enum shim_mode {
    SHIM_XCLIENT,			/* Postfix: XCLIENT ADDR= PORT= */
    SHIM_TRANSPARENT,			/* connect from the client's address */
    SHIM_PROXY_V1,			/* re-emit a clean v1 header */
    SHIM_PROXY_V2,			/* re-emit a clean v2 header */
};

/* what a header without a client address (LOCAL, UNKNOWN...) gets */
enum shim_unknown {
    SHIM_UNKNOWN_UNAVAILABLE,		/* xclient: ADDR=[UNAVAILABLE]; others refuse */
    SHIM_UNKNOWN_REFUSE,		/* every mode closes the connection */
};

struct shim_listener {
    char   *spec;			/* the configuration line, for logs */
    int     line;			/* its line number */
    struct addr listen;
    struct addr backend;
    enum shim_mode mode;
    struct cidr_list *trusted;
    char   *dead_trusted;		/* networks that can never match, or NULL */
    char   *wide_trusted;		/* a /0 network: a warning, or NULL */
    int     header_timeout_ms;		/* 0: the global header_timeout */
    int     mark;			/* SO_MARK in transparent mode */
    struct evconnlistener *evl;
    struct server *srv;
};

/* the reject-log rate limit: one per process, whatever the workers */
struct shim_rejects {
    pthread_mutex_t lock;
    long long window;			/* second of the current window */
    int     logged;
    long long suppressed;
};

/* Descriptors: six per session; these for the daemon, and per worker */
#define SHIM_FDS_PER_SESSION	6
#define SHIM_FD_RESERVE		32

struct server {
    struct event_base *base;
    struct config *cfg;
    struct shim_listener *listeners;
    int     nlisteners;
    int     header_timeout_ms;
    int     connect_timeout_ms;
    int     dns_timeout_ms;		/* a client name's lookup in all */
    int     idle_timeout_ms;
    int     max_connections;
    size_t  v2_max;
    const char *xclient_helo;
    enum shim_unknown unknown_clients;
    struct evdns_base *dns;		/* NULL: xclient_name_lookup = no */
    int     sessions;			/* open now */
    /* rejected connections are logged at most log_rejects_per_second */
    int     reject_log_rate;
    struct shim_rejects *rejects;	/* shared by the workers */
    struct event *files_hold;		/* accepting held: no descriptors */
    struct shim_parked *parked;		/* accepted, waiting for descriptors */
    struct shim_parked **parked_tail;
    int     draining;			/* stopping: accept no more */
};

const char *listener_parse(const char *text, struct shim_listener *lst);
void    listener_free(struct shim_listener *lst);
const char *listener_mode_name(enum shim_mode mode);

void    session_accept(struct evconnlistener *evl, evutil_socket_t fd,
		               struct sockaddr *sa, int salen, void *context);
void    session_flush_rejects(struct server *srv);
int     session_open_count(void);
int     session_files_room(int more);
void    session_files_hold(struct server *srv);
void    session_files_park(struct shim_listener *lst, int fd, const struct sockaddr *sa,
			           int salen);
void    session_files_unpark_all(struct server *srv, const char *why);
void    session_metrics_init(void);
void    session_log_reject(struct server *srv, const char *fmt,...)
	__attribute__((format(printf, 2, 3)));

#endif
