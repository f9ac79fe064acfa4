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
 * DESCRIPTION
 *	One process delivers a spool at a time (runner_lock(), also if
 *	runner.lock is removed under it), so "flush" either signals the
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
 *	An event older than dead_letter_after moves to dead/ instead of
 *	being tried again; one never tried (the runner was down for
 *	longer, the clock jumped forward) gets its attempt first. A next
 *	attempt further away than RUNNER_RETRY_AFTER_MAX, the longest wait
 *	set here, was set by a clock since stepped back: due now.
 *
 *	RUNNER_DAEMON is the only poster of events: the plugin commits
 *	every event into active/ and the daemon, woken by that rename
 *	(inotify IN_MOVED_TO on active/), starts its first attempt at
 *	once. A wake-up can be missed (the inotify queue overflowed,
 *	active/ was removed and made again, a spool shared over NFS):
 *	that only delays, since active/ is also scanned every second.
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
 *	files when it starts and every ten minutes (spool_sweep_tmp()).
 *	GET /readyz on metrics_listen (metrics_http(3)) is not ready while
 *	the spool is unusable (not writable: the plugin could not commit
 *	either) or the secret unreadable (nothing could be posted).
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

#define RUNNER_SWEEP_INTERVAL	600	/* seconds between sweeps of tmp/ */
#define RUNNER_PENDING_MAX	4096	/* woken names kept; more: list active/ */

struct transfer {
    struct post_handle post;
    struct spool_event ev;
    struct post_request req;
    struct webhook_key keys[SPOOL_MAX_SECRETS];	/* the route's, this attempt */
};

/* buckets of the hold table visited at each listing (at most once a second) */
#define RUNNER_HOLD_SWEEP 64

/* an event whose route's secret files cannot be read waits this long */
#define RUNNER_SECRET_WAIT	60

struct runner {
    struct spool_tool *tool;
    struct webhook_key key;
    CURLM  *multi;
    struct htable *inflight;		/* id -> transfer */
    struct htable *tried;		/* ids a flush pass has started */
    struct htable *held;		/* id -> next attempt the spool could
					   not record (full): kept here */
    struct htable *answered;		/* ids delivered (or 410) whose file
					   could not be removed: not again */
    char  **names;			/* cached listing of active/ */
    int     count, next;
    time_t  listed;			/* when active/ was last listed */
    int     running;
    int     delivered, failed, dropped;
    int     wake_fd, watch;		/* inotify on active/, or -1 */
    int     pool;			/* free files in tmp/, about */
    char  **pending;			/* names woken for, not started yet */
    int     phead, npending;		/* [phead, npending) are waiting */
    char   *spool_error;		/* last spool_ready() error logged */
    struct config *first_cfg;		/* tool->dir points into it */
    enum runner_mode mode;
    int     signal_fd;			/* daemon_signal_fd() */
    int     stop;			/* TERM or INT seen */
    int     lock_fd;			/* runner.lock, flocked */
};


static void runner_hold(struct runner *r, const char *id, long long when);

/*
 * runner_dead - the event into dead/, rewritten with its last attempt.
 * When that cannot be written (the spool full) the file moves as it is
 * (a rename needs no space) and the last attempt is in the log only: left
 * in active/, due, it was posted again at every scan until
 * dead_letter_after had passed. When even that fails, no attempt before
 * its backoff.
 */
static void runner_dead(struct runner *r, struct spool_event *ev, const char *path)
{
    const char *err;
    char   *dead;
    long long now = (long long) time(NULL);

    if ((err = spool_store(r->tool->dir, SPOOL_DEAD, ev)) == NULL) {
	if (unlink(path) < 0)
	    msg_error("unlink %s: %m", path);
    } else {
	dead = spool_path(r->tool->dir, SPOOL_DEAD, ev->id);
	if (rename(path, dead) < 0) {
	    msg_error("event %s: cannot move to dead/: %s; nor rename it there: %m", ev->id,
		      err);
	    runner_hold(r, ev->id, ev->next_attempt > now ? ev->next_attempt
			: now + RUNNER_SECRET_WAIT);
	    free(dead);
	    return;
	}
	msg_error("event %s: cannot write its last attempt into dead/: %s; moved there "
		  "as it was", ev->id, err);
	free(dead);
    }
    runner_count(runner_metrics.dead);
    msg_warn("event %s dead-lettered after %d attempts over %llds: %s", ev->id,
	     ev->attempts, (long long) time(NULL) - ev->created,
	     ev->last_error ? ev->last_error : "no answer");
}

