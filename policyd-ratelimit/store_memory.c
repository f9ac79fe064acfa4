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
 *	Quarantine locks and strike lists (store.h) live in the same
 *	table: a lock never expires, a strike list when its window has
 *	passed. Operator's calls (admin) see the values in the form Redis
 *	keeps them, so ctl gives the same answers for both stores.
 *
 *	Calls complete synchronously, inside submit() and admin(), but
 *	a SCAN: it walks the table one batch per turn of the event loop
 *	that made the store (worker 0's, where ctl runs), and calls
 *	done() at its end.
 *
 *	One memory store serves every worker thread (workers = N): each
 *	call, admin call and sweep holds the store's mutex, and reads the
 *	clock under it, so calls are applied one at a time in clock order
 *	and a limit of N admits N in total whatever worker a client
 *	reached. The mutex is recursive, and released before done() runs
 *	and around each SCAN batch() (store_memory_walk_batch()).
 * DIAGNOSTICS
 *	None.
 */

#include "build_config.h"

#include <fnmatch.h>
#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "gcra.h"
#include "htable.h"
#include "store.h"
#include "xalloc.h"

struct store_memory_walk;

struct store_memory {
    struct store store;
    pthread_mutex_t lock;		/* shared by the workers (main.c) */
    struct htable *table;
    struct event *sweeper;
    struct event_base *base;		/* worker 0's: ctl's walks */
    struct store_memory_walk *walks;	/* under way */
};

/* A SCAN under way: one batch per turn of the event loop. */
struct store_memory_walk {
    struct store_memory *mem;
    struct store_admin *adm;
    size_t  bucket;			/* the next to visit */
    struct event *turn;
    struct store_memory_walk *next;
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
    double  now;

    pthread_mutex_lock(&mem->lock);
    now = store_memory_now();
    htable_sweep(mem->table, 4096, store_memory_expired, &now, free);
    pthread_mutex_unlock(&mem->lock);
}

/*
 * Values by kind of key (store_memory_type): a rate's TAT (a double), a
 * lock ({INFINITY, time set}: the sweeper never takes it) and a strike
 * list (struct store_memory_strikes: its first double is when the list
 * expires, so the sweeper's test fits every kind).
 */
struct store_memory_strikes {
    double  expires;
    int     count;
    int     cap;
    double  times[1];			/* allocated to cap */
};

static int store_memory_type(const char *key)
{
    size_t  len = strlen(key);

    if (strncmp(key, "mxrl:q:", 7) != 0)
	return (STORE_OP_RATE);
    if (len > 5 && strcmp(key + len - 5, ":lock") == 0)
	return (STORE_OP_LOCK);
    return (STORE_OP_STRIKE);
}

/* store_memory_strike - count one strike; lock on the last one */

static void store_memory_strike(struct store_memory *mem, struct store_call *call,
				        struct store_op *op, double now)
{
    struct store_memory_strikes **slot, *s;
    double *lock;
    int     created, kept = 0;

    slot = (struct store_memory_strikes **) htable_slot(mem->table, op->key, &created);
    if (created || (*slot)->cap < op->times) {
	*slot = xrealloc(created ? NULL : *slot, sizeof(**slot) + sizeof(double) * op->times);
	if (created)
	    (*slot)->count = 0;
	(*slot)->cap = op->times;
    }
    s = *slot;
    for (int i = 0; i < s->count; i++)	/* the window slides */
	if (now - s->times[i] < op->capacity)
	    s->times[kept++] = s->times[i];
    s->count = kept;
    if (s->count >= op->times) {		/* times lowered by a reload */
	memmove(s->times, s->times + s->count - op->times + 1, sizeof(double) * (op->times - 1));
	s->count = op->times - 1;
    }
    s->times[s->count++] = now;
    s->expires = now + op->capacity;
    op->struck = 1;
    if (s->count < op->times)
	return;
    htable_delete(mem->table, op->key, free);
    lock = xmalloc(2 * sizeof(double));
    lock[0] = INFINITY;
    lock[1] = now;
    slot = (struct store_memory_strikes **) htable_slot(mem->table, call->ops[op->lock].key,
							 &created);
    if (!created)				/* no LOCK op was locked: cannot be */
	free(*slot);
    *(double **) slot = lock;
    op->struck = 2;
}

static void store_memory_submit(struct store *store, struct store_call *call)
{
    struct store_memory *mem = (struct store_memory *) store;
    double  now;
    double *new_tat = xcalloc(call->count, sizeof(double));
    int     blocked = 0, locked = 0, created;
    double **slot;

    pthread_mutex_lock(&mem->lock);		/* the clock too: one order */
    now = store_memory_now();
    for (int i = 0; i < call->count; i++) {
	struct store_op *op = call->ops + i;
	double *tat = htable_find(mem->table, op->key);
	struct gcra_result r;

	op->struck = 0;
	op->retry_after = 0;
	if (op->kind != STORE_OP_RATE) {
	    op->allowed = !(op->kind == STORE_OP_LOCK && tat != NULL);
	    locked |= !op->allowed;
	    continue;
	}
	r = gcra_check(tat ? *tat : 0, now, op->interval, op->capacity, op->cost);
	op->allowed = r.allowed;
	op->retry_after = r.retry_after;
	new_tat[i] = r.new_tat;
	if (!r.allowed && !op->advisory)
	    blocked = 1;
    }
    for (int i = 0, held = locked; !held && i < call->count; i++)
	if (call->ops[i].kind == STORE_OP_STRIKE && store_call_over(call, call->ops[i].limit)) {
	    store_memory_strike(mem, call, call->ops + i, now);
	    locked |= call->ops[i].struck == 2;
	}
    call->charged = call->charge && !blocked && !locked;
    for (int i = 0; call->charged && i < call->count; i++) {
	if (!call->ops[i].allowed || call->ops[i].kind != STORE_OP_RATE)
	    continue;
	slot = (double **) htable_slot(mem->table, call->ops[i].key, &created);
	if (created)
	    *slot = xmalloc(sizeof(double));
	**slot = new_tat[i];
    }
    pthread_mutex_unlock(&mem->lock);
    free(new_tat);
    call->error = 0;
    call->done(call);
}

/* store_memory_text - a value as Redis holds it (see store_redis.c) */

static char *store_memory_text(const char *key, const void *value)
{
    const struct store_memory_strikes *s = value;
    char   *text, *next;

    switch (store_memory_type(key)) {
    case STORE_OP_LOCK:
	return (xasprintf("%.0f", ((const double *) value)[1]));
    case STORE_OP_STRIKE:
	text = xstrdup("");
	for (int i = 0; i < s->count; i++) {
	    next = xasprintf("%s%s%.0f", text, i ? " " : "", s->times[i]);
	    free(text);
	    text = next;
	}
	return (text);
    default:
	return (xasprintf("%.3f", *(const double *) value));
    }
}

/*
 * store_memory_walk_batch - the next batch of a SCAN, about 1000 keys.
 * The mutex is held for one batch, and batch() runs without it; then
 * the walk waits for the next turn of the loop (a timer due at once,
 * which runs after the loop has polled), so worker 0's own requests,
 * like the other workers', wait for at most one batch (a few hundred
 * microseconds), not for a "top" over millions of keys (0.66 s for
 * 500,000). The walk goes on by bucket index; a table that grew in
 * between was rehashed, so a key may be seen twice or (if it moved
 * behind the walk) not at all: "top" is a view, not a snapshot
 * (ctl_top_add() drops a key seen twice).
 */
static void store_memory_walk_batch(evutil_socket_t fd, short what, void *context)
{
    struct store_memory_walk *w = context, **pp;
    struct store_memory *mem = w->mem;
    struct store_admin *adm = w->adm;
    struct timeval now = {0, 0};
    size_t  visited;
    int     cap = 0, end;

    pthread_mutex_lock(&mem->lock);
    adm->now = store_memory_now();
    for (visited = 0; w->bucket < mem->table->size && adm->count < 1000 && visited < 16384;
	 w->bucket++, visited++) {
	for (const struct htable_entry *e = mem->table->buckets[w->bucket]; e; e = e->next) {
	    if (fnmatch(adm->match, e->key, 0) != 0)
		continue;
	    if (adm->count == cap) {
		cap = cap ? cap * 2 : 1024;
		adm->keys = xrealloc(adm->keys, cap * sizeof(char *));
		adm->values = xrealloc(adm->values, cap * sizeof(char *));
	    }
	    adm->keys[adm->count] = xstrdup(e->key);
	    adm->values[adm->count++] = store_memory_text(e->key, e->value);
	}
    }
    end = w->bucket >= mem->table->size;
    pthread_mutex_unlock(&mem->lock);
    if (adm->count > 0)
	adm->batch(adm);
    store_admin_clear(adm);
    if (!end) {
	evtimer_add(w->turn, &now);
	return;
    }
    for (pp = &mem->walks; *pp != w; pp = &(*pp)->next)
	 /* void */ ;
    *pp = w->next;
    event_free(w->turn);
    free(w);
    adm->done(adm);
}

static void store_memory_scan(struct store_memory *mem, struct store_admin *adm)
{
    struct store_memory_walk *w = xcalloc(1, sizeof(*w));
    struct timeval now = {0, 0};

    w->mem = mem;
    w->adm = adm;
    w->turn = evtimer_new(mem->base, store_memory_walk_batch, w);
    w->next = mem->walks;
    mem->walks = w;
    evtimer_add(w->turn, &now);
}

static void store_memory_admin(struct store *store, struct store_admin *adm)
{
    struct store_memory *mem = (struct store_memory *) store;
    void   *value;

    adm->error = 0;
    if (adm->op == STORE_ADMIN_SCAN) {		/* one batch per turn */
	store_memory_scan(mem, adm);
	return;
    }
    pthread_mutex_lock(&mem->lock);
    adm->now = store_memory_now();
    switch (adm->op) {
    case STORE_ADMIN_GET:
	adm->values = xcalloc(adm->count + 1, sizeof(char *));
	for (int i = 0; i < adm->count; i++)
	    if ((value = htable_find(mem->table, adm->keys[i])) != NULL)
		adm->values[i] = store_memory_text(adm->keys[i], value);
	break;
    case STORE_ADMIN_DEL:
	adm->deleted = 0;
	for (int i = 0; i < adm->count; i++)
	    adm->deleted += htable_delete(mem->table, adm->keys[i], free);
	break;
    }
    pthread_mutex_unlock(&mem->lock);
    adm->done(adm);
}

/* store_admin_clear - free the keys and values of an admin call */

void    store_admin_clear(struct store_admin *adm)
{
    for (int i = 0; i < adm->count; i++) {
	free(adm->keys ? adm->keys[i] : NULL);
	free(adm->values ? adm->values[i] : NULL);
    }
    free(adm->keys);
    free(adm->values);
    adm->keys = adm->values = NULL;
    adm->count = 0;
}

static void store_memory_destroy(struct store *store)
{
    struct store_memory *mem = (struct store_memory *) store;

    event_free(mem->sweeper);
    while (mem->walks) {			/* the loop has ended: no answer */
	struct store_memory_walk *w = mem->walks;

	mem->walks = w->next;
	event_free(w->turn);
	free(w);
    }
    htable_destroy(&mem->table, free);
    pthread_mutex_destroy(&mem->lock);
    free(mem);
}

size_t  store_memory_size(const struct store *store)
{
    struct store_memory *mem = (struct store_memory *) store;
    size_t  used;

    pthread_mutex_lock(&mem->lock);
    used = mem->table->used;
    pthread_mutex_unlock(&mem->lock);
    return (used);
}

struct store *store_memory_create(struct event_base *base)
{
    struct store_memory *mem = xcalloc(1, sizeof(*mem));
    struct timeval tick = {0, 100000};
    pthread_mutexattr_t attr;

    mem->store.kind = "memory";
    mem->store.submit = store_memory_submit;
    mem->store.destroy = store_memory_destroy;
    mem->store.admin = store_memory_admin;
    pthread_mutexattr_init(&attr);
    pthread_mutexattr_settype(&attr, PTHREAD_MUTEX_RECURSIVE);
    pthread_mutex_init(&mem->lock, &attr);
    pthread_mutexattr_destroy(&attr);
    mem->table = htable_create(1024);
    mem->base = base;
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
