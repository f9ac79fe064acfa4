/*
 * NAME
 *	runner_int 3h
 * SUMMARY
 *	lmtp-webhook-spool's runner: what runner.c and runner_attempt.c share
 * SYNOPSIS
 *	#include "runner_int.h"
 * DESCRIPTION
 *	Private to the runner: the state of the loop (struct runner) and of
 *	one attempt (struct transfer). runner.c lists, wakes and reaps;
 *	runner_attempt.c starts one attempt and records its outcome;
 *	runner_share.c keeps the slots each receiver origin may take, and
 *	runner_wait.c the events waiting for one.
 */

#ifndef RUNNER_INT_H
#define RUNNER_INT_H

#include <sys/types.h>
#include <time.h>

#include <curl/curl.h>

#include "htable.h"
#include "post.h"
#include "route.h"
#include "spool.h"
#include "spool_tool.h"
#include "timeq.h"

struct transfer {
    struct post_handle post;
    struct spool_event ev;
    struct post_request req;
    struct webhook_key keys[SPOOL_MAX_SECRETS];	/* the route's, this attempt */
    char   *origin;				/* scheme://host:port, counted */
    long long started_ms;		/* daemon_mono_ms(): runner_share.c */
    int     flight_at;			/* its place in r->flight */
};

/* an origin's attempts in flight (r->origins) */
struct runner_origin_state {
    int     running;
    int     overdue;			/* one running half the timeout or more */
};

/* buckets of the hold table visited at each listing (at most once a second) */
#define RUNNER_HOLD_SWEEP 64

/* with inotify on active/, the longest between two listings of it that
   nothing asked for (runner_relist_due()) */
#define RUNNER_RELIST		60

/* a file in active/ that is no event yet was changed this recently: it
   may be being written (a cp), looked at again rather than buried */
#define RUNNER_SETTLE		5

/* a held event whose delivery is still saving past its hold: looked at
   again; soon, since the lock found may also be another delivery of the
   same bytes probing it for an instant (spool_hold_wait()) just as it
   was released: the post then waited 5 s */
#define RUNNER_BUSY_WAIT	1

/* an origin whose last attempt took half the timeout or more is slow for
   this long at most (until one of its attempts is quick) */
#define RUNNER_SLOW_MEMORY	600

/* a quick delivery clears an origin's slow mark only this long after the
   attempt that set it: one that answers some requests and hangs others
   stays slow */
#define RUNNER_SLOW_HOLD	60

/* past its timeout by this much, an attempt is ended by the runner (a
   timeout lowered by SIGHUP: libcurl keeps the one it started with) */
#define RUNNER_OVERRUN_GRACE_MS	500

/* an event whose route's secret files cannot be read waits this long */
#define RUNNER_SECRET_WAIT	60

struct runner {
    struct spool_tool *tool;
    struct webhook_key key;		/* the global secret; len 0: unreadable */
    int     key_missing;		/* since the last listing that read it */
    long long key_said;			/* daemon_mono_sec() it was last logged */
    size_t  key_weak_said;		/* the short key length last warned of */
    CURLM  *multi;
    struct htable *inflight;		/* id -> transfer */
    struct htable *tried;		/* ids a flush pass has started */
    struct htable *held;		/* id -> next attempt the spool could
					   not record (full): kept here */
    struct htable *answered;		/* ids delivered (or 410) whose file
					   could not be removed: not again */
    struct htable *later;		/* id -> when it is due (not yet) */
    struct timeq *queue;		/* the same, earliest first */
    char  **names;			/* cached listing of active/ */
    int     count, next;
    time_t  listed;			/* when the last listing was due */
    long long relisted;			/* daemon_mono_sec() active/ was last listed; -1 */
    long long skew;			/* time() - daemon_mono_sec() then */
    struct timespec active_seen;	/* active/'s mtime then */
    int     lost;			/* a wake-up may be lost: list again */
    int     running;
    int     delivered, failed, dropped;
    int     wake_fd, watch;		/* inotify on active/, or -1 */
    dev_t   watch_dev;			/* the directory watched: active/ */
    ino_t   watch_ino;			/* replaced, its watch is stale */
    int     pool;			/* free files in tmp/, about */
    char  **pending;			/* names woken for, not started yet */
    int     phead, npending;		/* [phead, npending) are waiting */
    char   *spool_error;		/* last spool_ready() error logged */
    struct config *first_cfg;		/* tool->dir points into it */
    enum runner_mode mode;
    int     signal_fd;			/* daemon_signal_fd() */
    int     stop;			/* TERM or INT seen */
    int     lock_fd;			/* runner.lock, flocked */
    int     scan_more;			/* the last scan ran out of time */
    int     reap_more;			/* finished attempts left for a turn */
    struct spool_sweep sweep;		/* of tmp/, under way when .dir */
    struct htable *origins;		/* origin -> runner_origin_state */
    struct htable *slow;		/* origin -> daemon_mono_sec() marked */
    int     slow_running;		/* attempts in flight to slow origins
					   (recounted: runner_share_look()) */
    struct transfer **flight;		/* every attempt in flight */
    int     nflight, flight_size;
    struct htable *capped_set;		/* ids put aside (runner_wait.c) */
    struct htable *wait_by_origin;	/* origin -> its queue */
    struct runner_wait **waits;		/* the origins with events put aside */
    int     nwaits, waits_size;
    int     nwaiting;			/* events put aside */
    int     flushing;			/* a flush pass: attempts are "tried" */
    int     flush_listed;		/* the pass has listed active/ */
    long long wait_seq;			/* the order they were put aside in */
};

/* runner_attempt.c */
/* how runner_start() may start an event: found due (put aside while
   others wait or its origin has its share), picked among those put
   aside (admitted), or uncapped (no other may take the slot) */
enum runner_how { RUNNER_FOUND, RUNNER_PICKED, RUNNER_UNCAPPED };

void    runner_start(struct runner *r, const char *id, int all, enum runner_how how);
void    runner_done(struct runner *r, struct transfer *t, CURLcode rc);
int     runner_hold_over(void *value, void *context);
int     runner_slow_over(void *value, void *context);
void    runner_misnamed(const char *name, void *context);
int     runner_answered_gone(void *path, void *context);
void    runner_later(struct runner *r, const char *id, long long when);

/* runner_share.c */
char   *runner_origin(const char *url);
int     runner_share_admits(struct runner *r, const char *origin);
void    runner_share_start(struct runner *r, struct transfer *t);
void    runner_share_end(struct runner *r, struct transfer *t);
void    runner_slow_mark(struct runner *r, const char *origin, double seconds, int failed);
int     runner_slow_over(void *value, void *context);
void    runner_share_free(struct runner *r);
void    runner_share_look(struct runner *r);
int     runner_admits(struct runner *r, const char *origin, int *slow);
int     runner_share_running(struct runner *r, const char *origin);

/* runner_wait.c */
void    runner_capped(struct runner *r, const char *id, const char *origin, int all);
char   *runner_capped_next(struct runner *r, int any, int *uncapped, int *all);
int     runner_capped_count(const struct runner *r);
void    runner_capped_free(struct runner *r);

#endif