/*
 * runner_unreadable - a file in active/ that is not an event (truncated
 * by hand, copied in from elsewhere): moved to dead/ as it is, with one
 * error (spool_bury(): never over dead/ID), rather than warned about at
 * every scan and kept forever.
 */
static void runner_unreadable(struct runner *r, const char *id, const char *path,
			              const char *why)
{
    char    name[SPOOL_BURY_NAME];

    if (spool_bury(r->tool->dir, id, path, name) == 0) {
	msg_error("%s; moved to %s/%s as it is", why, SPOOL_DEAD, name);
    } else {					/* said once a minute, not a second */
	msg_error("%s; cannot move it to %s/: %m; tried again in %ds", why, SPOOL_DEAD,
		  RUNNER_SECRET_WAIT);
	runner_hold(r, id, (long long) time(NULL) + RUNNER_SECRET_WAIT);
    }
}

/*
 * runner_keys - the keys of this attempt: the global one, or those of the
 * secret files the route named (read now, at each attempt: a secret
 * rotated in its file applies to every waiting event). A named file
 * that does not exist is left out (the second file of a route exists
 * only while a rotation is under way); one that cannot be read or
 * holds no secret, or none at all, is an error: nothing is posted.
 */
static const char *runner_keys(struct runner *r, struct transfer *t)
{
    static char why[512];
    int     n = 0;
    const char *err;

    t->req.key = &r->key;
    t->req.key2 = NULL;
    if (t->ev.secret_count == 0)
	return (NULL);
    for (int i = 0; i < t->ev.secret_count; i++) {
	if (access(t->ev.secret_files[i], F_OK) < 0 && errno == ENOENT)
	    continue;
	if ((err = sign_key_load(t->ev.secret_files[i], &t->keys[n])) != NULL) {
	    snprintf(why, sizeof(why), "%s", err);	/* a path and a reason */
	    return (why);
	}
	n++;
    }
    if (n == 0) {
	snprintf(why, sizeof(why), "none of the route's secret files exists (%s%s%s)",
		 t->ev.secret_files[0], t->ev.secret_count > 1 ? ", " : "",
		 t->ev.secret_count > 1 ? t->ev.secret_files[1] : "");
	return (why);
    }
    t->req.key = &t->keys[0];
    t->req.key2 = n > 1 ? &t->keys[1] : NULL;
    return (NULL);
}

/* runner_hold - no attempt for this event before when (kept in memory) */

static void runner_hold(struct runner *r, const char *id, long long when)
{
    int     created;
    void  **slot = htable_slot(r->held, id, &created);

    if (*slot == NULL)
	*slot = xmalloc(sizeof(long long));
    *(long long *) *slot = when;
}

/*
 * runner_hold_over - a hold whose time has come stops nothing: swept at
 * each listing, so that those of events removed by hand (drop, rm) go
 */
static int runner_hold_over(void *value, void *context)
{
    return (runner_due(*(long long *) value, *(time_t *) context));
}

/*
 * runner_remove - a delivered (or 410) event's file out of active/. When
 * it cannot be removed (active/ read-only: a file system remounted so
 * after an error, a chmod), its id is remembered and it is not posted
 * again by this process: it was, at every scan, each time "delivered".
 * Returns -1 (errno set) when the file is still there.
 */
static int runner_remove(struct runner *r, const char *id, const char *path)
{
    int     created;

    if (r->pool >= SPOOL_FREE_MAX)		/* the plugin took some meanwhile? */
	r->pool = spool_free_count(r->tool->dir);
    void  **slot;

    if (spool_recycle(r->tool->dir, path, &r->pool) == 0 || errno == ENOENT) {
	htable_delete(r->answered, id, free);
	return (0);
    }
    if (*(slot = htable_slot(r->answered, id, &created)) == NULL)
	*slot = xstrdup(path);			/* runner_answered_gone() */
    return (-1);
}

