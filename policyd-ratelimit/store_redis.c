/*
 * NAME
 *	store_redis 3
 * SUMMARY
 *	GCRA state shared through Redis
 * SYNOPSIS
 *	#include "store.h"
 *
 *	struct store *store_redis_create(base, url)
 *	int	store_redis_connected(store)
 * DESCRIPTION
 *	url comes from store_url_parse() (the configuration); only its
 *	text, with the password masked, is ever printed.
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
 *	pipelined on it. A new connection is usable only after its
 *	handshake (AUTH, SELECT, SCRIPT LOAD) succeeded; a refusal of any
 *	of them (wrong password, database out of range) drops it, as does
 *	a script answered NOAUTH, WRONGPASS, NOPERM or READONLY: a
 *	connection is never kept in a state only a new one can cure. When
 *	the connection fails, drops or is dropped, pending calls complete
 *	with call->error set, new calls fail at once, and a timer
 *	reconnects (and authenticates again) every second, so a password
 *	fixed on the server is picked up within a second or two. A Redis
 *	that accepts commands but stops answering (stopped, swapping, a
 *	dead network path) is caught by a watchdog: no reply for
 *	STORE_REDIS_STALL_MS while commands (or the handshake) are
 *	outstanding drops the connection, so later requests fail fast to
 *	on_store_error instead of each waiting for its deadline.
 *
 *	A host name (url.host, or a master's name from Sentinel) is looked
 *	up with store_resolve(3) on the loop, never by hiredis (whose
 *	getaddrinfo() would block every request of the worker); hiredis
 *	gets a numeric address. While the lookup is under way, and when it
 *	failed ("cannot resolve NAME: why", retried every second), there is
 *	no connection and calls fail at once. The addresses found are tried
 *	one per attempt; after a connection that worked, and once all
 *	failed, the name is looked up again, so a moved service is
 *	followed.
 *
 *	With a redis-sentinel:// URL the master's address comes from
 *	store_sentinel(3): the handshake also checks ROLE (a demoted
 *	master is dropped), every failure of the connection asks
 *	Sentinel again, and an address that differs from the one in use
 *	(+switch-master, or an answer) drops the old connection, whose
 *	pending calls fail to on_store_error, and connects at once.
 *
 *	The connection's state machine is in store_redis_conn.c, the
 *	operator's calls in store_redis_admin.c (store_redis.h joins them).
 * DIAGNOSTICS
 *	Connection states ("connected", "cannot connect: ...", "AUTH
 *	refused: ...") are logged once per change, not per retry. A failed
 *	call is never logged: its reason goes to store.error, which the
 *	daemon's summary prints every 10 seconds with the count.
 */

#include "build_config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <math.h>

#include "msg.h"
#include "store_redis.h"
#include "xalloc.h"

/*
 * ARGV: charge, then 8 per op: interval, capacity, cost, advisory, kind
 * (r rate, l lock, s strike), limit, times, lock (index in KEYS). A
 * strike list is the times of the strikes in the window, in one string
 * ("T1 T2 ..."), so GET reads every kind of key (store_memory.c keeps
 * the same forms).
 */
