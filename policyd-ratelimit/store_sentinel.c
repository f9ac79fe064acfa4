/*
 * NAME
 *	store_sentinel 3
 * SUMMARY
 *	find the Redis master through Redis Sentinel
 * SYNOPSIS
 *	#include "store_sentinel.h"
 *
 *	struct sentinel *sentinel_create(base, url, resolve, found, context)
 *	void	sentinel_ask(sentinel)
 *	void	sentinel_free(&sentinel)
 * DESCRIPTION
 *	The Sentinels are url.sentinels, the master's name url.master,
 *	Sentinel's own password (if any) url.sentinel_password. found()
 *	is called with the master's address whenever one is learnt; what
 *	to do with it is store_redis(3)'s business. Nothing here ever
 *	blocks, and no policy request waits for it: until a master is
 *	known, requests go to on_store_error at once.
 *
 *	A Sentinel given by name is looked up with store_resolve(3) (its
 *	lookup counts in its SENTINEL_ANSWER_MS); successive rounds take
 *	the name's addresses in turn.
 *
 *	sentinel_ask() asks "SENTINEL get-master-addr-by-name" of the
 *	Sentinels in turn, starting with the one that answered last,
 *	until one gives a well-formed address; a Sentinel that cannot be
 *	reached, refuses the password, does not know the name, answers
 *	garbage or nothing within SENTINEL_ANSWER_MS is skipped. A round
 *	that no Sentinel answers is logged (once, until that changes);
 *	the caller asks again (store_redis asks on every connection
 *	failure and then once a second). While no master has been named
 *	yet, a failed round is followed by another a second later, here:
 *	the caller's retry follows a failed connection to a master, and
 *	with none known there is none (a daemon started while every
 *	Sentinel was down, or before they monitored the master, asked
 *	once and never again: all mail deferred until a restart). While
 *	one round is under way, sentinel_ask() does nothing.
 *
 *	A second connection stays subscribed to "+switch-master" on one
 *	Sentinel, so a failover is followed as soon as Sentinel announces
 *	it; when that connection drops, another Sentinel is subscribed a
 *	second later, and the master asked for again (a switch may have
 *	been missed meanwhile). Each switch followed drops the connection
 *	(requests go to on_store_error) and logs, so switches that come
 *	faster than SENTINEL_SWITCH_MS apart (a Sentinel flapping, or a
 *	hostile one) are held back and the latest followed when the hold
 *	ends; the hold doubles with each one followed that way, up to
 *	SENTINEL_SWITCH_MAX_MS, and is back to SENTINEL_SWITCH_MS once a
 *	switch comes after it. Said once per burst.
 * DIAGNOSTICS
 *	"sentinel: ..." lines, once per change of state. Sentinel's
 *	password is never printed.
 */

#include "build_config.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <hiredis/async.h>
#include <hiredis/hiredis.h>
#include <hiredis/adapters/libevent.h>

#include "daemon.h"
#include "msg.h"
#include "store_redis.h"
#include "store_resolve.h"
#include "store_sentinel.h"
#include "xalloc.h"

#define SENTINEL_ANSWER_MS	500	/* per Sentinel, per question */
#define SENTINEL_SWITCH_MS	1000	/* +switch-master followed, at most */
#define SENTINEL_SWITCH_MAX_MS	64000	/* the hold, doubled while flapping */

struct sentinel {
    struct event_base *base;
    const struct store_url *url;	/* the store's: lives longer */
    struct resolve *resolve;		/* the store's: Sentinels' names */
    unsigned rotate;			/* which of a name's addresses */
    sentinel_found_fn found;
    void   *context;
    /* the question round */
    redisAsyncContext *query;
    struct store_reply_budget query_budget;
    int     query_index;		/* the Sentinel asked */
    int     next;			/* the Sentinel to ask first */
    int     tried;			/* in this round */
    int     asking;			/* a round is under way */
    struct resolve_req *query_lookup;	/* the asked Sentinel's name */
    char    why[500];			/* the latest Sentinel's failure */
    struct event *timeout;
    struct event *step;			/* next Sentinel, outside hiredis */
    struct event *again;		/* no master known yet: ask in 1 s */
    int     known;			/* a master was named once */
    /* the +switch-master subscription */
    redisAsyncContext *watch;
    struct store_reply_budget watch_budget;
    struct resolve_req *watch_lookup;
    int     watch_index;
    struct event *watch_retry;
    char    logged[300];		/* the master's address, or why not */
    char    logged_watch[300];		/* the subscription's trouble */
    /* +switch-master, followed at most once every SENTINEL_SWITCH_MS */
    long long switched_ms;		/* the last one followed */
    long long switch_hold_ms;		/* the next not before switched_ms + it */
    struct event *switch_later;		/* the latest, held back */
    char    switch_host[256];
    int     switch_port;
};