/* runner_answered_gone - removed by hand meanwhile: nothing left to remember */

static int runner_answered_gone(void *path, void *context)
{
    (void) context;
    return (access(path, F_OK) < 0 && errno == ENOENT);
}

/*
 * runner_progress - a mapped event's transfer ends as soon as a read of
 * its mapping found the file cut (spool_event_spoiled()): the receiver
 * is not sent the rest, zeros where the event was.
 */
static int runner_progress(void *context, curl_off_t dltotal, curl_off_t dlnow,
			           curl_off_t ultotal, curl_off_t ulnow)
{
    (void) dltotal;
    (void) dlnow;
    (void) ultotal;
    (void) ulnow;
    return (spool_event_spoiled(&((struct transfer *) context)->ev));
}

/* runner_start - one attempt for an event file, if due */

static void runner_start(struct runner *r, const char *id, int all)
{
    time_t  now = time(NULL);
    long long *held = htable_find(r->held, id);
    char   *path;
    struct transfer *t;
    const char *err;
    struct stat st;

    if (!all && held != NULL && runner_due(*held, now) == 0)
	return;					/* its backoff, unrecorded */
    path = spool_path(r->tool->dir, SPOOL_ACTIVE, id);
    if (htable_find(r->answered, id) != NULL) {	/* posted: only removed now */
	if (runner_remove(r, id, path) == 0)
	    msg_info("event %s: its file removed at last", id);
	free(path);
	return;
    }
    t = xcalloc(1, sizeof(*t));
    if (!all && stat(path, &st) == 0 && !runner_due((long long) st.st_mtime, now)) {
	free(t);				/* not due: mtime = next attempt */
	free(path);
	return;
    }
    if ((err = spool_load(path, &t->ev)) != NULL) {
	if (errno == EBADMSG)
	    runner_unreadable(r, id, path, err);
	else if (access(path, F_OK) == 0) {	/* gone meanwhile: dropped by hand */
	    /* another user's 0600 file, say: kept (it may be a good event
	       once chowned), said once a minute rather than every second */
	    msg_warn("%s; tried again in %ds", err, RUNNER_SECRET_WAIT);
	    runner_hold(r, id, (long long) now + RUNNER_SECRET_WAIT);
	}
    } else if (r->tool->dead_after > 0 && t->ev.attempts > 0
	       && now - t->ev.created > r->tool->dead_after) {
	runner_dead(r, &t->ev, path);
    } else if ((all || runner_due(t->ev.next_attempt, now))
	       && (err = runner_keys(r, t)) != NULL) {
	msg_error("event %s not posted: %s; tried again in %ds", t->ev.id, err,
		  RUNNER_SECRET_WAIT);
	runner_hold(r, id, (long long) now + RUNNER_SECRET_WAIT);
    } else if (all || runner_due(t->ev.next_attempt, now)) {
	t->req.url = t->ev.url;
	t->req.id = t->ev.id;
	t->req.body = t->ev.body;
	t->req.body_len = t->ev.body_len;
	t->req.timeout_ms = r->tool->timeout_ms;
	t->req.ca_file = r->tool->ca_file;
	t->post.curl = NULL;
	post_prepare(&t->post, &t->req, (long long) now);
	curl_easy_setopt(t->post.curl, CURLOPT_PRIVATE, t);
	if (t->ev.map != NULL) {		/* stop sending a file cut meanwhile */
	    curl_easy_setopt(t->post.curl, CURLOPT_XFERINFOFUNCTION, runner_progress);
	    curl_easy_setopt(t->post.curl, CURLOPT_XFERINFODATA, t);
	    curl_easy_setopt(t->post.curl, CURLOPT_NOPROGRESS, 0L);
	}
	curl_multi_add_handle(r->multi, t->post.curl);
	{
	    int     created;

	    *htable_slot(r->inflight, t->ev.id, &created) = t;
	}
	r->running++;
	free(path);
	return;
    }
    spool_event_free(&t->ev);
    OPENSSL_cleanse(t->keys, sizeof(t->keys));
    free(t);
    free(path);
}