const char store_redis_script[] =
"local t = redis.call('TIME')\n"
"local now = tonumber(t[1]) * 1000000 + tonumber(t[2])\n"
"local charge = tonumber(ARGV[1])\n"
"local res, new, blocked, locked, over = {0}, {}, false, false, {}\n"
"for i = 1, #KEYS do\n"
"  local b = 1 + (i - 1) * 8\n"
"  local interval, capacity = tonumber(ARGV[b + 1]), tonumber(ARGV[b + 2])\n"
"  local cost, advisory = tonumber(ARGV[b + 3]), ARGV[b + 4] == '1'\n"
"  local kind = ARGV[b + 5]\n"
"  res[2 * i], res[2 * i + 1], new[i] = 1, 0, false\n"
"  if kind == 'l' then\n"
"    if redis.call('EXISTS', KEYS[i]) == 1 then\n"
"      res[2 * i], locked = 0, true\n"
"    end\n"
"  elseif kind == 'r' then\n"
"    local tat = tonumber(redis.call('GET', KEYS[i]) or '0')\n"
"    if tat < now then tat = now end\n"
"    local ntat = tat + cost * interval\n"
"    local fits = (ntat - now <= capacity + 0.5)\n"
"    if fits then new[i] = ntat else over[ARGV[b + 6]] = true end\n"
"    if not fits and not advisory then blocked = true end\n"
"    res[2 * i] = fits and 1 or 0\n"
"    res[2 * i + 1] = fits and 0 or math.ceil(ntat - now - capacity)\n"
"  end\n"
"end\n"
"local held = locked\n"
"for i = 1, #KEYS do\n"
"  local b = 1 + (i - 1) * 8\n"
"  if not held and ARGV[b + 5] == 's' and over[ARGV[b + 6]] then\n"
"    local window, times = tonumber(ARGV[b + 2]), tonumber(ARGV[b + 7])\n"
"    local kept = {}\n"
"    for w in string.gmatch(redis.call('GET', KEYS[i]) or '', '%S+') do\n"
"      if now - tonumber(w) < window then kept[#kept + 1] = w end\n"
"    end\n"
"    while #kept >= times do table.remove(kept, 1) end\n"
"    kept[#kept + 1] = string.format('%.0f', now)\n"
"    if #kept >= times then\n"
"      redis.call('DEL', KEYS[i])\n"
"      redis.call('SET', KEYS[tonumber(ARGV[b + 8])], string.format('%.0f', now))\n"
"      res[2 * i + 1], locked = 2, true\n"
"    else\n"
"      redis.call('SET', KEYS[i], table.concat(kept, ' '), 'PX',\n"
"                 math.ceil(window / 1000) + 1000)\n"
"      res[2 * i + 1] = 1\n"
"    end\n"
"  end\n"
"end\n"
"if charge == 1 and not blocked and not locked then\n"
"  for i = 1, #KEYS do\n"
"    if new[i] then\n"
"      redis.call('SET', KEYS[i], string.format('%.3f', new[i]), 'PX',\n"
"                 math.ceil((new[i] - now) / 1000) + 1000)\n"
"    end\n"
"  end\n"
"  res[1] = 1\n"
"end\n"
"return res\n";


/*
 * The charges of a call answered after its deadline, given back (KEYS:
 * its rate keys that were charged; ARGV: what each was charged, in
 * microseconds of the key's theoretical arrival time). on_store_error
 * = closed answered 451 meanwhile: that mail was not admitted, and the
 * client's retry is charged again.
 */
static const char store_redis_refund_script[] =
"local t = redis.call('TIME')\n"
"local now = tonumber(t[1]) * 1000000 + tonumber(t[2])\n"
"for i = 1, #KEYS do\n"
"  local tat = tonumber(redis.call('GET', KEYS[i]) or '0') - tonumber(ARGV[i])\n"
"  if tat <= now then\n"
"    redis.call('DEL', KEYS[i])\n"
"  else\n"
"    redis.call('SET', KEYS[i], string.format('%.3f', tat), 'PX',\n"
"               math.ceil((tat - now) / 1000) + 1000)\n"
"  end\n"
"end\n"
"return 1\n";

/*
 * One in-flight script call. Its arguments are built again from the call
 * (which lives until it completes) when NOSCRIPT asks for EVAL.
 */
struct store_redis_req {
    struct store_redis *redis;
    struct store_call *call;
    int     resent;			/* sent again as EVAL after NOSCRIPT */
};


static void store_redis_req_free(struct store_redis_req *req)
{
    free(req);
}