static void sentinel_next(struct sentinel *s);

/* sentinel_state - log a state once, until it changes */

static void sentinel_state(char *logged, int warning, const char *fmt,...)
	__attribute__((format(printf, 3, 4)));

static void sentinel_state(char *logged, int warning, const char *fmt,...)
{
    static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
    static char last[300];			/* by any worker's */
    char    text[300];
    va_list ap;
    int     same;

    va_start(ap, fmt);
    vsnprintf(text, sizeof(text), fmt, ap);
    va_end(ap);
    if (strcmp(text, logged) == 0)
	return;
    snprintf(logged, 300, "%s", text);
    /* every worker asks: one line when all learn the same */
    pthread_mutex_lock(&lock);
    if (!(same = strcmp(last, text) == 0))
	snprintf(last, sizeof(last), "%s", text);
    pthread_mutex_unlock(&lock);
    if (same)
	return;
    if (warning)
	msg_warn("sentinel: %s", text);
    else
	msg_info("sentinel: %s", text);
}

static const struct store_host *sentinel_host(const struct sentinel *s, int i)
{
    return (s->url->sentinels + i);
}

/* sentinel_close - forget a connection; safe inside its callbacks */

static void sentinel_close(redisAsyncContext **ctxp)
{
    redisAsyncContext *ctx = *ctxp;

    *ctxp = NULL;
    if (ctx) {
	ctx->data = NULL;			/* its callbacks now do nothing */
	redisAsyncFree(ctx);
    }
}

static void sentinel_failed(struct sentinel *s, const char *fmt,...)
	__attribute__((format(printf, 2, 3)));
static void sentinel_watch_failed(struct sentinel *s, const char *why);

/* sentinel_auth - Sentinel refused its password: say so, not "NOAUTH" */

static void sentinel_auth(redisAsyncContext *ctx, void *r, void *privdata)
{
    struct sentinel *s = privdata;
    const redisReply *reply = r;
    char    why[150];

    if (ctx->data != s || reply == NULL || reply->type != REDIS_REPLY_ERROR)
	return;
    snprintf(why, sizeof(why), "AUTH refused: %.100s", reply->str);
    if (ctx == s->query)
	sentinel_failed(s, "%s", why);
    else if (ctx == s->watch)
	sentinel_watch_failed(s, why);
}

/*
 * sentinel_open - a connection to Sentinel i at addr (numeric: its host,
 * or what its name was resolved to), authenticated if need be.
 */
static redisAsyncContext *sentinel_open(struct sentinel *s, int i, const char *addr,
				        struct store_reply_budget *budget,
				        redisConnectCallback *on_connect,
			              redisDisconnectCallback *on_disconnect)
{
    const struct store_host *h = sentinel_host(s, i);
    redisAsyncContext *ctx = redisAsyncConnect(addr, h->port);

    if (ctx == NULL || ctx->err) {
	snprintf(s->why, sizeof(s->why), "%s:%d: cannot connect: %.100s", h->host, h->port,
		 ctx ? ctx->errstr : "out of memory");
	if (ctx)
	    redisAsyncFree(ctx);
	return (NULL);
    }
    ctx->data = s;
    store_redis_bound_replies(ctx, budget);
    redisLibeventAttach(ctx, s->base);
    redisAsyncSetConnectCallback(ctx, on_connect);
    redisAsyncSetDisconnectCallback(ctx, on_disconnect);
    if (s->url->sentinel_password[0])
	redisAsyncCommand(ctx, sentinel_auth, s, "AUTH %s", s->url->sentinel_password);
    return (ctx);
}

/* sentinel_failed - this Sentinel did not answer: try the next one */

static void sentinel_failed(struct sentinel *s, const char *fmt,...)
{
    const struct store_host *h = sentinel_host(s, s->query_index);
    char    why[150];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(why, sizeof(why), fmt, ap);
    va_end(ap);
    snprintf(s->why, sizeof(s->why), "%s:%d: %s", h->host, h->port, why);
    sentinel_close(&s->query);
    resolve_cancel(&s->query_lookup);
    evtimer_del(s->timeout);
    event_active(s->step, 0, 0);		/* not inside a hiredis callback */
}

/* sentinel_address - a well-formed "get-master-addr-by-name" answer */

