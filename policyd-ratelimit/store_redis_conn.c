/*
 * NAME
 *	store_redis_conn 3
 * SUMMARY
 *	the Redis store's connection: connect, resolve, handshake, recover
 * SYNOPSIS
 *	#include "store_redis.h"
 *
 *	void	store_redis_connect(redis)
 *	void	store_redis_down(redis, why)
 *	void	store_redis_drop(redis, why)
 * DESCRIPTION
 *	The connection's state machine of store_redis(3), which describes
 *	it: a name looked up on the loop (store_resolve(3)) and its
 *	addresses tried in turn, Sentinel's master followed, the handshake
 *	(AUTH, SELECT, ROLE, SCRIPT LOAD) before any call, the watchdog
 *	that drops a connection which stopped answering, and the retry
 *	every second after a failure. Split from store_redis.c (issue 18)
 *	along that seam; the request path stays there.
 * DIAGNOSTICS
 *	Connection states are logged once per change (store_redis_state()).
 */

#include "build_config.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <hiredis/adapters/libevent.h>

#include "msg.h"
#include "store_redis.h"

/* store_redis_addr - " (NAME is ADDRESS)" for state lines, or "" */

static const char *store_redis_addr(const struct store_redis *redis)
{
    static __thread char text[100];

    if (redis->addr[0] == 0)
	return ("");
    snprintf(text, sizeof(text), " (%.40s is %.46s)", redis->url.host, redis->addr);
    return (text);
}

/*
 * store_redis_state - log a connection state once, until it changes. A
 * connection that flaps (a server that closes at the first script, one
 * that closes at once) changed state every second: about 7,200 lines an
 * hour (helper-122). Past STORE_STATE_BURST lines in a minute the rest
 * are counted, and said in one line when the minute is over.
 */

#define STORE_STATE_RECENT	8	/* states logged lately, any worker's */
#define STORE_STATE_AGREE_MS	2000	/* another worker's same state: said */
#define STORE_STATE_BURST	6	/* state lines a minute, then counted */

static int store_redis_state_gate(const char *text)
{
    static long long minute_ms = -60000;
    static int said, held;
    static char last_held[200];
    long long now = store_redis_now_ms();

    if (now - minute_ms >= 60000) {
	if (held > 0)
	    msg_warn("redis: %d connection state lines not logged in the last minute (the "
		     "connection keeps changing state; the last: %s)", held, last_held);
	minute_ms = now;
	said = held = 0;
    }
    if (++said <= STORE_STATE_BURST)
	return (1);
    held++;
    snprintf(last_held, sizeof(last_held), "%s", text);
    return (0);
}

static void store_redis_state(struct store_redis *redis, int warning, const char *text)
{
    static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
    static char last[sizeof(redis->logged)];	/* by any worker's store */
    static struct {
	char    text[sizeof(redis->logged)];
	const struct store_redis *by;
	long long at_ms;
    } recent[STORE_STATE_RECENT];
    static int next;
    long long now = store_redis_now_ms();
    int     same;

    if (strcmp(redis->logged, text) == 0)
	return;
    snprintf(redis->logged, sizeof(redis->logged), "%s", text);
    /* every worker has a connection: one line when all see the same,
       also when their lines interleave ("master moved", "connected" by
       one, then "master moved" by the next) */
    pthread_mutex_lock(&lock);
    same = strcmp(last, redis->logged) == 0;
    for (int i = 0; i < STORE_STATE_RECENT && !same; i++)
	same = recent[i].by != redis && now - recent[i].at_ms < STORE_STATE_AGREE_MS
	    && strcmp(recent[i].text, redis->logged) == 0;
    if (!same) {
	snprintf(last, sizeof(last), "%s", redis->logged);
	snprintf(recent[next].text, sizeof(recent[next].text), "%s", redis->logged);
	recent[next].by = redis;
	recent[next].at_ms = now;
	next = (next + 1) % STORE_STATE_RECENT;
    }
    if (!same && !store_redis_state_gate(redis->logged))
	same = 1;				/* counted: said in a minute */
    pthread_mutex_unlock(&lock);
    if (same)
	return;
    if (warning)
	msg_warn("redis: %s (store %s)", text, redis->url.text);
    else
	msg_info("redis: %s (store %s)", text, redis->url.text);
}

/* store_redis_down - the connection is unusable: note why, retry in 1s */

void    store_redis_down(struct store_redis *redis, const char *why)
{
    struct timeval one = {1, 0};

    store_set_error(&redis->store, "%s", why);
    store_redis_state(redis, 1, why);
    store_redis_clock_end(redis);
    redis->connected = 0;
    redis->outstanding = 0;
    redis->sha[0] = 0;
    if (!evtimer_pending(redis->retry, NULL))
	evtimer_add(redis->retry, &one);
    if (redis->sentinel && !redis->moving)	/* has the master moved? */
	sentinel_ask(redis->sentinel);
}