/*
 * runner_outcome - what an answer does to the event: removed (2xx, 410),
 * or its attempt recorded with the next one's time, or dead/.
 */
static void runner_outcome(struct runner *r, struct transfer *t, const struct post_result *rp,
			           const char *path, const char *shown)
{
    struct post_result res = *rp;
    const char *err;

    t->ev.attempts++;
    htable_delete(r->held, t->ev.id, free);
    if (res.outcome == POST_DELIVERED || res.outcome == POST_GONE) {
	spool_event_body_free(&t->ev);	/* before the file can be reused */
	if (runner_remove(r, t->ev.id, path) < 0)
	    msg_error("event %s answered, but unlink %s: %m; not posted again, its "
		      "removal tried at each scan", t->ev.id, path);
	if (res.outcome == POST_DELIVERED)
	    msg_info("event %s delivered to %s on attempt %d (%s)", t->ev.id, shown,
		     t->ev.attempts, res.why);
	else
	    msg_warn("event %s dropped: %s answered 410 Gone", t->ev.id, shown);
	*(res.outcome == POST_DELIVERED ? &r->delivered : &r->dropped) += 1;
	runner_count(res.outcome == POST_DELIVERED ? runner_metrics.delivered
		     : runner_metrics.gone);
    } else {
	long long delay = runner_backoff(t->ev.attempts, res.retry_after);
	int     gone;

	free(t->ev.last_error);
	t->ev.last_error = xstrdup(res.why);
	t->ev.next_attempt = (long long) time(NULL) + delay;
	if (r->tool->dead_after > 0 && access(path, F_OK) == 0
	    && t->ev.next_attempt - t->ev.created > r->tool->dead_after) {
	    /* no attempt left within the bound: not "next in Ns" and then
	       dead-lettered only when that time comes (up to a day late) */
	    msg_info("event %s attempt %d to %s failed: %s; no attempt left within "
		     "dead_letter_after", t->ev.id, t->ev.attempts, shown, res.why);
	    runner_dead(r, &t->ev, path);
	} else if ((err = spool_update(r->tool->dir, &t->ev, &gone)) != NULL) {
	    /* the spool full: its backoff still holds, or the event
	       would be posted again at every scan */
	    runner_hold(r, t->ev.id, t->ev.next_attempt);
	    msg_error("event %s: cannot record attempt %d: %s; next in %llds all the same",
		      t->ev.id, t->ev.attempts, err, delay);
	} else if (gone)
	    msg_info("event %s attempt %d to %s failed: %s; dropped meanwhile, not retried",
		     t->ev.id, t->ev.attempts, shown, res.why);
	else
	    msg_info("event %s attempt %d to %s failed: %s; next in %llds", t->ev.id,
		     t->ev.attempts, shown, res.why, delay);
	r->failed++;
	runner_count(runner_metrics.failed);
    }
}

static void runner_done(struct runner *r, struct transfer *t, CURLcode rc)
{
    char   *path = spool_path(r->tool->dir, SPOOL_ACTIVE, t->ev.id);
    char   *shown = route_url_redact(t->ev.url);	/* no secret in a log */
    struct post_result res;

    post_finish(&t->post, rc, &res);
    if (runner_metrics.duration) {
	double  total = 0;

	if (curl_easy_getinfo(t->post.curl, CURLINFO_TOTAL_TIME, &total) == CURLE_OK)
	    metrics_observe(runner_metrics.duration, total);
    }
    if (spool_event_spoiled(&t->ev)) {
	/* cut under the attempt: what was sent is not the event; the next
	   scan reads the file again (and moves it to dead/) */
	msg_error("event %s: %s was truncated during attempt %d; the attempt does not "
		  "count", t->ev.id, path, t->ev.attempts + 1);
	r->failed++;
    } else
	runner_outcome(r, t, &res, path, shown);
    free(path);
    free(shown);
    curl_multi_remove_handle(r->multi, t->post.curl);
    htable_delete(r->inflight, t->ev.id, NULL);
    post_handle_free(&t->post);
    spool_event_free(&t->ev);
    OPENSSL_cleanse(t->keys, sizeof(t->keys));
    free(t);
    r->running--;
}