/*
 * Commands on the request path (TIME, MGET, EVALSHA) are written here in
 * Redis's protocol and queued with redisAsyncFormattedCommand(): hiredis's
 * own formatting (sprintf() per argument length, sds growth) and the argv
 * arrays built for it were ~13% of the daemon's instructions per decision.
 */
static void store_redis_cmd_room(struct store_redis *redis, size_t more)
{
    if (redis->cmd_len + more <= redis->cmd_cap)
	return;
    while (redis->cmd_len + more > redis->cmd_cap)
	redis->cmd_cap = redis->cmd_cap ? redis->cmd_cap * 2 : 4096;
    redis->cmd = xrealloc(redis->cmd, redis->cmd_cap);
}

/* store_redis_cmd_count - "*N" or "$N" and CRLF */

static void store_redis_cmd_count(struct store_redis *redis, int type, size_t n)
{
    char    rev[24];
    int     len = 0;
    char   *cp;

    store_redis_cmd_room(redis, 24 + 3);
    cp = redis->cmd + redis->cmd_len;
    *cp++ = (char) type;
    do
	rev[len++] = (char) ('0' + n % 10);
    while ((n /= 10) > 0);
    while (len > 0)
	*cp++ = rev[--len];
    *cp++ = '\r';
    *cp++ = '\n';
    redis->cmd_len = cp - redis->cmd;
}

static void store_redis_cmd_arg(struct store_redis *redis, const char *arg, size_t len)
{
    store_redis_cmd_count(redis, '$', len);
    store_redis_cmd_room(redis, len + 2);
    memcpy(redis->cmd + redis->cmd_len, arg, len);
    memcpy(redis->cmd + redis->cmd_len + len, "\r\n", 2);
    redis->cmd_len += len + 2;
}

/* store_redis_cmd_queue - queue the command built; 0 when it cannot */

static int store_redis_cmd_queue(struct store_redis *redis, redisCallbackFn *fn, void *privdata)
{
    int     status;

    if (redis->ctx == NULL)
	return (0);
    redis->queueing = 1;			/* see store_redis_add_write() */
    status = redisAsyncFormattedCommand(redis->ctx, fn, privdata, redis->cmd, redis->cmd_len);
    redis->queueing = 0;
    if (status != REDIS_OK)
	return (0);
    if (redis->outstanding++ == 0)
	redis->progress_ms = store_redis_now_ms();
    return (1);
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

/* store_redis_parse_reply - 1 when the reply is the script's array */

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
	struct store_op *op = call->ops + i;

	op->allowed = reply->element[1 + 2 * i]->integer == 1;
	op->retry_after = op->kind == STORE_OP_RATE ? (double) reply->element[2 + 2 * i]->integer : 0;
	op->struck = op->kind == STORE_OP_STRIKE ? (int) reply->element[2 + 2 * i]->integer : 0;
    }
    return (1);
}

static void store_redis_send(struct store_redis_req *req, int use_sha);

static void store_redis_refund(struct store_redis *, const struct store_call *);

/*
 * store_redis_reply - a script's answer. Failures are not logged here
 * (that would be one line per request): they are counted by the caller
 * and summarised every 10s with store.error.
 */

