/*
 * NAME
 *	store_redis 3
 * SUMMARY
 *	GCRA state shared through Redis
 * SYNOPSIS
 *	#include "store.h"
 *
 *	struct store *store_redis_create(base, url, &err)
 *	int	store_redis_connected(store)
 * DESCRIPTION
 *	url is redis://[:PASSWORD@]HOST[:PORT][/DB] or
 *	redis+unix:///PATH[?db=DB].
 *
 *	All operations of one call run in one Lua script (EVALSHA, with
 *	EVAL when Redis answers NOSCRIPT), so a request's keys are checked
 *	and charged atomically across every MX node. The clock is Redis
 *	TIME, so nodes with skewed clocks agree. Every key gets a TTL
 *	equal to the time its state needs to return to "fresh", plus 1s.
 *	Keys look like "mxrl:{LIMIT:VALUE}:RATE": the hash tag keeps the
 *	rates of one limit and value in one Redis Cluster slot, but one
 *	call's script spans several limits, so the store is one server,
 *	not a cluster (a cluster would answer CROSSSLOT).
 *
 *	hiredis's libevent adapter drives the connection; commands are
 *	pipelined on it. When the connection fails or drops, pending
 *	calls complete with call->error set, new calls fail at once, and
 *	a timer reconnects every second. A Redis that accepts commands but
 *	stops answering (stopped, swapping, a dead network path) is caught
 *	by a watchdog: no reply for STORE_REDIS_STALL_MS while commands are
 *	outstanding drops the connection, so later requests fail fast to
 *	on_store_error instead of each waiting for its deadline.
 * DIAGNOSTICS
 *	store_redis_create() returns NULL and a static error for a bad URL.
 *	Connection problems are logged once per state change.
 */

#include "build_config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <hiredis/async.h>
#include <hiredis/hiredis.h>
#include <hiredis/adapters/libevent.h>

#include "msg.h"
#include "store.h"
#include "xalloc.h"

static const char store_redis_script[] =
"local t = redis.call('TIME')\n"
"local now = tonumber(t[1]) * 1000000 + tonumber(t[2])\n"
"local charge = tonumber(ARGV[1])\n"
"local res, new, blocked = {0}, {}, false\n"
"for i = 1, #KEYS do\n"
"  local b = 1 + (i - 1) * 4\n"
"  local interval, capacity = tonumber(ARGV[b + 1]), tonumber(ARGV[b + 2])\n"
"  local cost, advisory = tonumber(ARGV[b + 3]), ARGV[b + 4] == '1'\n"
"  local tat = tonumber(redis.call('GET', KEYS[i]) or '0')\n"
"  if tat < now then tat = now end\n"
"  local ntat = tat + cost * interval\n"
"  local fits = (ntat - now <= capacity)\n"
"  if fits then new[i] = ntat else new[i] = false end\n"
"  if not fits and not advisory then blocked = true end\n"
"  res[2 * i] = fits and 1 or 0\n"
"  res[2 * i + 1] = fits and 0 or math.ceil(ntat - now - capacity)\n"
"end\n"
"if charge == 1 and not blocked then\n"
"  for i = 1, #KEYS do\n"
"    if new[i] then\n"
"      redis.call('SET', KEYS[i], string.format('%.3f', new[i]), 'PX',\n"
"                 math.ceil((new[i] - now) / 1000) + 1000)\n"
"    end\n"
"  end\n"
"  res[1] = 1\n"
"end\n"
"return res\n";

struct store_redis {
    struct store store;
    struct event_base *base;
    redisAsyncContext *ctx;
    int     connected;
    int     was_up;			/* for logging state changes only */
    int     down_logged;
    char    host[260];
    int     port;
    char    path[256];
    char    password[256];
    int     db;
    char    sha[48];			/* from SCRIPT LOAD; empty: use EVAL */
    struct event *retry;
    struct event *watchdog;
    int     outstanding;		/* script calls without a reply */
    long long progress_ms;		/* last reply, or first outstanding */
};