/*
 * store_redis_drop - close the connection ourselves (stalled, refused
 * our credentials or database). Pending calls complete with an error
 * (hiredis calls them with no reply); new ones fail at once until the
 * reconnect. Safe inside a hiredis callback (the free is deferred).
 */

void    store_redis_drop(struct store_redis *redis, const char *why)
{
    redisAsyncContext *ctx = redis->ctx;

    redis->ctx = NULL;
    /* first: the pending calls, failed by the free, read why (an
       operator's ctl said "unavailable: connected", the state before) */
    store_redis_down(redis, why);
    if (ctx) {
	ctx->data = NULL;			/* no disconnect callback work */
	redisAsyncFree(ctx);
    }
}

/*
 * store_redis_bound_replies - CTX's reader refuses a reply of more than
 * STORE_REPLY_ELEMENTS_MAX elements at the array header that says so,
 * before it is read: hiredis then closes the connection ("out of
 * memory", which store_redis_errstr() puts right). BUDGET belongs to
 * the connection's owner and outlives it.
 */
static redisReplyObjectFunctions store_reply_fn;
static void *(*store_reply_array_default) (const redisReadTask *, int);
static pthread_mutex_t store_reply_lock = PTHREAD_MUTEX_INITIALIZER;

static void *store_reply_array(const redisReadTask *task, int elements)
{
    struct store_reply_budget *budget = task->privdata;

    if (task->parent == NULL)			/* a new reply */
	budget->elements = 0;
    budget->elements += elements > 0 ? elements : 0;
    if (budget->elements > STORE_REPLY_ELEMENTS_MAX) {
	budget->refused = 1;
	return (NULL);
    }
    return (store_reply_array_default(task, elements));
}

void    store_redis_bound_replies(redisAsyncContext *ctx, struct store_reply_budget *budget)
{
    pthread_mutex_lock(&store_reply_lock);
    if (store_reply_array_default == NULL) {	/* hiredis's own, wrapped */
	store_reply_fn = *ctx->c.reader->fn;
	store_reply_array_default = store_reply_fn.createArray;
	store_reply_fn.createArray = store_reply_array;
    }
    pthread_mutex_unlock(&store_reply_lock);
    budget->elements = 0;
    budget->refused = 0;
    ctx->c.reader->fn = &store_reply_fn;
    ctx->c.reader->privdata = budget;
}

/* store_redis_errstr - why CTX failed, in words an operator can use */

const char *store_redis_errstr(const redisAsyncContext *ctx,
			               const struct store_reply_budget *budget)
{
    static __thread char why[100];

    if (!budget->refused)
	return (ctx->errstr);
    snprintf(why, sizeof(why), "a reply of more than %d elements (refused)",
	     STORE_REPLY_ELEMENTS_MAX);
    return (why);
}

/* store_redis_fatal_reply - errors that only a new connection can cure */

int     store_redis_fatal_reply(const redisReply *reply)
{
    static const char *const prefixes[] = {"NOAUTH", "WRONGPASS", "NOPERM", "READONLY",
    0};

    for (int i = 0; prefixes[i]; i++)
	if (strncmp(reply->str, prefixes[i], strlen(prefixes[i])) == 0)
	    return (1);
    return (0);
}

/*
 * store_redis_refused - a command refused for good (store_redis_fatal_reply()):
 * drop the connection, and say the next "connected" only once a script
 * works. A user without EVAL, or a read-only replica, logged "connected"
 * and the refusal again every second: two state changes a second.
 */
void    store_redis_refused(struct store_redis *redis, const char *why)
{
    redis->quiet_connect = 1;
    store_redis_drop(redis, why);
}

/* store_redis_usable - a script worked: the "connected" held back is said */

void    store_redis_usable(struct store_redis *redis)
{
    redis->quiet_connect = 0;
    if (redis->connect_text[0])
	store_redis_state(redis, 0, redis->connect_text);
    redis->connect_text[0] = 0;
}

/* store_redis_is_master - ROLE's answer from a master: ["master", ...] */

static int store_redis_is_master(const redisReply *reply)
{
    return (reply->type == REDIS_REPLY_ARRAY && reply->elements > 0
	    && reply->element[0]->type == REDIS_REPLY_STRING
	    && strcmp(reply->element[0]->str, "master") == 0);
}

/*
 * store_redis_handshake_reply - AUTH, SELECT, ROLE (Sentinel) and SCRIPT LOAD, in that
 * order on a new connection. Any refusal drops the connection, so the
 * next attempt authenticates again (a password fixed on the server side
 * is picked up within a second); the last reply makes it usable.
 */

