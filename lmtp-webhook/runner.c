/*
 * NAME
 *	runner 3
 * SUMMARY
 *	lmtp-webhook-spool's delivery loop (run and flush)
 * SYNOPSIS
 *	#include "spool_tool.h"
 *
 *	int	runner_main(&tool, mode)
 *	long long runner_backoff(attempts, retry_after)	(runner_lock.c)
 *	int	runner_due(next, now)			(runner_lock.c)
 *	int	runner_lock(dir, &fd, &holder_pid)	(runner_lock.c)
 *	void	runner_start(r, id, all, how) (runner_attempt.c)
 *	void	runner_done(r, transfer, curl_code)	(runner_attempt.c)
 * DESCRIPTION
 *	One process delivers a spool at a time (runner_lock(): a flock on
 *	the spool directory, which removing runner.lock does not undo;
 *	runner.lock, made again within a second in every mode if it is
 *	removed, names it), so "flush" either signals the
 *	daemon (SIGUSR1) or, when none runs, does the pass itself.
 *
 *	runner_main() posts due events through one libcurl multi handle,
 *	at most "concurrency" at a time (connections are reused). The
 *	outcome of an attempt: 2xx (post.c: whatever the body then does):
 *	removed (its file kept for reuse by the plugin, spool_recycle()).
 *	410: removed, logged as dropped. Otherwise: attempts+1,
 *	last_error, and the next attempt after runner_backoff() (the
 *	Standard Webhooks schedule, or Retry-After from a 429 or 503, at
 *	most a day: a longer wait is the receiver's mistake, not a reason
 *	to drop the event); rewritten durably (spool_update(): not if the event was dropped
 *	meanwhile; a drop must not be undone by the attempt under way;
 *	when the spool is full, the next attempt's time is kept in memory).
 *	An event older than dead_letter_after moves to dead/ at the failed
 *	attempt after which no next one falls within it (runner_outcome());
 *	one found past it without such a failure (the runner was down for
 *	longer, the clock jumped forward, tried before or not) gets its
 *	attempt first: never dead-lettered unposted. A next
 *	attempt further away than RUNNER_RETRY_AFTER_MAX, the longest wait
 *	set here, was set by a clock since stepped back: due now.
 *
 *	RUNNER_DAEMON is the only poster of events: the plugin commits
 *	every event into active/ and the daemon, woken by that rename
 *	(inotify IN_MOVED_TO on active/), starts its first attempt at
 *	once. A wake-up can be missed (the inotify queue overflowed,
 *	active/ was removed and made again, a spool shared over NFS):
 *	that only delays, since active/ is also looked at every second
 *	(runner_relist_due(): listed again when it changed, a wake-up was
 *	lost, or RUNNER_RELIST seconds passed; every second without
 *	inotify). An event not due yet is looked at again when it falls
 *	due (r->queue: runner_later()), not at every listing: an idle
 *	runner with 50,000 waiting stat()ed them all every second.
 *	A removed subdirectory of the spool is made again. A file in
 *	active/ that is not an event (spool_load(): no regular file, or an
 *	id that is not its name) moves to dead/ as it is, with one
 *	error. An event for dead/ that the full spool cannot rewrite
 *	there moves as it is. A delivered event whose file cannot be
 *	removed (active/ read-only) is remembered, never posted again by
 *	this process, and removed at a later scan. An event file that is
 *	mapped (1 MB and more) and cut by hand during its attempt stops
 *	the transfer (spool_map_guard(): no SIGBUS), the attempt does not
 *	count, and the next scan moves the file to dead/.
 *
 *	The daemon starts and takes signals as every mxkit daemon does
 *	(skeleton_start(), daemon_signal_action(); its self-pipe is one
 *	more descriptor curl_multi_poll() waits on): TERM and INT stop
 *	once the attempts under way are answered or time out; HUP
 *	reloads the configuration file (tool_reload(): what can be
 *	applied is, what cannot is named in the log); USR1 flushes
 *	(every event once, due or not). RUNNER_FLUSH makes one such pass
 *	and returns (TERM and INT stop it too; a HUP is logged and
 *	ignored). The daemon also sweeps tmp/ of crashed writers'
 *	files when it starts and every ten minutes, SPOOL_SWEEP_STEP names
 *	per turn of its loop (spool_sweep_tmp_step()).
 *	GET /readyz on metrics_listen (metrics_http(3)) is not ready while
 *	the spool is unusable (not writable: the plugin could not commit
 *	either) or the global secret unreadable (the events it signs wait;
 *	routes with a secret_file= of their own go on).
 * DIAGNOSTICS
 *	One log line per attempt. runner_main() returns the number of
 *	events still waiting, or -1 when the spool cannot be used.
 */