#define STORE_REDIS_STALL_MS	1000

static long long store_redis_now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ((long long) ts.tv_sec * 1000 + ts.tv_nsec / 1000000);
}

/* One in-flight script call; owns the argv built for it. */
struct store_redis_req {
    struct store_redis *redis;
    struct store_call *call;
    int     argc;
    char  **argv;
    size_t *argvlen;
};

static void store_redis_connect(struct store_redis *redis);

static const char *store_redis_parse_url(struct store_redis *redis, const char *url)
{
    const char *cp, *at, *slash;
    char    hostport[256];

    if (strncmp(url, "redis+unix://", 13) == 0) {
	cp = url + 13;
	if (*cp != '/' || strlen(cp) >= sizeof(redis->path))
	    return ("redis+unix:// needs an absolute socket path");
	snprintf(redis->path, sizeof(redis->path), "%s", cp);
	if ((at = strstr(redis->path, "?db=")) != NULL) {
	    redis->db = atoi(at + 4);
	    *(char *) at = 0;
	}
	return (NULL);
    }
    if (strncmp(url, "redis://", 8) != 0)
	return ("store must be memory, redis://HOST:PORT/DB or redis+unix:///PATH");
    cp = url + 8;
    if ((at = strchr(cp, '@')) != NULL) {
	if (*cp != ':' || (size_t) (at - cp - 1) >= sizeof(redis->password))
	    return ("redis:// password must be written as redis://:PASSWORD@HOST");
	memcpy(redis->password, cp + 1, at - cp - 1);
	cp = at + 1;
    }
    slash = strchr(cp, '/');
    snprintf(hostport, sizeof(hostport), "%.*s", slash ? (int) (slash - cp) : (int) strlen(cp), cp);
    if (slash && slash[1])
	redis->db = atoi(slash + 1);
    redis->port = 6379;
    if (strchr(hostport, ':')) {
	redis->port = atoi(strchr(hostport, ':') + 1);
	*strchr(hostport, ':') = 0;
    }
    if (!*hostport || redis->port <= 0 || redis->port > 65535)
	return ("bad redis:// host or port");
    snprintf(redis->host, sizeof(redis->host), "%s", hostport);
    return (NULL);
}

static void store_redis_req_free(struct store_redis_req *req)
{
    for (int i = 0; i < req->argc; i++)
	free(req->argv[i]);
    free(req->argv);
    free(req->argvlen);
    free(req);
}

/* store_redis_complete - hand the result to the caller, or drop it */

static void store_redis_complete(struct store_call *call, int error)
{
    call->error = error;
    if (call->abandoned)
	store_call_free(&call);
    else
	call->done(call);
}

static int store_redis_parse_reply(struct store_call *call, const redisReply *reply)
{
    if (reply == NULL || reply->type != REDIS_REPLY_ARRAY
	|| reply->elements != (size_t) (1 + 2 * call->count))
	return (0);
    for (size_t i = 0; i < reply->elements; i++)
	if (reply->element[i]->type != REDIS_REPLY_INTEGER)
	    return (0);
    call->charged = reply->element[0]->integer == 1;
    for (int i = 0; i < call->count; i++) {
	call->ops[i].allowed = reply->element[1 + 2 * i]->integer == 1;
	call->ops[i].retry_after = (double) reply->element[2 + 2 * i]->integer;
    }
    return (1);
}

static void store_redis_send(struct store_redis_req *req, int use_sha);

static void store_redis_reply(redisAsyncContext *ctx, void *r, void *privdata)
{
    struct store_redis_req *req = privdata;
    const redisReply *reply = r;

    req->redis->outstanding--;
    req->redis->progress_ms = store_redis_now_ms();
    if (reply && reply->type == REDIS_REPLY_ERROR && strncmp(reply->str, "NOSCRIPT", 8) == 0
	&& req->redis->connected) {
	req->redis->sha[0] = 0;
	store_redis_send(req, 0);		/* once more, with the script text */
	return;
    }
    if (reply && reply->type == REDIS_REPLY_ERROR)
	msg_warn("redis: script error: %s", reply->str);
    store_redis_complete(req->call, !store_redis_parse_reply(req->call, reply));
    store_redis_req_free(req);
}