static void store_redis_reply(redisAsyncContext *ctx, void *r, void *privdata)
{
    struct store_redis_req *req = privdata;
    struct store_redis *redis = req->redis;
    const redisReply *reply = r;
    int     ok;

    if (ctx != redis->ctx)			/* a dropped connection's */
	reply = NULL;
    else {
	redis->outstanding--;
	redis->progress_ms = store_redis_now_ms();
    }
    /* once more, with the script text; once: a server that answers
       NOSCRIPT to EVAL too had every call sent again without end, each
       with the whole script (helper-122: 30,000 EVALs in 3 s) */
    if (reply && reply->type == REDIS_REPLY_ERROR && strncmp(reply->str, "NOSCRIPT", 8) == 0
	&& redis->connected && !req->resent) {
	redis->sha[0] = 0;
	req->resent = 1;
	store_redis_send(req, 0);
	return;
    }
    /* without a reply, store_redis_down() has said why */
    if (!(ok = store_redis_parse_reply(req->call, reply)) && reply != NULL) {
	if (reply->type == REDIS_REPLY_ERROR)
	    store_set_error(&redis->store, "%.150s", reply->str);
	else
	    store_set_error(&redis->store, "unexpected reply to the script (type %d)",
			    reply->type);
    }
    if (ok && redis->quiet_connect)
	store_redis_usable(redis);
    if (ok && req->call->abandoned && req->call->refund_late && req->call->charged)
	store_redis_refund(redis, req->call);
    store_redis_complete(req->call, !ok);
    store_redis_req_free(req);
    if (reply && reply->type == REDIS_REPLY_ERROR && ctx == redis->ctx
	&& store_redis_fatal_reply(reply))
	store_redis_refused(redis, reply->str);
}

/*
 * store_redis_num - a number as the script's argument: its digits for a
 * whole number below 2^53 (formatting doubles was the biggest item per
 * call), else "%.17g", which tonumber() reads back as the same double.
 * (Six decimals of an interval, times a cost of 50 million bytes, made
 * 11 us of difference: a message of exactly the budget never fit.)
 */
#define STORE_REDIS_NUM_MAX 32			/* "%.17g" of any double */

static size_t store_redis_num(char *out, double value)
{
    char    rev[24];
    unsigned long long u;
    size_t  n = 0, len = 0;

    if (value != floor(value) || fabs(value) >= 9007199254740992.0)
	return (snprintf(out, STORE_REDIS_NUM_MAX, "%.17g", value));
    if (value < 0)
	out[len++] = '-', value = -value;
    u = (unsigned long long) value;
    do
	rev[n++] = '0' + u % 10;
    while ((u /= 10) > 0);
    while (n > 0)
	out[len++] = rev[--n];
    out[len] = 0;
    return (len);
}

/* store_redis_refund_reply - the refund's answer: nothing waits for it */

static void store_redis_refund_reply(redisAsyncContext *ctx, void *r, void *privdata)
{
    struct store_redis *redis = privdata;

    (void) r;
    if (ctx == redis->ctx) {
	redis->outstanding--;
	redis->progress_ms = store_redis_now_ms();
    }
}

/* store_redis_refund - give back what a late call charged (see above) */

#define STORE_REDIS_CHARGED(op)	((op)->kind == STORE_OP_RATE && (op)->allowed)

static void store_redis_refund(struct store_redis *redis, const struct store_call *call)
{
    char    num[STORE_REDIS_NUM_MAX + 1];
    int     n = 0;

    for (int i = 0; i < call->count; i++)
	n += STORE_REDIS_CHARGED(call->ops + i);
    if (n == 0)
	return;
    redis->cmd_len = 0;
    store_redis_cmd_count(redis, '*', 3 + 2 * n);
    store_redis_cmd_arg(redis, "EVAL", 4);
    store_redis_cmd_arg(redis, store_redis_refund_script, sizeof(store_redis_refund_script) - 1);
    store_redis_cmd_arg(redis, num, store_redis_num(num, n));
    for (int i = 0; i < call->count; i++)
	if (STORE_REDIS_CHARGED(call->ops + i))
	    store_redis_cmd_arg(redis, call->ops[i].key, strlen(call->ops[i].key));
    for (int i = 0; i < call->count; i++)
	if (STORE_REDIS_CHARGED(call->ops + i))
	    store_redis_cmd_arg(redis, num, store_redis_num(num, call->ops[i].cost
							  * call->ops[i].interval));
    if (!store_redis_cmd_queue(redis, store_redis_refund_reply, redis))
	store_set_error(&redis->store, "cannot queue the refund of a late charge");
}

/*
 * store_redis_send - EVALSHA (EVAL: the script's text) for a call. ARGV
 * as the script reads it: charge, then 8 per op.
 */