#include "build_config.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/inotify.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <curl/curl.h>
#include <openssl/crypto.h>

#include "daemon.h"
#include "htable.h"
#include "metrics.h"
#include "liveness.h"
#include "metrics_http.h"
#include "msg.h"
#include "post.h"
#include "route.h"
#include "skeleton.h"
#include "spool.h"
#include "spool_tool.h"
#include "xalloc.h"

#include "runner_int.h"

#define RUNNER_SWEEP_INTERVAL	600	/* seconds between sweeps of tmp/ */
#define RUNNER_PENDING_MAX	4096	/* woken names kept; more: list active/ */

/*
 * runner_watch - inotify on active/ (again, after it was removed): the
 * plugin's commit renames the event into it, held, and releases it
 * once the mail is saved, which wakes us at once.
 */
static void runner_watch(struct runner *r)
{
    char   *path;

    if (r->wake_fd < 0 || r->watch >= 0)
	return;
    path = spool_path(r->tool->dir, SPOOL_ACTIVE, NULL);
    /* IN_ATTRIB: a held event released (its mtime set to now, spool_hold.c) */
    r->watch = inotify_add_watch(r->wake_fd, path, IN_MOVED_TO | IN_ATTRIB | IN_ONLYDIR);
    if (r->watch >= 0) {
	struct stat st;

	if (stat(path, &st) == 0) {
	    r->watch_dev = st.st_dev;
	    r->watch_ino = st.st_ino;
	}
    }
    free(path);
}

/*
 * runner_watch_stale - active/ is another directory than the one watched
 * (renamed away and a copy renamed in: the watch follows the old one, and
 * no wake-up comes from the new): watch it instead, and list it whole.
 */
static void runner_watch_stale(struct runner *r, const struct stat *st)
{
    if (r->watch < 0 || (st->st_dev == r->watch_dev && st->st_ino == r->watch_ino))
	return;
    (void) inotify_rm_watch(r->wake_fd, r->watch);
    r->watch = -1;
    r->lost = 1;
    runner_watch(r);
}

/* runner_spool_check - subdirectories made again if removed; said once */

static void runner_spool_check(struct runner *r)
{
    const char *err = spool_ready(r->tool->dir);

    if (err != NULL && (r->spool_error == NULL || strcmp(err, r->spool_error) != 0)) {
	msg_error("spool %s unusable: %s", r->tool->dir, err);
	free(r->spool_error);
	r->spool_error = xstrdup(err);
    } else if (err == NULL && r->spool_error != NULL) {
	msg_info("spool %s usable again", r->tool->dir);
	free(r->spool_error);
	r->spool_error = NULL;
    }
    runner_watch(r);
}

/*
 * runner_relock - runner.lock made again once a second if it was removed,
 * in every mode that posts (a flush pass as the daemon): while it is
 * missing, only the directory's flock keeps a second runner out, and
 * neither it nor flush can find whom to name or signal.
 */
static void runner_relock(struct runner *r)
{
    long    holder;

    if (runner_lock_check(r->tool->dir, &r->lock_fd, &holder) < 0) {
	msg_error("runner.lock was removed and pid %ld locked a new one: stopping", holder);
	r->stop = 1;
    }
}

