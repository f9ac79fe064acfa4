/*
 * NAME
 *	store_redis_admin 3
 * SUMMARY
 *	the operator's calls on the Redis store (ctl show, reset, top)
 * SYNOPSIS
 *	#include "store_redis.h"
 *
 *	void	store_redis_admin(store, adm)
 * DESCRIPTION
 *	store.h's admin() for store_redis(3), split from store_redis.c
 *	(issue 18): GET, DEL and SCAN on the store's own connection.
 */

#include "build_config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "store_redis.h"
#include "xalloc.h"

/*
 * Operator's calls (store.h): TIME, then MGET or DEL, pipelined on the
 * store's connection (so the watchdog covers them); SCAN walks the keys
 * COUNT 1000 at a time, with an MGET per batch. A reply missing (the
 * connection dropped) or wrong ends the call with error set.
 */
struct store_redis_adm {
    struct store_redis *redis;
    struct store_admin *adm;
    char    cursor[32];			/* SCAN */
};

static int store_redis_adm_cmd(struct store_redis_adm *ra, redisCallbackFn *fn,
			               int argc, const char **argv, const size_t *lens)
{
    struct store_redis *redis = ra->redis;

    if (redis->ctx == NULL || !redis->connected
	|| redisAsyncCommandArgv(redis->ctx, fn, ra, argc, argv, lens) != REDIS_OK)
	return (0);
    if (redis->outstanding++ == 0)
	redis->progress_ms = store_redis_now_ms();
    return (1);
}

static void store_redis_adm_end(struct store_redis_adm *ra, int error)
{
    struct store_admin *adm = ra->adm;

    if (error)
	store_set_error(&ra->redis->store, "%s", ra->redis->connected ? "unexpected reply"
			: ra->redis->logged);
    adm->error = error;
    free(ra);
    adm->done(adm);
}

/* store_redis_adm_reply - the reply, or NULL when it is not usable */

static const redisReply *store_redis_adm_reply(redisAsyncContext *ctx, void *r,
					               struct store_redis_adm *ra, int type)
{
    const redisReply *reply = r;

    if (ctx != ra->redis->ctx)
	return (NULL);
    ra->redis->outstanding--;
    ra->redis->progress_ms = store_redis_now_ms();
    return (reply && reply->type == type ? reply : NULL);
}

static void store_redis_adm_mget(struct store_redis_adm *ra, redisCallbackFn *fn)
{
    const char **argv = xcalloc(ra->adm->count + 1, sizeof(char *));
    int     ok;

    argv[0] = "MGET";
    for (int i = 0; i < ra->adm->count; i++)
	argv[i + 1] = ra->adm->keys[i];
    ok = store_redis_adm_cmd(ra, fn, ra->adm->count + 1, argv, NULL);
    free(argv);
    if (!ok)
	store_redis_adm_end(ra, 1);
}

static int store_redis_adm_values(struct store_admin *adm, const redisReply *reply)
{
    if (reply == NULL || reply->elements != (size_t) adm->count)
	return (0);
    adm->values = xcalloc(adm->count + 1, sizeof(char *));
    for (int i = 0; i < adm->count; i++)
	if (reply->element[i]->type == REDIS_REPLY_STRING)
	    adm->values[i] = xstrdup(reply->element[i]->str);
    return (1);
}

static void store_redis_adm_scan(struct store_redis_adm *ra);

static void store_redis_adm_got(redisAsyncContext *ctx, void *r, void *privdata)
{
    struct store_redis_adm *ra = privdata;
    const redisReply *reply = store_redis_adm_reply(ctx, r, ra, REDIS_REPLY_ARRAY);

    if (!store_redis_adm_values(ra->adm, reply)) {
	store_redis_adm_end(ra, 1);
    } else if (ra->adm->op == STORE_ADMIN_GET) {
	store_redis_adm_end(ra, 0);
    } else {
	ra->adm->batch(ra->adm);
	store_admin_clear(ra->adm);
	if (strcmp(ra->cursor, "0") == 0)
	    store_redis_adm_end(ra, 0);
	else
	    store_redis_adm_scan(ra);
    }
}

