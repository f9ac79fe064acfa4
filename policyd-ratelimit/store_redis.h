#ifndef MXKIT_STORE_REDIS_H
#define MXKIT_STORE_REDIS_H

/*
 * store_redis - the Redis store's own parts, shared by its files:
 * store_redis.c (the request path: checks, the script, the clock),
 * store_redis_conn.c (connect, resolve, handshake, watchdog, retry;
 * connection states), store_redis_admin.c (the operator's calls).
 * Not for the rest of the daemon: store.h is its interface.
 */

#include <time.h>

#include <hiredis/async.h>
#include <hiredis/hiredis.h>

#include "store.h"
#include "store_resolve.h"
#include "store_sentinel.h"

struct store_redis_clock;

/*
 * A reply's elements, all arrays in it counted (hiredis 0.14 sets no
 * limit: a Sentinel answering "*2000000000" and streaming elements held
 * the event loop for seconds and took 400 MB). Our largest replies are
 * SCAN's (about 1000 keys) and ROLE's.
 */
#define STORE_REPLY_ELEMENTS_MAX	100000

struct store_reply_budget {
    long long elements;			/* in the reply being read */
    int     refused;			/* a reply went over: say so */
};

struct store_redis {
    struct store store;
    struct event_base *base;
    redisAsyncContext *ctx;
    struct store_url url;
    int     connected;			/* handshake done: scripts may run */
    char    logged[200];		/* last state logged: once per change */
    int     quiet_connect;		/* the last connection was refused a
					 * command (NOPERM, READONLY...): the
					 * next "connected" waits for a script
					 * that works (store_redis_usable()) */
    char    connect_text[300];		/* that "connected" line, not yet said */
    char    sha[48];			/* from SCRIPT LOAD; empty: use EVAL */
    struct event *retry;
    struct event *watchdog;
    int     outstanding;		/* commands without a reply */
    long long progress_ms;		/* last reply, or first outstanding */
    struct sentinel *sentinel;		/* redis-sentinel://: url.host from it */
    int     moving;			/* dropping for a new master's address */
    struct resolve *resolve;		/* url.host a name: looked up on the loop */
    struct resolve_req *lookup;		/* under way */
    struct resolve_result addrs;	/* the last lookup's, tried in turn */
    int     addr_next;
    char    addr[64];			/* the name's address in use, or "" */
    char   *cmd;			/* a command being built (RESP) */
    size_t  cmd_len;
    size_t  cmd_cap;
    int     queueing;			/* in redisAsyncFormattedCommand() */
    struct store_redis_clock *clock;	/* TIME queued, not yet written */
    struct store_reply_budget budget;	/* of ctx's replies */
};

#define STORE_REDIS_STALL_MS	1000

static inline long long store_redis_now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ((long long) ts.tv_sec * 1000 + ts.tv_nsec / 1000000);
}

/* store_redis.c */
extern const char store_redis_script[];
void    store_redis_clock_end(struct store_redis *redis);

/* store_redis_conn.c */
void    store_redis_down(struct store_redis *redis, const char *why);
void    store_redis_drop(struct store_redis *redis, const char *why);
int     store_redis_fatal_reply(const redisReply *reply);
void    store_redis_refused(struct store_redis *redis, const char *why);
void    store_redis_usable(struct store_redis *redis);
void    store_redis_connect(struct store_redis *redis);
void    store_redis_watchdog(evutil_socket_t fd, short what, void *context);
void    store_redis_retry(evutil_socket_t fd, short what, void *context);
void    store_redis_found(void *context, const char *host, int port);
void    store_redis_add_write(void *privdata);
void    store_redis_del_write(void *privdata);
void    store_redis_bound_replies(redisAsyncContext *ctx, struct store_reply_budget *budget);
const char *store_redis_errstr(const redisAsyncContext *ctx,
			               const struct store_reply_budget *budget);

/* store_redis_admin.c */
void    store_redis_admin(struct store *store, struct store_admin *adm);

#endif