/*
 * runner_wakeups - the names inotify saw renamed into active/, kept for
 * runner_scan(). An overflow (the kernel's queue, or ours) or a lost
 * watch only means listing active/ now.
 */
static void runner_wakeups(struct runner *r)
{
    char    buf[8192] __attribute__((aligned(__alignof__(struct inotify_event))));
    ssize_t n;

    while (r->wake_fd >= 0 && (n = read(r->wake_fd, buf, sizeof(buf))) > 0) {
	for (char *p = buf; p < buf + n;) {
	    struct inotify_event *e = (struct inotify_event *) (void *) p;

	    if (e->mask & (IN_Q_OVERFLOW | IN_IGNORED)) {
		r->next = r->count;		/* relist at the next scan */
		r->lost = 1;
	    }
	    if ((e->mask & IN_IGNORED) && e->wd == r->watch)
		r->watch = -1;			/* active/ gone: watch again */
	    else if (e->len > 0 && spool_id_ok(e->name)) {
		if (r->npending < RUNNER_PENDING_MAX) {
		    r->pending = xrealloc(r->pending, (r->npending + 1) * sizeof(char *));
		    r->pending[r->npending++] = xstrdup(e->name);
		} else {
		    r->next = r->count;
		    r->lost = 1;
		}
	    }
	    p += sizeof(*e) + e->len;
	}
    }
}

/*
 * runner_scan - start events, up to the concurrency limit, from a cached
 * listing of active/ that is refreshed (with the secret) once used up:
 * draining a large spool must not list it again for every event. Woken
 * events are started by name; a listing used up is refreshed at most
 * once a second outside a flush pass: under a steady stream of
 * deliveries, listing active/ and tmp/ and reading the secret after
 * every event was a third of the runner's system calls, and every
 * event a listing could find is either woken for or found by the next
 * second's listing (a missed wake-up only delays, as before).
 *
 * One scan works at most RUNNER_SCAN_MS, then sets r->scan_more and
 * returns; the loop calls it again at once after its other work. Events
 * that start no transfer (dead-lettered, unreadable, held: each a
 * durable write) do not fill the concurrency limit, and a flush after an
 * outage went through 30,000 of them in one turn of 15 s: no signal,
 * no finished transfer, no liveness stamp (GET /healthz said the runner
 * had not run for 10 s, and an orchestrator would restart it mid-flush).
 */
#define RUNNER_SCAN_MS	100

/*
 * runner_relist_due - whether a listing of active/ is due: where inotify
 * tells of every event renamed or released into it, only when active/
 * changed (its mtime: a file put there by hand, a spool shared over NFS)
 * or a wake-up may have been lost, when the wall clock was stepped
 * (what it knew was the old clock's times), and every RUNNER_RELIST seconds
 * (forgetting what r->later knew); without inotify, every time.
 */
static int runner_relist_due(struct runner *r)
{
    char   *path = spool_path(r->tool->dir, SPOOL_ACTIVE, NULL);
    long long now = daemon_mono_sec(), skew = (long long) time(NULL) - now;
    struct stat st;
    int     changed = 1;

    if (stat(path, &st) == 0) {
	changed = st.st_mtim.tv_sec != r->active_seen.tv_sec
	    || st.st_mtim.tv_nsec != r->active_seen.tv_nsec;
	r->active_seen = st.st_mtim;
	runner_watch_stale(r, &st);
    }
    free(path);
    /* the wall clock stepped (skew moved): what r->later and r->queue
       hold is the old clock's times; each event is looked at again */
    if (r->wake_fd < 0 || r->watch < 0 || r->lost || r->relisted < 0
	|| now - r->relisted >= RUNNER_RELIST || skew > r->skew + 2 || skew < r->skew - 2) {
	r->skew = skew;
	htable_destroy(&r->later, free);	/* all looked at again */
	r->later = htable_create(64);
	timeq_clear(r->queue);
	r->lost = 0;
	r->relisted = now;
	return (1);
    }
    return (changed);
}