static void store_redis_send(struct store_redis_req *req, int use_sha)
{
    struct store_redis *redis = req->redis;
    const struct store_call *call = req->call;
    int     n = call->count;
    char    num[STORE_REDIS_NUM_MAX + 1];

    redis->cmd_len = 0;
    store_redis_cmd_count(redis, '*', 4 + n + 8 * n);
    if (use_sha)
	store_redis_cmd_arg(redis, "EVALSHA", 7),
	    store_redis_cmd_arg(redis, redis->sha, strlen(redis->sha));
    else
	store_redis_cmd_arg(redis, "EVAL", 4),
	    store_redis_cmd_arg(redis, store_redis_script, sizeof(store_redis_script) - 1);
    /* no printf for whole numbers: formatting doubles was a big item */
#define ARG_NUM(v) store_redis_cmd_arg(redis, num, store_redis_num(num, (v)))
#define ARG_STR(str) store_redis_cmd_arg(redis, (str), strlen(str))
    ARG_NUM(n);
    for (int i = 0; i < n; i++)
	ARG_STR(call->ops[i].key);
    ARG_STR(call->charge ? "1" : "0");
    for (int i = 0; i < n; i++) {
	const struct store_op *op = call->ops + i;

	ARG_NUM(op->interval);
	ARG_NUM(op->capacity);
	ARG_NUM(op->cost);
	ARG_STR(op->advisory ? "1" : "0");
	ARG_STR(op->kind == STORE_OP_LOCK ? "l" : op->kind == STORE_OP_STRIKE ? "s" : "r");
	ARG_NUM(op->limit);
	ARG_NUM(op->times);
	ARG_NUM(op->lock + 1);
    }
#undef ARG_NUM
#undef ARG_STR
    if (!store_redis_cmd_queue(redis, store_redis_reply, req)) {
	store_set_error(&redis->store, "cannot queue the command");
	store_redis_complete(req->call, 1);
	store_redis_req_free(req);
    }
}

/* store_redis_script_call - run the script for a call (charges, strikes) */

static void store_redis_script_call(struct store_redis *redis, struct store_call *call)
{
    struct store_redis_req *req = xcalloc(1, sizeof(*req));

    req->redis = redis;
    req->call = call;
    req->resent = redis->sha[0] == 0;		/* EVAL already: NOSCRIPT is final */
    store_redis_send(req, redis->sha[0] != 0);
}

/*
 * A call that charges nothing (RCPT, DATA) is TIME and MGET, pipelined,
 * decided by store_check_eval() (the script cost Redis 7 us a call, these
 * two about 1 us); a strike that may count sends it to the script.
 *
 * The checks queued while a TIME is still unwritten share it: Redis runs
 * it before each of their MGETs (one connection, in order), so each
 * check's clock is, as before, read before its keys, microseconds apart.
 * A clock stops being shared as soon as hiredis writes (its write event
 * added other than by our queueing, or removed when the buffer is empty)
 * or the connection goes: a TIME already sent is never shared. Under
 * load one TIME then serves the many checks of a loop iteration.
 */
struct store_redis_clock {
    struct store_redis *redis;
    double  now;
    int     ok;
    int     refs;				/* TIME's reply, checks, redis->clock */
};

struct store_redis_check {
    struct store_redis *redis;
    struct store_call *call;
    struct store_redis_clock *clock;
};

/* store_redis_ack - a reply came; NULL when it is a dropped connection's */

static const redisReply *store_redis_ack(struct store_redis *redis, redisAsyncContext *ctx,
					         const redisReply *reply)
{
    if (ctx != redis->ctx)
	return (NULL);
    redis->outstanding--;
    redis->progress_ms = store_redis_now_ms();
    return (reply);
}

static void store_redis_clock_unref(struct store_redis_clock *clock)
{
    if (--clock->refs == 0)
	free(clock);
}

/* store_redis_clock_end - no more sharing of the TIME queued */