static void store_redis_send(struct store_redis_req *req, int use_sha)
{
    struct store_redis *redis = req->redis;

    free(req->argv[0]);
    free(req->argv[1]);
    req->argv[0] = xstrdup(use_sha ? "EVALSHA" : "EVAL");
    req->argv[1] = xstrdup(use_sha ? redis->sha : store_redis_script);
    req->argvlen[0] = strlen(req->argv[0]);
    req->argvlen[1] = strlen(req->argv[1]);
    if (redisAsyncCommandArgv(redis->ctx, store_redis_reply, req, req->argc,
			      (const char **) req->argv, req->argvlen) != REDIS_OK) {
	store_redis_complete(req->call, 1);
	store_redis_req_free(req);
	return;
    }
    if (redis->outstanding++ == 0)
	redis->progress_ms = store_redis_now_ms();
}

static void store_redis_submit(struct store *store, struct store_call *call)
{
    struct store_redis *redis = (struct store_redis *) store;
    struct store_redis_req *req;
    int     n = call->count, a = 0;

    if (redis->ctx == NULL || !redis->connected) {
	store_redis_complete(call, 1);
	return;
    }
    req = xcalloc(1, sizeof(*req));
    req->redis = redis;
    req->call = call;
    req->argc = 4 + n + 4 * n;
    req->argv = xcalloc(req->argc, sizeof(char *));
    req->argvlen = xcalloc(req->argc, sizeof(size_t));
    a = 2;
    req->argv[a++] = xasprintf("%d", n);
    for (int i = 0; i < n; i++)
	req->argv[a++] = xstrdup(call->ops[i].key);
    req->argv[a++] = xstrdup(call->charge ? "1" : "0");
    for (int i = 0; i < n; i++) {
	req->argv[a++] = xasprintf("%.6f", call->ops[i].interval);
	req->argv[a++] = xasprintf("%.3f", call->ops[i].capacity);
	req->argv[a++] = xasprintf("%.0f", call->ops[i].cost);
	req->argv[a++] = xstrdup(call->ops[i].advisory ? "1" : "0");
    }
    for (int i = 2; i < req->argc; i++)
	req->argvlen[i] = strlen(req->argv[i]);
    store_redis_send(req, redis->sha[0] != 0);
}

static void store_redis_loaded(redisAsyncContext *ctx, void *r, void *privdata)
{
    struct store_redis *redis = privdata;
    const redisReply *reply = r;

    if (reply && reply->type == REDIS_REPLY_STRING && reply->len < sizeof(redis->sha))
	snprintf(redis->sha, sizeof(redis->sha), "%s", reply->str);
}

static void store_redis_ignore(redisAsyncContext *ctx, void *r, void *privdata)
{
    const redisReply *reply = r;

    if (reply && reply->type == REDIS_REPLY_ERROR)
	msg_warn("redis: %s: %s", (const char *) privdata, reply->str);
}

static void store_redis_on_connect(const redisAsyncContext *ctx, int status)
{
    struct store_redis *redis = ctx->data;
    struct timeval one = {1, 0};

    if (status != REDIS_OK) {
	if (!redis->down_logged)
	    msg_warn("redis: cannot connect: %s", ctx->errstr);
	redis->down_logged = 1;
	redis->was_up = 0;
	redis->ctx = NULL;		/* hiredis frees it */
	redis->connected = 0;
	evtimer_add(redis->retry, &one);
	return;
    }
    redis->connected = 1;
    if (!redis->was_up)
	msg_info("redis: connected");
    redis->was_up = 1;
    redis->down_logged = 0;
}