/* runner_known_later - a listed name known not to be due yet (r->later) */

static int runner_known_later(struct runner *r, const char *id)
{
    long long *when = htable_find(r->later, id);

    return (when != NULL && !runner_due(*when, time(NULL)));
}

/*
 * runner_due_later - the next event of r->queue whose time has come (1,
 * the name for the caller to free); entries that r->later no longer
 * names with that time (looked at since, or forgotten) are dropped.
 */
static int runner_due_later(struct runner *r, const char **name)
{
    long long when, *known;
    char   *id;

    while (timeq_first(r->queue, &when) && runner_due(when, time(NULL))) {
	id = timeq_pop(r->queue, &when);
	if ((known = htable_find(r->later, id)) != NULL && *known == when) {
	    *name = id;
	    return (1);
	}
	free(id);
    }
    return (0);
}

/*
 * runner_work_left - something a scan could start now: listed names not
 * looked at, wake-ups, queued events whose time has come. Checked when
 * an attempt ends, so that a pass is not held to "concurrency" events a
 * second: 3,000 events due at once took 94 s at 32 a second.
 */
static int runner_work_left(struct runner *r)
{
    long long when;

    return (r->next < r->count || r->phead < r->npending || runner_capped_count(r) > 0
	    || (timeq_first(r->queue, &when) && runner_due(when, time(NULL))));
}

/*
 * runner_key_load - the global secret, read again at each listing. While
 * it cannot be read only the events it signs wait (runner_keys(): those
 * of routes without a secret_file= of their own, looked at again in
 * RUNNER_SECRET_WAIT seconds or once it is back): the scan stopped for
 * it, and routes with their own secret posted nothing either. Back, the
 * next listing looks at every event again (r->lost).
 */
static void runner_key_load(struct runner *r)
{
    const char *err, *weak;

    spool_owner_root();			/* a secret root alone may read */
    err = sign_key_load(r->tool->secret_file, &r->key);
    spool_owner_again();
    if (err != NULL) {
	if (r->key.len > 0 || daemon_mono_sec() - r->key_said >= RUNNER_SECRET_WAIT) {
	    msg_error("%s: the events of routes without their own secret_file= wait until "
		      "it is readable", err);
	    r->key_said = daemon_mono_sec();
	}
	r->key.len = 0;
	r->key_missing = 1;
    } else if (r->key_missing) {
	msg_info("the webhook secret is readable again");
	r->key_missing = 0;
	r->key_said = 0;
	r->lost = 1;				/* what waited for it: due now */
    }
    if ((weak = err == NULL ? sign_key_weak(&r->key) : NULL) != NULL
	&& r->key_weak_said != r->key.len) {
	msg_warn("secret_file %s: %s", r->tool->secret_file, weak);
	r->key_weak_said = r->key.len;		/* once per key length */
    } else if (err == NULL && weak == NULL) {
	r->key_weak_said = 0;
    }
}