static int sentinel_address(const redisReply *r, char *host, size_t hsize, int *port)
{
    char   *end;
    long    p;

    if (r->type != REDIS_REPLY_ARRAY || r->elements != 2
	|| r->element[0]->type != REDIS_REPLY_STRING
	|| r->element[1]->type != REDIS_REPLY_STRING)
	return (0);
    if (r->element[0]->len == 0 || r->element[0]->len >= hsize
	|| strcspn(r->element[0]->str, " \t\r\n/,") != r->element[0]->len)
	return (0);
    p = strtol(r->element[1]->str, &end, 10);
    if (*end || end == r->element[1]->str || p < 1 || p > 65535)
	return (0);
    memcpy(host, r->element[0]->str, r->element[0]->len + 1);
    *port = (int) p;
    return (1);
}

static void sentinel_answer(redisAsyncContext *ctx, void *r, void *privdata)
{
    struct sentinel *s = privdata;
    const redisReply *reply = r;
    char    host[256];
    int     port;

    if (ctx->data != s || ctx != s->query)	/* dropped meanwhile */
	return;
    if (reply == NULL) {
	sentinel_failed(s, "connection lost%s%.100s", ctx->err ? ": " : "",
			ctx->err ? store_redis_errstr(ctx, &s->query_budget) : "");
	return;
    }
    if (reply->type == REDIS_REPLY_NIL) {
	sentinel_failed(s, "does not know master \"%s\"", s->url->master);
	return;
    }
    if (reply->type == REDIS_REPLY_ERROR) {
	sentinel_failed(s, "%.100s", reply->str);
	return;
    }
    if (!sentinel_address(reply, host, sizeof(host), &port)) {
	sentinel_failed(s, "unexpected answer (type %d)", reply->type);
	return;
    }
    s->next = s->query_index;			/* ask it first next time */
    s->asking = 0;
    s->known = 1;
    sentinel_close(&s->query);
    evtimer_del(s->timeout);
    sentinel_state(s->logged, 0, "master \"%s\" is %s:%d (from %s:%d)", s->url->master, host, port,
		   sentinel_host(s, s->next)->host, sentinel_host(s, s->next)->port);
    if (s->watch == NULL && s->watch_lookup == NULL && !evtimer_pending(s->watch_retry, NULL)) {
	s->watch_index = s->next;
	event_active(s->watch_retry, 0, 0);
    }
    s->found(s->context, host, port);
}

static void sentinel_query_connected(const redisAsyncContext *ctx, int status)
{
    struct sentinel *s = ctx->data;

    if (s == NULL || ctx != s->query || status == REDIS_OK)
	return;
    s->query = NULL;				/* hiredis frees it */
    ((redisAsyncContext *) ctx)->data = NULL;
    sentinel_failed(s, "cannot connect: %.100s", ctx->errstr);
}

static void sentinel_query_lost(const redisAsyncContext *ctx, int status)
{
    struct sentinel *s = ctx->data;

    if (s == NULL || ctx != s->query)
	return;
    s->query = NULL;				/* hiredis frees it */
    ((redisAsyncContext *) ctx)->data = NULL;
    sentinel_failed(s, "connection lost%s%.100s", status != REDIS_OK ? ": " : "",
		    status != REDIS_OK ? store_redis_errstr(ctx, &s->query_budget) : "");
}

static void sentinel_timeout(evutil_socket_t fd, short what, void *context)
{
    sentinel_failed(context, "no answer within %d ms", SENTINEL_ANSWER_MS);
}

/* sentinel_query - ask the Sentinel at addr; 0 if it cannot be tried */

static int sentinel_query(struct sentinel *s, const char *addr)
{
    if ((s->query = sentinel_open(s, s->query_index, addr, &s->query_budget,
				  sentinel_query_connected,
				  sentinel_query_lost)) == NULL)
	return (0);
    redisAsyncCommand(s->query, sentinel_answer, s, "SENTINEL get-master-addr-by-name %s",
		      s->url->master);
    return (1);
}

/*
 * sentinel_query_resolved - the asked Sentinel's name (within the same
 * SENTINEL_ANSWER_MS as its answer). Rounds take a name's addresses in
 * turn: a Service naming several Sentinels reaches each of them.
 */
static void sentinel_query_resolved(void *context, const struct resolve_result *result)
{
    struct sentinel *s = context;

    s->query_lookup = NULL;
    if (result->count == 0)
	sentinel_failed(s, "cannot resolve: %s", result->why);
    else if (!sentinel_query(s, result->addr[s->rotate++ % result->count]))
	sentinel_failed(s, "cannot connect");
}