/*
 * runner_watch - inotify on active/ (again, after it was removed): the
 * plugin's commit renames the event into it, which wakes us at once.
 */
static void runner_watch(struct runner *r)
{
    char   *path;

    if (r->wake_fd < 0 || r->watch >= 0)
	return;
    path = spool_path(r->tool->dir, SPOOL_ACTIVE, NULL);
    r->watch = inotify_add_watch(r->wake_fd, path, IN_MOVED_TO | IN_ONLYDIR);
    free(path);
}

/* runner_spool_check - subdirectories made again if removed; said once */

static void runner_spool_check(struct runner *r)
{
    const char *err = spool_ready(r->tool->dir);
    long    holder;

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
    if (r->mode == RUNNER_DAEMON && runner_lock_check(r->tool->dir, &r->lock_fd, &holder) < 0) {
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

	    if (e->mask & (IN_Q_OVERFLOW | IN_IGNORED))
		r->next = r->count;		/* relist at the next scan */
	    if (e->mask & IN_IGNORED)
		r->watch = -1;			/* active/ gone: watch again */
	    else if (e->len > 0 && spool_id_ok(e->name)) {
		if (r->npending < RUNNER_PENDING_MAX) {
		    r->pending = xrealloc(r->pending, (r->npending + 1) * sizeof(char *));
		    r->pending[r->npending++] = xstrdup(e->name);
		} else
		    r->next = r->count;
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
 */
static int runner_scan(struct runner *r, int all)
{
    int     before = r->running, relisted = 0, created;
    const char *err, *name;

    while (r->running < r->tool->concurrency) {
	if (r->phead < r->npending && r->key.len > 0) {	/* woken: new events first */
	    char   *woken = r->pending[r->phead++];

	    if (htable_find(r->inflight, woken) == NULL)
		runner_start(r, woken, 0);
	    free(woken);
	    if (r->phead == r->npending)
		r->phead = r->npending = 0;
	    continue;
	}
	if (r->next >= r->count) {
	    if (relisted || (!all && r->listed == time(NULL)))
		break;
	    r->listed = time(NULL);
	    (void) htable_sweep(r->held, RUNNER_HOLD_SWEEP, runner_hold_over, &r->listed, free);
	    (void) htable_sweep(r->answered, RUNNER_HOLD_SWEEP, runner_answered_gone, NULL, free);
	    runner_spool_check(r);
	    r->pool = spool_free_count(r->tool->dir);
	    spool_list_free(r->names, r->count);
	    r->names = spool_list(r->tool->dir, SPOOL_ACTIVE, &r->count);
	    r->next = 0;
	    relisted = 1;
	    if ((err = sign_key_load(r->tool->secret_file, &r->key)) != NULL) {
		msg_error("%s: nothing posted until the secret is readable", err);
		r->key.len = 0;
		r->next = r->count;
		break;
	    }
	    continue;
	}
	name = r->names[r->next++];
	if (htable_find(r->inflight, name) != NULL
	    || (all && htable_find(r->tried, name) != NULL))
	    continue;
	if (all)
	    *htable_slot(r->tried, name, &created) = r;
	runner_start(r, name, all);
    }
    return (r->running - before);
}

static void runner_reap(struct runner *r)
{
    CURLMsg *m;
    int     left, still;

    curl_multi_perform(r->multi, &still);
    while ((m = curl_multi_info_read(r->multi, &left)) != NULL) {
	char   *private = NULL;

	if (m->msg != CURLMSG_DONE)
	    continue;
	curl_easy_getinfo(m->easy_handle, CURLINFO_PRIVATE, &private);
	runner_done(r, (struct transfer *) (void *) private, m->data.result);
    }
}

/* runner_apply_reload - SIGHUP: tool_reload(), then what it changed here */

static void runner_apply_reload(struct runner *r)
{
    struct config *old;

    if (tool_reload(r->tool, &old) < 0) {
	metrics_config_reload(0);
	return;
    }
    metrics_config_reload(1);
    if (old != r->first_cfg)		/* nothing points into it now */
	config_free(&old);
    curl_multi_setopt(r->multi, CURLMOPT_MAX_TOTAL_CONNECTIONS, (long) r->tool->concurrency);
    r->next = r->count;			/* list again, and read the secret */
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

/* runner_sweep - tmp/ files left by crashed writers */

static void runner_sweep(struct runner *r)
{
    int     removed = spool_sweep_tmp(r->tool->dir, time(NULL));

    if (removed > 0)
	msg_warn("removed %d file(s) that crashed writers left in %s/%s", removed,
		    r->tool->dir, SPOOL_TMP);
}

/*
 * runner_loop - until stopped (daemon), or until one pass is done (flush).
 * Each turn (at least every 200 ms: curl_multi_poll()'s timeout) stamps
 * the runner's liveness for GET /healthz.
 */
static void runner_loop(struct runner *r, enum runner_mode mode)
{
    time_t  last_scan = time(NULL), last_sweep = last_scan;
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
	if (runner_signal_dispatch(r))
	    flushing = 1;
	runner_ready_sample(r);
	if (r->stop) {
	    skeleton_ready(0);
	    if (r->running == 0)
		break;
	} else {
	    if (mode == RUNNER_DAEMON && time(NULL) - last_sweep >= RUNNER_SWEEP_INTERVAL) {
		runner_sweep(r);
		last_sweep = time(NULL);
	    }
	    runner_wakeups(r);
	    if (flushing || (r->phead < r->npending && r->key.len > 0)
		|| time(NULL) != last_scan) {
		started = runner_scan(r, flushing);
		last_scan = time(NULL);
		if (flushing && started == 0 && r->running == 0) {
		    if (mode == RUNNER_FLUSH)
			break;
		    flushing = 0;
		}
	    }
	}
	{
	    struct curl_waitfd wait[2] = {{r->signal_fd, CURL_WAIT_POLLIN, 0},
	    {r->wake_fd, CURL_WAIT_POLLIN, 0}};

	    curl_multi_poll(r->multi, wait, r->wake_fd >= 0 ? 2 : 1, 200, &numfds);
	}
    }
    liveness_unwatch(&live);
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
    if (runner_lock(tool->dir, &r.lock_fd, &holder) < 0) {
	msg_error("the spool %s is being delivered by pid %ld", tool->dir, holder);
	return (-1);
    }
    if (mode == RUNNER_DAEMON) {
	struct daemon_opts opts = {tool->config_path, 0, tool->foreground};

	/* series first: skeleton_start() starts serving them */
	if (config_get_str(tool->cfg, "metrics_listen"))
	    runner_metrics_init(tool);
	sk.context = &r.lock_fd;
	skeleton_start(&sk, &opts, tool->cfg);
    }
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
    if ((r.multi = curl_multi_init()) == NULL)
	msg_fatal("curl_multi_init failed");
    curl_multi_setopt(r.multi, CURLMOPT_MAX_TOTAL_CONNECTIONS, (long) tool->concurrency);
    if (mode == RUNNER_DAEMON)
	msg_info("delivering %s, %d at a time", tool->dir, tool->concurrency);
    runner_spool_check(&r);
    spool_map_guard();			/* a mapped event cut under us: no SIGBUS */
    runner_loop(&r, mode);
    curl_multi_cleanup(r.multi);
    htable_destroy(&r.inflight, NULL);
    htable_destroy(&r.tried, NULL);
    htable_destroy(&r.held, free);
    htable_destroy(&r.answered, free);
    spool_list_free(r.names, r.count);
    for (int i = r.phead; i < r.npending; i++)
	free(r.pending[i]);
    free(r.pending);
    free(r.spool_error);
    if (r.wake_fd >= 0)
	close(r.wake_fd);
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
    skeleton_stop(&sk);
    close(r.lock_fd);
    if (r.first_cfg != tool->cfg)
	config_free(&r.first_cfg);	/* after the last use of tool->dir */
    return (left);
}