static int runner_scan(struct runner *r, int all)
{
    int     before = r->running, relisted = 0, created, uncapped, flushed;
    long long until = daemon_mono_ms() + RUNNER_SCAN_MS;
    const char *name;

    r->scan_more = 0;
    r->flushing = all;
    while (r->running < r->tool->concurrency) {
	if (daemon_mono_ms() >= until) {
	    r->scan_more = 1;
	    break;
	}
	if (r->phead < r->npending) {		/* woken: new events first */
	    char   *woken = r->pending[r->phead++];

	    if (htable_find(r->inflight, woken) == NULL)
		runner_start(r, woken, 0, RUNNER_FOUND);
	    free(woken);
	    if (r->phead == r->npending)
		r->phead = r->npending = 0;
	    continue;
	}
	/* retries come due during a daemon's flush pass too: skipped, they
	   waited as long as anything was in flight (helper-114) */
	if ((!all || r->mode == RUNNER_DAEMON) && runner_due_later(r, &name)) {
	    if (htable_find(r->inflight, name) == NULL)
		runner_start(r, name, 0, RUNNER_FOUND);
	    free((char *) name);
	    continue;
	}
	/* then those put aside (with the new and the due ones), as their
	   origins are admitted: the fewest in flight first */
	if ((name = runner_capped_next(r, 0, &uncapped, &flushed)) != NULL) {
	    if (htable_find(r->inflight, name) == NULL)
		runner_start(r, name, flushed, RUNNER_PICKED);
	    free((char *) name);
	    continue;
	}
	if (r->next >= r->count
	    && (name = runner_capped_next(r, 1, &uncapped, &flushed)) != NULL) {
	    /* nothing else due, none admitted: uncapped */
	    if (htable_find(r->inflight, name) == NULL)
		runner_start(r, name, flushed, uncapped ? RUNNER_UNCAPPED : RUNNER_PICKED);
	    free((char *) name);
	    continue;
	}
	if (r->next >= r->count) {
	    if (relisted || (!all && r->listed == time(NULL)))
		break;
	    r->listed = time(NULL);
	    (void) htable_sweep(r->held, RUNNER_HOLD_SWEEP, runner_hold_over, &r->listed, free);
	    (void) htable_sweep(r->answered, RUNNER_HOLD_SWEEP, runner_answered_gone, NULL, free);
	    if (r->slow != NULL)
		(void) htable_sweep(r->slow, RUNNER_HOLD_SWEEP, runner_slow_over, NULL, free);
	    runner_spool_check(r);
	    r->pool = spool_free_count(r->tool->dir);
	    if (all || runner_relist_due(r)) {
		r->flush_listed |= all;		/* this pass's listing */
		spool_list_free(r->names, r->count);
		r->names = spool_list_foreign(r->tool->dir, SPOOL_ACTIVE, &r->count,
					      runner_misnamed, r);
		r->next = 0;
	    }
	    relisted = 1;
	    runner_key_load(r);
	    continue;
	}
	name = r->names[r->next++];
	if (htable_find(r->inflight, name) != NULL
	    || (all && htable_find(r->tried, name) != NULL)
	    || (!all && runner_known_later(r, name)))
	    continue;
	if (all)
	    *htable_slot(r->tried, name, &created) = r;
	runner_start(r, name, all, RUNNER_FOUND);
    }
    return (r->running - before);
}

/*
 * runner_reap - the outcomes of finished attempts, for at most
 * RUNNER_SCAN_MS a turn (at least one): each failed attempt's outcome
 * is a durable write (two fsyncs), and on a slow disk 32 of them in one
 * turn held the loop for half a minute: no liveness stamp, no signal,
 * no wake-up, and curl's timers ran out on answers already waiting in
 * their sockets (a 200 logged as a timeout, and posted again). Outcomes
 * not taken stay in curl's queue for the next turn (r->reap_more).
 */
static void runner_reap(struct runner *r)
{
    long long until = daemon_mono_ms() + RUNNER_SCAN_MS;
    CURLMsg *m;
    int     left, still;

    r->reap_more = 0;
    curl_multi_perform(r->multi, &still);
    while ((m = curl_multi_info_read(r->multi, &left)) != NULL) {
	char   *private = NULL;

	if (m->msg != CURLMSG_DONE)
	    continue;
	curl_easy_getinfo(m->easy_handle, CURLINFO_PRIVATE, &private);
	runner_done(r, (struct transfer *) (void *) private, m->data.result);
	if (left > 0 && daemon_mono_ms() >= until) {
	    r->reap_more = 1;
	    break;
	}
    }
}