/* sentinel_next - ask the next Sentinel of this round, or give up */

static void sentinel_next(struct sentinel *s)
{
    struct timeval answer = {0, SENTINEL_ANSWER_MS * 1000};
    const struct store_host *h;

    while (s->tried < s->url->nsentinels) {
	s->query_index = (s->next + s->tried++) % s->url->nsentinels;
	h = sentinel_host(s, s->query_index);
	if (!resolve_literal(h->host)) {	/* never getaddrinfo() on the loop */
	    s->query_lookup = resolve_start(s->resolve, h->host, sentinel_query_resolved, s);
	    evtimer_add(s->timeout, &answer);
	    return;
	}
	if (!sentinel_query(s, h->host))
	    continue;
	evtimer_add(s->timeout, &answer);
	return;
    }
    s->asking = 0;
    sentinel_state(s->logged, 1, "no Sentinel gave the address of master \"%s\" (last: %s)",
		   s->url->master, s->why);
    if (!s->known) {
	struct timeval one = {1, 0};

	evtimer_add(s->again, &one);
    }
}

static void sentinel_ask_again(evutil_socket_t fd, short what, void *context)
{
    sentinel_ask(context);
}

static void sentinel_step(evutil_socket_t fd, short what, void *context)
{
    sentinel_next(context);
}

void    sentinel_ask(struct sentinel *s)
{
    if (s->asking)
	return;
    s->asking = 1;
    s->tried = 0;
    sentinel_next(s);
}

/* sentinel_switch - follow the latest +switch-master (now, or held back) */

static void sentinel_switch(evutil_socket_t fd, short what, void *context)
{
    struct sentinel *s = context;

    if (what & EV_TIMEOUT)			/* held back: hold longer next */
	s->switch_hold_ms = s->switch_hold_ms * 2 > SENTINEL_SWITCH_MAX_MS
	    ? SENTINEL_SWITCH_MAX_MS : s->switch_hold_ms * 2;
    s->switched_ms = daemon_mono_ms();
    sentinel_state(s->logged, 0, "+switch-master: master \"%s\" is now %s:%d", s->url->master,
		   s->switch_host, s->switch_port);
    s->found(s->context, s->switch_host, s->switch_port);
}

/*
 * sentinel_message - "+switch-master NAME OLDIP OLDPORT NEWIP NEWPORT".
 * Any other message, or one for another master, is ignored.
 */
static void sentinel_message(redisAsyncContext *ctx, void *r, void *privdata)
{
    struct sentinel *s = privdata;
    const redisReply *reply = r;
    char    name[128], host[256];
    int     port;
    long long left;

    if (ctx->data != s || ctx != s->watch || reply == NULL)
	return;
    if (reply->type == REDIS_REPLY_ERROR) {
	sentinel_watch_failed(s, reply->str);
	return;
    }
    if (reply->type == REDIS_REPLY_ARRAY && reply->elements == 3
	&& reply->element[0]->type == REDIS_REPLY_STRING
	&& strcmp(reply->element[0]->str, "subscribe") == 0)
	sentinel_state(s->logged_watch, 0, "watching %s:%d for +switch-master",
		       sentinel_host(s, s->watch_index)->host,
		       sentinel_host(s, s->watch_index)->port);
    if (reply->type != REDIS_REPLY_ARRAY || reply->elements != 3
	|| reply->element[0]->type != REDIS_REPLY_STRING
	|| strcmp(reply->element[0]->str, "message") != 0
	|| reply->element[2]->type != REDIS_REPLY_STRING)
	return;
    if (sscanf(reply->element[2]->str, "%127s %*s %*s %255s %d", name, host, &port) != 3
	|| strcmp(name, s->url->master) != 0 || port < 1 || port > 65535)
	return;
    s->logged_watch[0] = 0;
    snprintf(s->switch_host, sizeof(s->switch_host), "%s", host);
    s->switch_port = port;
    if (evtimer_pending(s->switch_later, NULL))
	return;					/* the latest is followed then */
    if ((left = s->switched_ms + s->switch_hold_ms - daemon_mono_ms()) > 0) {
	struct timeval tv = {left / 1000, (left % 1000) * 1000};

	if (s->switch_hold_ms == SENTINEL_SWITCH_MS)
	    msg_warn("sentinel: +switch-master for master \"%s\" again within %d ms; "
		     "following the latest when %d ms have passed (longer while it goes on)",
		     name, SENTINEL_SWITCH_MS, SENTINEL_SWITCH_MS);
	evtimer_add(s->switch_later, &tv);
	return;
    }
    s->switch_hold_ms = SENTINEL_SWITCH_MS;
    sentinel_switch(-1, 0, s);
}