void    store_redis_clock_end(struct store_redis *redis)
{
    if (redis->clock) {
	store_redis_clock_unref(redis->clock);
	redis->clock = NULL;
    }
}

static void store_redis_time_reply(redisAsyncContext *ctx, void *r, void *privdata)
{
    struct store_redis_clock *clock = privdata;
    const redisReply *reply = store_redis_ack(clock->redis, ctx, r);

    if (reply && reply->type == REDIS_REPLY_ARRAY && reply->elements == 2
	&& reply->element[0]->type == REDIS_REPLY_STRING
	&& reply->element[1]->type == REDIS_REPLY_STRING) {
	clock->now = strtod(reply->element[0]->str, NULL) * 1000000
	    + strtod(reply->element[1]->str, NULL);
	clock->ok = 1;
    } else if (reply && reply->type == REDIS_REPLY_ERROR) {
	store_set_error(&clock->redis->store, "%.150s", reply->str);
	if (store_redis_fatal_reply(reply))	/* MGETs' callbacks get no reply */
	    store_redis_refused(clock->redis, reply->str);
    }
    store_redis_clock_unref(clock);
}

/* store_redis_clock_get - the clock to share, TIME queued if need be */

static struct store_redis_clock *store_redis_clock_get(struct store_redis *redis)
{
    static const char time_cmd[] = "*1\r\n$4\r\nTIME\r\n";
    struct store_redis_clock *clock = redis->clock;

    if (clock == NULL) {
	clock = xcalloc(1, sizeof(*clock));
	clock->redis = redis;
	redis->cmd_len = 0;
	store_redis_cmd_room(redis, sizeof(time_cmd));
	memcpy(redis->cmd, time_cmd, sizeof(time_cmd) - 1);
	redis->cmd_len = sizeof(time_cmd) - 1;
	if (!store_redis_cmd_queue(redis, store_redis_time_reply, clock)) {
	    free(clock);
	    return (NULL);
	}
	clock->refs = 2;			/* TIME's reply, redis->clock */
	redis->clock = clock;
    }
    clock->refs++;
    return (clock);
}

/* store_redis_check_values - MGET's answer as values, or an error text */

static const char *store_redis_check_values(const struct store_redis_check *chk,
				              const redisReply *reply, const char **values)
{
    /* TIME's reply came first: the same connection answers in order */
    if (reply->type != REDIS_REPLY_ARRAY || reply->elements != (size_t) chk->call->count)
	return ("unexpected reply to MGET");
    for (size_t i = 0; i < reply->elements; i++) {
	if (reply->element[i]->type == REDIS_REPLY_NIL)
	    values[i] = NULL;
	else if (reply->element[i]->type == REDIS_REPLY_STRING)
	    values[i] = reply->element[i]->str;
	else
	    return ("unexpected reply to MGET");
    }
    return (chk->clock->ok ? NULL : "unexpected reply to TIME");
}

static void store_redis_check_free(struct store_redis_check *chk)
{
    store_redis_clock_unref(chk->clock);
    free(chk);
}

static void store_redis_check_reply(redisAsyncContext *ctx, void *r, void *privdata)
{
    struct store_redis_check *chk = privdata;
    struct store_redis *redis = chk->redis;
    struct store_call *call = chk->call;
    const redisReply *reply = store_redis_ack(redis, ctx, r);
    const char *few[16], **values;
    const char *err;

    if (reply == NULL) {			/* store_redis_down() said why */
	store_redis_check_free(chk);
	store_redis_complete(call, 1);
	return;
    }
    if (reply->type == REDIS_REPLY_ERROR) {
	store_redis_check_free(chk);
	store_set_error(&redis->store, "%.150s", reply->str);
	store_redis_complete(call, 1);
	if (ctx == redis->ctx && store_redis_fatal_reply(reply))
	    store_redis_refused(redis, reply->str);
	return;
    }
    values = call->count <= 16 ? few : xcalloc(call->count, sizeof(*values));
    if ((err = store_redis_check_values(chk, reply, values)) == NULL)
	err = store_check_eval(call, chk->clock->now, values);
    if (values != few)
	free(values);
    store_redis_check_free(chk);
    if (err == STORE_CHECK_SCRIPT)
	store_redis_script_call(redis, call);
    else {
	if (err)
	    store_set_error(&redis->store, "%s", err);
	store_redis_complete(call, err != NULL);
    }
}