/*
 * runner_overrun - attempts started with a longer timeout than the one
 * now in force, running past it, ended as timed out (a little after it:
 * libcurl says its own when it can), for at most RUNNER_SCAN_MS a turn.
 * libcurl keeps the timeout an attempt started with: a SIGHUP that
 * lowered it from 60 s to 2 s, logged as applied, left those attempts
 * running 58 s more, and the live events waiting (helper-114). Only
 * those: an attempt that ran its own timeout is libcurl's to end, and
 * may be finished already, its outcome waiting to be reaped (on a slow
 * disk, for many turns).
 */
static void runner_overrun(struct runner *r)
{
    long long now = daemon_mono_ms(), until = now + RUNNER_SCAN_MS;
    struct transfer *t;

    for (int i = 0; i < r->nflight; /* runner_done() moves the last here */ ) {
	t = r->flight[i];
	if (t->req.timeout_ms <= r->tool->timeout_ms
	    || now - t->started_ms < r->tool->timeout_ms + RUNNER_OVERRUN_GRACE_MS) {
	    i++;
	    continue;
	}
	if (daemon_mono_ms() >= until)
	    break;
	snprintf(t->post.curl_error, sizeof(t->post.curl_error), "no answer within the "
		 "timeout now in force (%ld ms, reloaded)", r->tool->timeout_ms);
	runner_done(r, t, CURLE_OPERATION_TIMEDOUT);
    }
}

/* runner_apply_reload - SIGHUP: tool_reload(), then what it changed here */

static void runner_apply_reload(struct runner *r)
{
    struct config *old;
    int     rc;

    spool_owner_root();			/* the file may be root's alone */
    rc = tool_reload(r->tool, &old);
    spool_owner_again();
    if (rc < 0) {
	metrics_config_reload(0);
	return;
    }
    metrics_config_reload(1);
    if (old != r->first_cfg)		/* nothing points into it now */
	config_free(&old);
    curl_multi_setopt(r->multi, CURLMOPT_MAX_TOTAL_CONNECTIONS, (long) r->tool->concurrency);
    runner_key_load(r);			/* at once: the man page says so, and an
					   event picked before the next listing was
					   signed with the old one (helper-121) */
    r->next = r->count;			/* list again */
    r->lost = 1;
    r->flush_listed = 0;		/* a flush pass: from that listing on */
}

/*
 * runner_signal_dispatch - act on the signals received since the last
 * turn of the loop (the common policy, daemon_signal_action()); returns
 * 1 when a flush pass starts.
 */
static int runner_signal_dispatch(struct runner *r)
{
    int     sig, flush = 0;

    while ((sig = daemon_signal_next()) != 0) {
	switch (daemon_signal_action(sig)) {
	case DAEMON_STOP:
	    r->stop = 1;
	    break;
	case DAEMON_RELOAD:
	    if (r->mode == RUNNER_DAEMON)
		runner_apply_reload(r);
	    else
		msg_info("SIGHUP ignored: a flush pass has no configuration to reload");
	    break;
	case DAEMON_FLUSH:			/* everything once, now */
	    flush = 1;
	    r->flush_listed = 0;
	    htable_destroy(&r->tried, NULL);
	    r->tried = htable_create(64);
	    break;
	}
    }
    return (flush);
}

/* Readiness, set by the loop, read by the metrics endpoint's thread */

static _Atomic(const char *) runner_unready = "starting";

static const char *runner_ready(void)
{
    return (atomic_load(&runner_unready));
}

static void runner_ready_sample(struct runner *r)
{
    atomic_store(&runner_unready, r->spool_error ? "spool unusable"
		 : r->key.len == 0 ? "webhook secret unreadable" : NULL);
}

/* runner_sweep - tmp/ files left by crashed writers: one step per turn */

static void runner_sweep(struct runner *r)
{
    if (spool_sweep_tmp_step(r->tool->dir, time(NULL), &r->sweep, SPOOL_SWEEP_STEP)
	&& r->sweep.removed > 0)
	msg_warn("removed %d file(s) that crashed writers left in %s/%s", r->sweep.removed,
		 r->tool->dir, SPOOL_TMP);
}