static void store_redis_on_disconnect(const redisAsyncContext *ctx, int status)
{
    struct store_redis *redis = ctx->data;
    struct timeval one = {1, 0};

    if (redis == NULL)
	return;
    if (redis->connected)
	msg_warn("redis: connection lost%s%s", status != REDIS_OK ? ": " : "",
		 status != REDIS_OK ? ctx->errstr : "");
    redis->ctx = NULL;
    redis->connected = 0;
    redis->was_up = 0;
    redis->outstanding = 0;
    redis->sha[0] = 0;
    evtimer_add(redis->retry, &one);
}

/* store_redis_watchdog - drop a connection that stopped answering */

static void store_redis_watchdog(evutil_socket_t fd, short what, void *context)
{
    struct store_redis *redis = context;
    long long silent = store_redis_now_ms() - redis->progress_ms;
    struct timeval one = {1, 0};
    redisAsyncContext *ctx = redis->ctx;

    if (redis->ctx == NULL || redis->outstanding <= 0 || silent < STORE_REDIS_STALL_MS)
	return;
    msg_warn("redis: no answer for %lld ms with %d commands outstanding; reconnecting",
	     silent, redis->outstanding);
    redis->connected = 0;
    redis->was_up = 0;
    redis->ctx = NULL;
    ctx->data = NULL;			/* no disconnect callback work */
    redisAsyncFree(ctx);		/* fails the pending calls */
    redis->outstanding = 0;
    redis->sha[0] = 0;
    evtimer_add(redis->retry, &one);
}

static void store_redis_retry(evutil_socket_t fd, short what, void *context)
{
    store_redis_connect(context);
}

static void store_redis_connect(struct store_redis *redis)
{
    redisAsyncContext *ctx;
    char    db[16];

    ctx = redis->path[0] ? redisAsyncConnectUnix(redis->path)
	: redisAsyncConnect(redis->host, redis->port);
    if (ctx == NULL || ctx->err) {
	struct timeval one = {1, 0};

	if (!redis->down_logged)
	    msg_warn("redis: cannot connect: %s", ctx ? ctx->errstr : "out of memory");
	redis->down_logged = 1;
	redis->was_up = 0;
	if (ctx)
	    redisAsyncFree(ctx);
	evtimer_add(redis->retry, &one);
	return;
    }
    ctx->data = redis;
    redis->ctx = ctx;
    redisLibeventAttach(ctx, redis->base);
    redisAsyncSetConnectCallback(ctx, store_redis_on_connect);
    redisAsyncSetDisconnectCallback(ctx, store_redis_on_disconnect);
    if (redis->password[0])
	redisAsyncCommand(ctx, store_redis_ignore, "AUTH", "AUTH %s", redis->password);
    if (redis->db) {
	snprintf(db, sizeof(db), "%d", redis->db);
	redisAsyncCommand(ctx, store_redis_ignore, "SELECT", "SELECT %s", db);
    }
    redisAsyncCommand(ctx, store_redis_loaded, redis, "SCRIPT LOAD %s", store_redis_script);
}

int     store_redis_connected(const struct store *store)
{
    return (((const struct store_redis *) store)->connected);
}

static void store_redis_destroy(struct store *store)
{
    struct store_redis *redis = (struct store_redis *) store;

    if (redis->ctx) {
	redis->ctx->data = NULL;
	redisAsyncFree(redis->ctx);
    }
    event_free(redis->retry);
    event_free(redis->watchdog);
    free(redis);
}

struct store *store_redis_create(struct event_base *base, const char *url, const char **err)
{
    struct store_redis *redis = xcalloc(1, sizeof(*redis));
    struct timeval quarter = {0, 250000};

    if ((*err = store_redis_parse_url(redis, url)) != NULL) {
	free(redis);
	return (NULL);
    }
    redis->store.kind = "redis";
    redis->store.submit = store_redis_submit;
    redis->store.destroy = store_redis_destroy;
    redis->base = base;
    redis->retry = evtimer_new(base, store_redis_retry, redis);
    redis->watchdog = event_new(base, -1, EV_PERSIST, store_redis_watchdog, redis);
    event_add(redis->watchdog, &quarter);
    store_redis_connect(redis);
    return (&redis->store);
}