/*
 * sentinel_watch_failed - the subscription is gone (or refused): the next
 * Sentinel in a second; meanwhile ask, as a switch may pass unseen.
 */
static void sentinel_watch_failed(struct sentinel *s, const char *why)
{
    struct timeval one = {1, 0};

    sentinel_close(&s->watch);
    resolve_cancel(&s->watch_lookup);
    if (why)
	sentinel_state(s->logged_watch, 1, "cannot watch for +switch-master: %.100s "
		       "(the master is asked for after errors only)", why);
    s->watch_index = (s->watch_index + 1) % s->url->nsentinels;
    evtimer_add(s->watch_retry, &one);
    sentinel_ask(s);
}

static void sentinel_watch_connected(const redisAsyncContext *ctx, int status)
{
    struct sentinel *s = ctx->data;

    if (s == NULL || ctx != s->watch || status == REDIS_OK)
	return;
    s->watch = NULL;				/* hiredis frees it */
    ((redisAsyncContext *) ctx)->data = NULL;
    sentinel_watch_failed(s, ctx->errstr);
}

static void sentinel_watch_lost(const redisAsyncContext *ctx, int status)
{
    struct sentinel *s = ctx->data;

    if (s == NULL || ctx != s->watch)
	return;
    s->watch = NULL;				/* hiredis frees it */
    ((redisAsyncContext *) ctx)->data = NULL;
    sentinel_watch_failed(s, status != REDIS_OK ? store_redis_errstr(ctx, &s->watch_budget)
			  : "connection closed");
}

static void sentinel_watch_open(struct sentinel *s, const char *addr)
{
    if ((s->watch = sentinel_open(s, s->watch_index, addr, &s->watch_budget,
				  sentinel_watch_connected,
				  sentinel_watch_lost)) == NULL) {
	sentinel_watch_failed(s, "cannot connect");
	return;
    }
    redisAsyncCommand(s->watch, sentinel_message, s, "SUBSCRIBE +switch-master");
}

static void sentinel_watch_resolved(void *context, const struct resolve_result *result)
{
    struct sentinel *s = context;
    char    why[200];

    s->watch_lookup = NULL;
    if (result->count == 0) {
	snprintf(why, sizeof(why), "cannot resolve %.60s: %.120s",
		 sentinel_host(s, s->watch_index)->host, result->why);
	sentinel_watch_failed(s, why);
    } else
	sentinel_watch_open(s, result->addr[s->rotate++ % result->count]);
}

static void sentinel_watch(struct sentinel *s)
{
    const char *host = sentinel_host(s, s->watch_index)->host;

    if (s->watch || s->watch_lookup)
	return;
    if (resolve_literal(host))
	sentinel_watch_open(s, host);
    else
	s->watch_lookup = resolve_start(s->resolve, host, sentinel_watch_resolved, s);
}

static void sentinel_watch_again(evutil_socket_t fd, short what, void *context)
{
    sentinel_watch(context);
}

struct sentinel *sentinel_create(struct event_base *base, const struct store_url *url,
			                 struct resolve *resolve, sentinel_found_fn found,
				         void *context)
{
    struct sentinel *s = xcalloc(1, sizeof(*s));

    s->base = base;
    s->url = url;
    s->resolve = resolve;
    s->found = found;
    s->context = context;
    s->timeout = evtimer_new(base, sentinel_timeout, s);
    s->step = event_new(base, -1, 0, sentinel_step, s);
    s->again = evtimer_new(base, sentinel_ask_again, s);
    s->watch_retry = evtimer_new(base, sentinel_watch_again, s);
    s->switch_later = evtimer_new(base, sentinel_switch, s);
    s->switch_hold_ms = SENTINEL_SWITCH_MS;
    return (s);
}

void    sentinel_free(struct sentinel **sp)
{
    struct sentinel *s = *sp;

    if (s == NULL)
	return;
    *sp = NULL;
    sentinel_close(&s->query);
    sentinel_close(&s->watch);
    resolve_cancel(&s->query_lookup);
    resolve_cancel(&s->watch_lookup);
    event_free(s->timeout);
    event_free(s->step);
    event_free(s->again);
    event_free(s->watch_retry);
    event_free(s->switch_later);
    free(s);
}