/*
 * runner_loop - until stopped (daemon), or until one pass is done (flush).
 * Each turn (at least every 200 ms: curl_multi_poll()'s timeout) stamps
 * the runner's liveness for GET /healthz.
 */
static void runner_loop(struct runner *r, enum runner_mode mode)
{
    /* intervals on the monotonic clock: a clock stepped back an hour
       stopped the sweeps and the relisting for that hour */
    long long last_scan = daemon_mono_sec(), last_sweep = last_scan, last_lock = last_scan;
    int     flushing = mode == RUNNER_FLUSH, numfds, started;
    struct liveness *live = liveness_add("runner");

    if (mode == RUNNER_DAEMON)
	runner_sweep(r);
    runner_scan(r, flushing);			/* reads the secret */
    if (mode == RUNNER_DAEMON) {
	/* sampled before READY=1: once the starter returns, /readyz tells */
	runner_ready_sample(r);
	metrics_http_readiness(runner_ready);
	skeleton_ready(1);
    }
    for (;;) {
	liveness_beat(live);
	runner_reap(r);
	runner_overrun(r);
	if (runner_signal_dispatch(r))
	    flushing = 1;
	runner_ready_sample(r);
	if (daemon_mono_sec() != last_lock) {
	    last_lock = daemon_mono_sec();
	    runner_relock(r);
	}
	if (r->stop) {
	    skeleton_ready(0);
	    if (r->running == 0)
		break;
	} else {
	    if (mode == RUNNER_DAEMON && (r->sweep.dir != NULL
				  || daemon_mono_sec() - last_sweep >= RUNNER_SWEEP_INTERVAL)) {
		runner_sweep(r);
		last_sweep = daemon_mono_sec();
	    }
	    runner_wakeups(r);
	    if (flushing || r->scan_more || r->phead < r->npending
		|| daemon_mono_sec() != last_scan
		|| (r->running < r->tool->concurrency && runner_work_left(r))) {
		started = runner_scan(r, flushing);
		last_scan = daemon_mono_sec();
		if (flushing && started == 0 && r->running == 0 && !r->scan_more
		    && mode == RUNNER_FLUSH)
		    break;
		/* the daemon's pass ends once its listing has been gone
		   through: waiting for nothing in flight, it lasted as long as
		   traffic did (helper-114); what it put aside keeps its
		   flush attempt */
		if (flushing && mode == RUNNER_DAEMON && r->flush_listed
		    && r->next >= r->count && !r->scan_more)
		    flushing = 0;
	    }
	}
	{
	    struct curl_waitfd wait[2] = {{r->signal_fd, CURL_WAIT_POLLIN, 0},
	    {r->wake_fd, CURL_WAIT_POLLIN, 0}};

	    curl_multi_poll(r->multi, wait, r->wake_fd >= 0 ? 2 : 1,
			    r->reap_more || (r->scan_more && !r->stop)
			    || (r->sweep.dir != NULL && !r->stop) ? 0 : 200, &numfds);
	}
    }
    spool_sweep_tmp_end(&r->sweep);
    liveness_unwatch(&live);
}

/*
 * runner_seed - random() (the retry jitter, runner_backoff()) seeded once
 * per runner from getrandom(); unseeded, every runner on every host drew
 * the same jitter, and their retries to one receiver stayed in step.
 */
static void runner_seed(void)
{
    unsigned seed;

    if (getrandom(&seed, sizeof(seed), GRND_NONBLOCK) != (ssize_t) sizeof(seed))
	seed = (unsigned) time(NULL) ^ ((unsigned) getpid() << 16);
    srandom(seed);
}

/* runner_free - what runner_main() set up for the loop, once it ended */