static void store_redis_adm_scanned(redisAsyncContext *ctx, void *r, void *privdata)
{
    struct store_redis_adm *ra = privdata;
    const redisReply *reply = store_redis_adm_reply(ctx, r, ra, REDIS_REPLY_ARRAY);
    const redisReply *keys;

    if (reply == NULL || reply->elements != 2 || reply->element[0]->type != REDIS_REPLY_STRING
	|| (keys = reply->element[1])->type != REDIS_REPLY_ARRAY) {
	store_redis_adm_end(ra, 1);
	return;
    }
    snprintf(ra->cursor, sizeof(ra->cursor), "%s", reply->element[0]->str);
    ra->adm->keys = xcalloc(keys->elements + 1, sizeof(char *));
    for (size_t i = 0; i < keys->elements; i++)
	if (keys->element[i]->type == REDIS_REPLY_STRING)
	    ra->adm->keys[ra->adm->count++] = xstrdup(keys->element[i]->str);
    if (ra->adm->count > 0)
	store_redis_adm_mget(ra, store_redis_adm_got);
    else if (strcmp(ra->cursor, "0") == 0)
	store_redis_adm_end(ra, 0);
    else
	store_redis_adm_scan(ra);
}

static void store_redis_adm_scan(struct store_redis_adm *ra)
{
    const char *argv[] = {"SCAN", ra->cursor, "MATCH", ra->adm->match, "COUNT", "1000"};

    if (!store_redis_adm_cmd(ra, store_redis_adm_scanned, 6, argv, NULL))
	store_redis_adm_end(ra, 1);
}

static void store_redis_adm_deleted(redisAsyncContext *ctx, void *r, void *privdata)
{
    struct store_redis_adm *ra = privdata;
    const redisReply *reply = store_redis_adm_reply(ctx, r, ra, REDIS_REPLY_INTEGER);

    if (reply)
	ra->adm->deleted = reply->integer;
    store_redis_adm_end(ra, reply == NULL);
}

/* store_redis_adm_time - the store's clock, then the call itself */

static void store_redis_adm_time(redisAsyncContext *ctx, void *r, void *privdata)
{
    struct store_redis_adm *ra = privdata;
    const redisReply *reply = store_redis_adm_reply(ctx, r, ra, REDIS_REPLY_ARRAY);
    const char **argv;
    int     ok;

    if (reply == NULL || reply->elements != 2) {
	store_redis_adm_end(ra, 1);
	return;
    }
    ra->adm->now = atof(reply->element[0]->str) * 1e6 + atof(reply->element[1]->str);
    if (ra->adm->op == STORE_ADMIN_GET) {
	store_redis_adm_mget(ra, store_redis_adm_got);
    } else if (ra->adm->op == STORE_ADMIN_SCAN) {
	store_admin_clear(ra->adm);
	store_redis_adm_scan(ra);
    } else {
	argv = xcalloc(ra->adm->count + 1, sizeof(char *));
	argv[0] = "DEL";
	for (int i = 0; i < ra->adm->count; i++)
	    argv[i + 1] = ra->adm->keys[i];
	ok = store_redis_adm_cmd(ra, store_redis_adm_deleted, ra->adm->count + 1, argv, NULL);
	free(argv);
	if (!ok)
	    store_redis_adm_end(ra, 1);
    }
}

void    store_redis_admin(struct store *store, struct store_admin *adm)
{
    struct store_redis_adm *ra = xcalloc(1, sizeof(*ra));
    const char *argv[] = {"TIME"};

    ra->redis = (struct store_redis *) store;
    ra->adm = adm;
    snprintf(ra->cursor, sizeof(ra->cursor), "0");
    adm->deleted = 0;
    if ((adm->op != STORE_ADMIN_SCAN && adm->count == 0)
	|| !store_redis_adm_cmd(ra, store_redis_adm_time, 1, argv, NULL))
	store_redis_adm_end(ra, adm->count != 0 || adm->op == STORE_ADMIN_SCAN);
}
