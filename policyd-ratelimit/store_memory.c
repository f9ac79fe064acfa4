/*
 * NAME
 *	store_memory 3
 * SUMMARY
 *	GCRA state in a hash table
 * SYNOPSIS
 *	#include "store.h"
 *
 *	struct store *store_memory_create(base)
 * DESCRIPTION
 *	One double (the theoretical arrival time, in microseconds of
 *	CLOCK_MONOTONIC) per key. A key whose time has passed is as
 *	good as new, so it is deleted: a timer sweeps a slice of the
 *	table every 100 ms, and memory stays proportional to the keys
 *	active within their periods.
 *
 *	Calls complete synchronously, inside submit().
 * DIAGNOSTICS
 *	None.
 */

#include "build_config.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "gcra.h"
#include "htable.h"
#include "store.h"
#include "xalloc.h"

struct store_memory {
    struct store store;
    struct htable *table;
    struct event *sweeper;
};

static double store_memory_now(void)
{
    struct timespec ts;

    /* Whole microseconds, like Redis TIME: with a fraction, TAT - now
     * picks up rounding and a budget spent exactly to its end fails. */
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ((double) ts.tv_sec * 1e6 + (double) (ts.tv_nsec / 1000));
}

static int store_memory_expired(void *value, void *context)
{
    return (*(double *) value < *(double *) context);
}

static void store_memory_sweep(evutil_socket_t fd, short what, void *context)
{
    struct store_memory *mem = context;
    double  now = store_memory_now();

    htable_sweep(mem->table, 4096, store_memory_expired, &now, free);
}

static void store_memory_submit(struct store *store, struct store_call *call)
{
    struct store_memory *mem = (struct store_memory *) store;
    double  now = store_memory_now();
    double *new_tat = xcalloc(call->count, sizeof(double));
    int     blocked = 0, created;
    double **slot;

    for (int i = 0; i < call->count; i++) {
	struct store_op *op = call->ops + i;
	double *tat = htable_find(mem->table, op->key);
	struct gcra_result r = gcra_check(tat ? *tat : 0, now, op->interval,
					  op->capacity, op->cost);

	op->allowed = r.allowed;
	op->retry_after = r.retry_after;
	new_tat[i] = r.new_tat;
	if (!r.allowed && !op->advisory)
	    blocked = 1;
    }
    call->charged = call->charge && !blocked;
    for (int i = 0; call->charged && i < call->count; i++) {
	if (!call->ops[i].allowed)
	    continue;
	slot = (double **) htable_slot(mem->table, call->ops[i].key, &created);
	if (created)
	    *slot = xmalloc(sizeof(double));
	**slot = new_tat[i];
    }
    free(new_tat);
    call->error = 0;
    call->done(call);
}

static void store_memory_destroy(struct store *store)
{
    struct store_memory *mem = (struct store_memory *) store;

    event_free(mem->sweeper);
    htable_destroy(&mem->table, free);
    free(mem);
}

size_t  store_memory_size(const struct store *store)
{
    return (((const struct store_memory *) store)->table->used);
}

struct store *store_memory_create(struct event_base *base)
{
    struct store_memory *mem = xcalloc(1, sizeof(*mem));
    struct timeval tick = {0, 100000};

    mem->store.kind = "memory";
    mem->store.submit = store_memory_submit;
    mem->store.destroy = store_memory_destroy;
    mem->table = htable_create(1024);
    mem->sweeper = event_new(base, -1, EV_PERSIST, store_memory_sweep, mem);
    event_add(mem->sweeper, &tick);
    return (&mem->store);
}

void    store_call_free(struct store_call **callp)
{
    if (*callp == NULL)
	return;
    free((*callp)->ops);
    free(*callp);
    *callp = NULL;
}

void    store_destroy(struct store **storep)
{
    if (*storep == NULL)
	return;
    (*storep)->destroy(*storep);
    *storep = NULL;
}

/* store_set_error - remember why the store failed, for the summary line */

void    store_set_error(struct store *store, const char *fmt,...)
{
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(store->error, sizeof(store->error), fmt, ap);
    va_end(ap);
}