static void store_redis_handshake_reply(redisAsyncContext *ctx, void *r, void *privdata)
{
    struct store_redis *redis = ctx->data;
    const redisReply *reply = r;
    const char *step = privdata;
    char    why[300];

    if (redis == NULL || reply == NULL)		/* being freed */
	return;
    redis->outstanding--;
    redis->progress_ms = store_redis_now_ms();
    if (reply->type == REDIS_REPLY_ERROR || (strcmp(step, "SCRIPT LOAD") == 0
			&& (reply->type != REDIS_REPLY_STRING || reply->len >= sizeof(redis->sha)))) {
	snprintf(why, sizeof(why), "%s refused: %.150s", step,
		 reply->type == REDIS_REPLY_ERROR ? reply->str : "unexpected reply");
	store_redis_drop(redis, why);
	return;
    }
    if (strcmp(step, "ROLE") == 0 && !store_redis_is_master(reply)) {
	snprintf(why, sizeof(why), "%.100s:%d is not a master (ROLE %.20s); asking Sentinel again",
		 redis->url.host, redis->url.port, reply->type == REDIS_REPLY_ARRAY
		 && reply->elements > 0 && reply->element[0]->type == REDIS_REPLY_STRING
		 ? reply->element[0]->str : "answered something else");
	store_redis_drop(redis, why);
	return;
    }
    if (strcmp(step, "SCRIPT LOAD") != 0)
	return;
    snprintf(redis->sha, sizeof(redis->sha), "%s", reply->str);
    redis->connected = 1;
    redis->addrs.count = 0;			/* the next connect looks up again */
    if (redis->sentinel)
	snprintf(why, sizeof(why), "connected to master %.100s:%d%s", redis->url.host,
		 redis->url.port, store_redis_addr(redis));
    else
	snprintf(why, sizeof(why), "connected%s", store_redis_addr(redis));
    if (redis->quiet_connect)
	snprintf(redis->connect_text, sizeof(redis->connect_text), "%s", why);
    else
	store_redis_state(redis, 0, why);
}

static void store_redis_handshake(struct store_redis *redis, redisAsyncContext *ctx)
{
    char    db[16];
    const struct store_url *url = &redis->url;

    if (url->password[0] && url->user[0])
	redisAsyncCommand(ctx, store_redis_handshake_reply, "AUTH", "AUTH %s %s",
			  url->user, url->password);
    else if (url->password[0])
	redisAsyncCommand(ctx, store_redis_handshake_reply, "AUTH", "AUTH %s", url->password);
    if (url->db) {
	snprintf(db, sizeof(db), "%d", url->db);
	redisAsyncCommand(ctx, store_redis_handshake_reply, "SELECT", "SELECT %s", db);
    }
    /* Sentinel may still name a master that was demoted */
    if (url->sentinel)
	redisAsyncCommand(ctx, store_redis_handshake_reply, "ROLE", "ROLE");
    redisAsyncCommand(ctx, store_redis_handshake_reply, "SCRIPT LOAD", "SCRIPT LOAD %s",
		      store_redis_script);
    redis->outstanding = 1 + (url->password[0] != 0) + (url->db != 0) + url->sentinel;
    redis->progress_ms = store_redis_now_ms();
}

static void store_redis_on_connect(const redisAsyncContext *ctx, int status)
{
    struct store_redis *redis = ctx->data;
    char    why[300];

    if (redis == NULL)
	return;
    if (status != REDIS_OK) {
	snprintf(why, sizeof(why), "cannot connect: %.100s%s", ctx->errstr,
		 store_redis_addr(redis));
	redis->ctx = NULL;			/* hiredis frees it */
	store_redis_down(redis, why);
    }
}

static void store_redis_on_disconnect(const redisAsyncContext *ctx, int status)
{
    struct store_redis *redis = ctx->data;
    char    why[200];

    if (redis == NULL)
	return;
    snprintf(why, sizeof(why), "connection lost%s%.150s", status != REDIS_OK ? ": " : "",
	     status != REDIS_OK ? store_redis_errstr(ctx, &redis->budget) : "");
    redis->ctx = NULL;
    store_redis_down(redis, why);
}

/* store_redis_watchdog - drop a connection that stopped answering */

void    store_redis_watchdog(evutil_socket_t fd, short what, void *context)
{
    struct store_redis *redis = context;
    long long silent = store_redis_now_ms() - redis->progress_ms;
    char    why[200];

    if (redis->ctx == NULL || redis->outstanding <= 0 || silent < STORE_REDIS_STALL_MS)
	return;
    /* the time is not in the text: one line per stall, not per retry */
    snprintf(why, sizeof(why), "no answer for %d ms with commands outstanding; reconnecting",
	     STORE_REDIS_STALL_MS);
    store_redis_drop(redis, why);
}