static void runner_free(struct runner *r)
{
    curl_multi_cleanup(r->multi);
    htable_destroy(&r->inflight, NULL);
    htable_destroy(&r->tried, NULL);
    htable_destroy(&r->held, free);
    htable_destroy(&r->answered, free);
    htable_destroy(&r->later, free);
    timeq_free(&r->queue);
    runner_capped_free(r);
    runner_share_free(r);
    spool_list_free(r->names, r->count);
    for (int i = r->phead; i < r->npending; i++)
	free(r->pending[i]);
    free(r->pending);
    free(r->spool_error);
    if (r->wake_fd >= 0)
	close(r->wake_fd);
}

int     runner_main(struct spool_tool *tool, enum runner_mode mode)
{
    struct skeleton sk = {.pid_fd = -1, .detached = runner_lock_detached};
    struct runner r;
    long    holder;
    int     left;

    /* before detaching: a second runner fails with its exit status; the
       detached daemon records its own pid (flush signals it) before its
       pid file appears */
    memset(&r, 0, sizeof(r));
    r.relisted = -1;
    if (runner_lock(tool->dir, &r.lock_fd, &holder) < 0) {
	if (holder > 0)
	    msg_error("the spool %s is being delivered by pid %ld", tool->dir, holder);
	else					/* waited 3 s for its name */
	    msg_error("the spool %s is being delivered by another process, which runner.lock "
		      "does not name (removed, or the process is still starting)", tool->dir);
	return (-1);
    }
    if (mode == RUNNER_DAEMON) {
	struct daemon_opts opts = {tool->config_path, 0, tool->foreground};

	/* series first: skeleton_start() starts serving them */
	if (config_get_str(tool->cfg, "metrics_listen"))
	    runner_metrics_init(tool);
	sk.context = &r.lock_fd;
	spool_owner_root();		/* pid file, metrics port, "user" */
	skeleton_start(&sk, &opts, tool->cfg);
	spool_owner_again();
    }
    runner_seed();				/* after a fork to detach */
    r.mode = mode;
    r.signal_fd = daemon_signal_fd();
    r.tool = tool;
    r.first_cfg = tool->cfg;
    r.watch = -1;
    r.wake_fd = mode == RUNNER_DAEMON ? inotify_init1(IN_NONBLOCK | IN_CLOEXEC) : -1;
    if (mode == RUNNER_DAEMON && r.wake_fd < 0)
	msg_warn("inotify_init1: %m; new events wait for the next scan (up to a second)");
    r.inflight = htable_create(64);
    r.tried = htable_create(64);
    r.held = htable_create(64);
    r.answered = htable_create(64);
    r.later = htable_create(64);
    r.queue = timeq_create();
    if ((r.multi = curl_multi_init()) == NULL)
	msg_fatal("curl_multi_init failed");
    curl_multi_setopt(r.multi, CURLMOPT_MAX_TOTAL_CONNECTIONS, (long) tool->concurrency);
    if (mode == RUNNER_DAEMON)
	msg_info("delivering %s, %d at a time", tool->dir, tool->concurrency);
    runner_spool_check(&r);
    spool_map_guard();			/* a mapped event cut under us: no SIGBUS */
    runner_loop(&r, mode);
    runner_free(&r);
    {
	char  **names = spool_list(tool->dir, SPOOL_ACTIVE, &left);

	spool_list_free(names, left);
    }
    if (mode == RUNNER_FLUSH)
	printf("flush: %d delivered, %d failed (retry later), %d dropped (410), %d waiting\n",
	       r.delivered, r.failed, r.dropped, left);
    else
	msg_info("stopped: %d delivered, %d failed, %d dropped", r.delivered, r.failed,
		 r.dropped);
    spool_owner_root();			/* the pid file is root's */
    skeleton_stop(&sk);
    runner_unlock(r.lock_fd);
    if (r.first_cfg != tool->cfg)
	config_free(&r.first_cfg);	/* after the last use of tool->dir */
    return (left);
}
