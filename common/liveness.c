/*
 * NAME
 *	liveness 3
 * SUMMARY
 *	are the daemon's loops still turning?
 * SYNOPSIS
 *	#include "liveness.h"
 *
 *	struct liveness *liveness_watch(base, name)
 *	struct event_base *base;
 *	const char *name;
 *
 *	struct liveness *liveness_worker(base, index)
 *	struct event_base *base;
 *	int	index;
 *
 *	struct liveness *liveness_add(name)
 *	const char *name;
 *
 *	void	liveness_beat(live)
 *	struct liveness *live;
 *
 *	void	liveness_unwatch(livep)
 *	struct liveness **livep;
 *
 *	const char *liveness_check(void)
 * DESCRIPTION
 *	GET /healthz (metrics_http(3)) is answered by a thread of its own,
 *	so on its own it says only that this thread runs: a daemon whose
 *	event loop is stuck (a deadlock, a call that never returns) would
 *	stay "alive" and never be restarted by its orchestrator. So every
 *	loop that serves mail registers here and stamps the time at least
 *	once a second, and liveness_check(), called by the endpoint, names
 *	the first loop whose stamp is older than LIVENESS_STALL_SECS (10).
 *
 *	liveness_watch() registers a libevent loop: a persistent one-second
 *	timer on base stamps it while the loop runs, busy or idle.
 *	liveness_worker() is liveness_watch() for the loop of worker
 *	index, named "worker N"; called from a thread of its own, it gives
 *	the thread that name too (top -H, /proc/PID/task/TID/comm), never
 *	the main thread, whose name is the process's.
 *	liveness_add() registers a loop that is not libevent's; it calls
 *	liveness_beat() on each turn (at least once a second).
 *	liveness_unwatch() removes one (before its base is freed, in the
 *	loop's thread) and sets *livep to NULL; a loop that ended as the
 *	daemon stops is not reported stuck.
 *
 *	liveness_check() returns NULL when every registered loop ran in
 *	the last LIVENESS_STALL_SECS, else text (static storage, one
 *	caller: the endpoint's thread) like "worker 1 has not run for 12
 *	s". Stamps are atomics; the list is changed under a lock.
 */

#include "build_config.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <event2/event.h>

#include "daemon.h"
#include "liveness.h"
#include "msg.h"
#include "xalloc.h"

#define LIVENESS_STALL_SECS	10

struct liveness {
    char   *name;
    atomic_llong stamp;			/* CLOCK_MONOTONIC milliseconds */
    struct event *timer;		/* liveness_watch() only */
    struct liveness *next;
};

static pthread_mutex_t liveness_lock = PTHREAD_MUTEX_INITIALIZER;
static struct liveness *liveness_list;

void    liveness_beat(struct liveness *live)
{
    atomic_store_explicit(&live->stamp, daemon_mono_ms(), memory_order_relaxed);
}

static void liveness_tick(evutil_socket_t fd, short what, void *context)
{
    (void) fd;
    (void) what;
    liveness_beat(context);
}

struct liveness *liveness_add(const char *name)
{
    struct liveness *live = xcalloc(1, sizeof(*live));

    live->name = xstrdup(name);
    liveness_beat(live);
    pthread_mutex_lock(&liveness_lock);
    live->next = liveness_list;
    liveness_list = live;
    pthread_mutex_unlock(&liveness_lock);
    return (live);
}

struct liveness *liveness_watch(struct event_base *base, const char *name)
{
    struct liveness *live = liveness_add(name);
    struct timeval second = {1, 0};

    if ((live->timer = event_new(base, -1, EV_PERSIST, liveness_tick, live)) == NULL
	|| event_add(live->timer, &second) < 0)
	msg_fatal("%s: cannot add the liveness timer", name);
    return (live);
}

struct liveness *liveness_worker(struct event_base *base, int index)
{
    char    name[16];			/* a thread name's limit */

    snprintf(name, sizeof(name), "worker %d", index);
    if (gettid() != getpid())
	(void) pthread_setname_np(pthread_self(), name);
    return (liveness_watch(base, name));
}

void    liveness_unwatch(struct liveness **livep)
{
    struct liveness *live = *livep, **pp;

    if (live == NULL)
	return;
    pthread_mutex_lock(&liveness_lock);
    for (pp = &liveness_list; *pp != NULL; pp = &(*pp)->next) {
	if (*pp == live) {
	    *pp = live->next;
	    break;
	}
    }
    pthread_mutex_unlock(&liveness_lock);
    if (live->timer)
	event_free(live->timer);
    free(live->name);
    free(live);
    *livep = NULL;
}

const char *liveness_check(void)
{
    static char why[200];
    long long now = daemon_mono_ms(), age;
    const char *result = NULL;

    pthread_mutex_lock(&liveness_lock);
    for (struct liveness *live = liveness_list; live != NULL; live = live->next) {
	age = now - atomic_load_explicit(&live->stamp, memory_order_relaxed);
	if (age > LIVENESS_STALL_SECS * 1000LL) {
	    snprintf(why, sizeof(why), "%s has not run for %lld s", live->name, age / 1000);
	    result = why;
	    break;
	}
    }
    pthread_mutex_unlock(&liveness_lock);
    return (result);
}