/* store_redis_check_call - send TIME (or share it) and MGET; 0: use the script */

static int store_redis_check_call(struct store_redis *redis, struct store_call *call)
{
    struct store_redis_check *chk;
    struct store_redis_clock *clock;

    if (call->charge || call->count == 0)
	return (0);
    if ((clock = store_redis_clock_get(redis)) == NULL)
	return (0);				/* the script path reports it */
    chk = xmalloc(sizeof(*chk));
    chk->redis = redis;
    chk->call = call;
    chk->clock = clock;
    redis->cmd_len = 0;
    store_redis_cmd_count(redis, '*', call->count + 1);
    store_redis_cmd_arg(redis, "MGET", 4);
    for (int i = 0; i < call->count; i++)
	store_redis_cmd_arg(redis, call->ops[i].key, strlen(call->ops[i].key));
    if (!store_redis_cmd_queue(redis, store_redis_check_reply, chk)) {
	store_redis_check_free(chk);
	store_set_error(&redis->store, "cannot queue the command");
	store_redis_complete(call, 1);
    }
    return (1);
}

static void store_redis_submit(struct store *store, struct store_call *call)
{
    struct store_redis *redis = (struct store_redis *) store;

    if (redis->ctx == NULL || !redis->connected) {
	store_set_error(store, "%s", redis->logged[0] && strncmp(redis->logged, "connected", 9)
			? redis->logged : "not connected yet");
	store_redis_complete(call, 1);
	return;
    }
    if (!store_redis_check_call(redis, call))
	store_redis_script_call(redis, call);
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
    store_redis_clock_end(redis);
    sentinel_free(&redis->sentinel);
    resolve_cancel(&redis->lookup);
    resolve_free(&redis->resolve);
    event_free(redis->retry);
    event_free(redis->watchdog);
    free(redis->cmd);
    explicit_bzero(&redis->url, sizeof(redis->url));	/* no password left behind */
    free(redis);
}

/* store_redis_create - url from store_url_parse(): it cannot fail here */

struct store *store_redis_create(struct event_base *base, const struct store_url *url)
{
    struct store_redis *redis = xcalloc(1, sizeof(*redis));
    struct timeval quarter = {0, 250000};

    redis->url = *url;
    redis->store.kind = "redis";
    redis->store.submit = store_redis_submit;
    redis->store.destroy = store_redis_destroy;
    redis->store.admin = store_redis_admin;
    redis->base = base;
    redis->retry = evtimer_new(base, store_redis_retry, redis);
    redis->watchdog = event_new(base, -1, EV_PERSIST, store_redis_watchdog, redis);
    event_add(redis->watchdog, &quarter);
    if (url->path[0] == 0)			/* a name: Sentinel's, or url.host */
	redis->resolve = resolve_create(base, url->resolv_conf[0] ? url->resolv_conf : NULL,
					url->hosts_file[0] ? url->hosts_file : NULL);
    if (url->sentinel) {			/* url.host comes from Sentinel */
	redis->sentinel = sentinel_create(base, &redis->url, redis->resolve,
					  store_redis_found, redis);
	store_set_error(&redis->store, "no master known yet (asking Sentinel)");
	snprintf(redis->logged, sizeof(redis->logged), "no master known yet (asking Sentinel)");
	sentinel_ask(redis->sentinel);
    } else
	store_redis_connect(redis);
    return (&redis->store);
}