/* store_redis_retry - a second after a failure; Sentinel is asked too */

void    store_redis_retry(evutil_socket_t fd, short what, void *context)
{
    struct store_redis *redis = context;

    if (redis->sentinel)
	sentinel_ask(redis->sentinel);
    if (redis->url.host[0] || redis->url.path[0])
	store_redis_connect(redis);
}

/*
 * store_redis_found - Sentinel named the master. A new address drops the
 * connection to the old one (its pending calls fail to on_store_error)
 * and connects at once; the same address changes nothing (the retry
 * timer reconnects, at most once a second).
 */
void    store_redis_found(void *context, const char *host, int port)
{
    struct store_redis *redis = context;
    char    why[400];

    if (strcmp(host, redis->url.host) == 0 && port == redis->url.port)
	return;
    snprintf(why, sizeof(why), "master moved to %.100s:%d", host, port);
    snprintf(redis->url.host, sizeof(redis->url.host), "%s", host);
    redis->url.port = port;
    resolve_cancel(&redis->lookup);		/* the old name's */
    redis->addrs.count = 0;
    redis->moving = 1;
    if (redis->ctx)
	store_redis_drop(redis, why);
    redis->moving = 0;
    evtimer_del(redis->retry);
    store_redis_connect(redis);
}

/*
 * store_redis_connect_to - hiredis gets a path or a numeric address only:
 * with a name it would call getaddrinfo(), which blocks the loop.
 */
static void store_redis_connect_to(struct store_redis *redis, const char *addr)
{
    redisAsyncContext *ctx;
    char    why[200];

    ctx = redis->url.path[0] ? redisAsyncConnectUnix(redis->url.path)
	: redisAsyncConnect(addr, redis->url.port);
    if (ctx == NULL || ctx->err) {
	snprintf(why, sizeof(why), "cannot connect: %.150s", ctx ? ctx->errstr : "out of memory");
	if (ctx)
	    redisAsyncFree(ctx);
	store_redis_down(redis, why);
	return;
    }
    ctx->data = redis;
    redis->ctx = ctx;
    store_redis_bound_replies(ctx, &redis->budget);
    redisLibeventAttach(ctx, redis->base);
    ctx->ev.addWrite = store_redis_add_write;	/* to know when TIME is written */
    ctx->ev.delWrite = store_redis_del_write;
    redisAsyncSetConnectCallback(ctx, store_redis_on_connect);
    redisAsyncSetDisconnectCallback(ctx, store_redis_on_disconnect);
    store_redis_handshake(redis, ctx);
}

/*
 * store_redis_resolved - the name's addresses, tried one per connect
 * (a dead one costs a retry, a second) until one works or all failed;
 * then, and after every connection that worked, the name is looked up
 * again, so a Service or host that moved is followed.
 */
static void store_redis_resolved(void *context, const struct resolve_result *result)
{
    struct store_redis *redis = context;
    char    why[200];

    redis->lookup = NULL;
    if (result->count == 0) {
	/* the same text each second: logged once, until it changes */
	snprintf(why, sizeof(why), "cannot resolve %.60s: %.120s", redis->url.host, result->why);
	store_redis_down(redis, why);
	return;
    }
    redis->addrs = *result;
    redis->addr_next = 0;
    store_redis_connect(redis);
}

/*
 * store_redis_connect - connect, or look the name up first. Meanwhile
 * (and when it fails) there is no connection: calls fail at once to
 * on_store_error, none waits for DNS.
 */
void    store_redis_connect(struct store_redis *redis)
{
    if (redis->ctx || redis->lookup)		/* connected, connecting, looking up */
	return;
    redis->addr[0] = 0;
    if (redis->url.path[0] || resolve_literal(redis->url.host)) {
	store_redis_connect_to(redis, redis->url.host);
    } else if (redis->addr_next < redis->addrs.count) {
	snprintf(redis->addr, sizeof(redis->addr), "%s", redis->addrs.addr[redis->addr_next++]);
	store_redis_connect_to(redis, redis->addr);
    } else {
	redis->addrs.count = 0;
	redis->lookup = resolve_start(redis->resolve, redis->url.host, store_redis_resolved, redis);
    }
}


/* hiredis's libevent write-event hooks, wrapped to see its writes */

void    store_redis_add_write(void *privdata)
{
    struct store_redis *redis = ((redisLibeventEvents *) privdata)->context->data;

    redisLibeventAddWrite(privdata);
    if (redis && !redis->queueing)		/* a write left some unwritten */
	store_redis_clock_end(redis);
}

void    store_redis_del_write(void *privdata)
{
    struct store_redis *redis = ((redisLibeventEvents *) privdata)->context->data;

    redisLibeventDelWrite(privdata);
    if (redis)					/* all written */
	store_redis_clock_end(redis);
}
