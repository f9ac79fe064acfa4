/*
 * NAME
 *	runner_attempt 3
 * SUMMARY
 *	lmtp-webhook-spool: one attempt to post an event, and its outcome
 * SYNOPSIS
 *	#include "runner_int.h"
 *
 *	void	runner_start(r, id, all, how)
 *	void	runner_done(r, transfer, curl_code)
 *	int	runner_hold_over(value, context)
 *	int	runner_answered_gone(path, context)
 *	void	runner_misnamed(name, context)
 * DESCRIPTION
 *	runner_start() loads active/ID and adds its POST to the runner's
 *	curl multi handle (all: a flush pass, due or not); an event that
 *	is not one moves to dead/. No receiver origin (scheme://host:port)
 *	takes more than half of "concurrency" (at least one) while events
 *	of other origins are due, and the slow origins (whose last attempt
 *	failed or took half the timeout or more, or with one running that
 *	long: runner_share.c) take no more than half together: an event of
 *	an origin at its share
 *	is put aside (runner_share.c); the scan starts those as their
 *	origins are admitted, and uncapped once nothing else is. 640 events for a
 *	receiver that never answers held back a live receiver's first
 *	attempts for up to 111 s (timeout 3 s): their retries took every
 *	slot; and with the share per origin alone, two such receivers held
 *	every slot between them, each freed slot taken by the next event of
 *	the origin that freed it: a live receiver's new events waited 60 s.
 *	runner_done() records what the receiver answered as runner(3)
 *	describes: removed, dropped, or rewritten with its next attempt.
 *	runner_hold_over() and runner_answered_gone() are htable_sweep()
 *	callbacks for the ids kept in memory: a held next attempt that has
 *	come, an answered id whose file was removed by hand. Split from
 *	runner.c, which keeps the loop.
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
#include "runner_int.h"

static void runner_hold(struct runner *r, const char *id, long long when);

/*
 * runner_dead - the event into dead/, rewritten with its last attempt
 * (spool_dead(): only the very file the attempt read; one renamed over
 * it meanwhile, a retry or a new delivery, stays in active/ and is
 * tried now). When that cannot be written (the spool full) the file
 * moves as it is (a rename needs no space) and the last attempt is in
 * the log only: left in active/, due, it was posted again at every scan
 * until dead_letter_after had passed. When even that fails, no attempt
 * before its backoff.
 */
static void runner_dead(struct runner *r, struct spool_event *ev)
{
    const char *err;
    int     how;
    long long now = (long long) time(NULL);

    err = spool_dead(r->tool->dir, ev, &how);
    if (how == SPOOL_UPDATE_GONE) {
	msg_info("event %s: dropped meanwhile, not dead-lettered", ev->id);
	return;
    } else if (how == SPOOL_UPDATE_REPLACED) {
	msg_info("event %s: replaced meanwhile (a retry, a new delivery): that one is "
		 "kept and tried, not dead-lettered", ev->id);
	runner_later(r, ev->id, now);
	return;
    } else if (how == SPOOL_DEAD_KEPT) {
	msg_error("event %s: cannot move to dead/: %s; nor rename it there: %m", ev->id, err);
	runner_hold(r, ev->id, ev->next_attempt > now ? ev->next_attempt
		    : now + RUNNER_SECRET_WAIT);
	return;
    } else if (how == SPOOL_DEAD_AS_IS)
	msg_error("event %s: cannot write its last attempt into dead/: %s; moved there "
		  "as it was", ev->id, err);
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
 * runner_misnamed - a file in active/ under a name no event has (an
 * operator's "msg_x.bak", "bill.eml"): never posted or listed, it stayed
 * there for good and nothing said so. Once unchanged for RUNNER_SETTLE
 * seconds (a copy may be under way), it goes to dead/ as it is, with
 * one error; what cannot be moved is said once a minute at most.
 */
void    runner_misnamed(const char *name, void *context)
{
    static long long said = -1;		/* daemon_mono_sec() */
    struct runner *r = context;
    char    dead[SPOOL_BURY_NAME];
    char   *path = spool_path(r->tool->dir, SPOOL_ACTIVE, name);
    long long now = time(NULL);
    struct stat st;

    /* changed in the last seconds: a copy may be under way. A change in
       the future (the clock was stepped back since) is no such sign:
       the file would have stayed for as long as the step */
    if (lstat(path, &st) == 0 && now >= (long long) st.st_ctime
	&& now - (long long) st.st_ctime < RUNNER_SETTLE)
	r->lost = 1;				/* listed again in a second */
    else if (lstat(path, &st) == 0) {
	if (spool_bury(r->tool->dir, name, path, dead) == 0)
	    msg_error("%s: not an event's name; moved to %s/%s as it is", path, SPOOL_DEAD,
		      dead);
	else if (said < 0 || daemon_mono_sec() - said >= RUNNER_SECRET_WAIT) {
	    said = daemon_mono_sec();
	    msg_error("%s: not an event's name; cannot move it to %s/: %m", path, SPOOL_DEAD);
	}
    }
    free(path);
}

/*
 * runner_key_weak - a route's own secret too short to be one is said
 * once per file (and process): with secret_file={1}, each workspace's
 * file is read only here, and a 3-byte key signed without a word
 * (helper-124; sign_key_weak()).
 */
static void runner_key_weak(const char *path, const struct webhook_key *key)
{
    static unsigned long said[256];
    static unsigned next;
    unsigned long h = 5381;
    const char *weak = sign_key_weak(key);

    if (weak == NULL)
	return;
    for (const char *cp = path; *cp; cp++)
	h = h * 33 + (unsigned char) *cp;
    for (unsigned i = 0; i < sizeof(said) / sizeof(said[0]); i++)
	if (said[i] == h)
	    return;
    said[next++ % (sizeof(said) / sizeof(said[0]))] = h;
    msg_warn("secret_file %s: %s", path, weak);
}

/*
 * runner_keys - the keys of this attempt: the global one, or those of the
 * secret files the route named (read now, at each attempt: a secret
 * rotated in its file applies to every waiting event). A named file
 * that does not exist is left out (the second file of a route exists
 * only while a rotation is under way); one that cannot be read or
 * holds no secret, or none at all, is an error: nothing is posted.
 * Only the global secret (named by our own configuration) is read as
 * root; a route's files, named by the event, are read as the spool's
 * owner (spool_owner.c).
 */
static const char *runner_keys(struct runner *r, struct transfer *t)
{
    static char why[512];
    int     n = 0;
    const char *err;

    t->req.key = &r->key;
    t->req.key2 = NULL;
    if (t->ev.secret_count == 0)		/* the global secret (runner_key_load()) */
	return (r->key.len > 0 ? NULL : "the global secret_file is unreadable");
    for (int i = 0; i < t->ev.secret_count; i++) {
	if (access(t->ev.secret_files[i], F_OK) < 0 && errno == ENOENT)
	    continue;
	/* as the spool's owner, never as root: the path comes from the
	 * event file, which that user writes (a root-only file it names,
	 * another route's secret or a device, stays unread) */
	err = sign_key_load(t->ev.secret_files[i], &t->keys[n]);
	if (err != NULL) {
	    snprintf(why, sizeof(why), "%s", err);	/* a path and a reason */
	    return (why);
	}
	runner_key_weak(t->ev.secret_files[i], &t->keys[n]);
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

/*
 * runner_hold - no attempt for this event before when (kept in memory).
 * runner_hold_unrecorded() keeps too how many attempts it has had when
 * the spool could not record them (full, read-only): the next attempt
 * counts on from there, or the schedule started over at its first
 * step each time and the event was posted every few seconds for as
 * long as the spool stayed full, never reaching dead/.
 */
struct runner_held {
    long long when;
    int     attempts;			/* unrecorded; 0: none */
    dev_t   dev;			/* the file held (0: none was there) */
    ino_t   ino;
};

static void runner_hold_unrecorded(struct runner *r, const char *id, long long when,
				           int attempts)
{
    int     created;
    void  **slot = htable_slot(r->held, id, &created);

    char   *path = spool_path(r->tool->dir, SPOOL_ACTIVE, id);
    struct stat st;

    if (*slot == NULL)
	*slot = xcalloc(1, sizeof(struct runner_held));
    if (stat(path, &st) == 0) {
	((struct runner_held *) *slot)->dev = st.st_dev;
	((struct runner_held *) *slot)->ino = st.st_ino;
    }
    free(path);
    ((struct runner_held *) *slot)->when = when;
    if (attempts > ((struct runner_held *) *slot)->attempts)
	((struct runner_held *) *slot)->attempts = attempts;
    runner_later(r, id, when);
}

static void runner_hold(struct runner *r, const char *id, long long when)
{
    runner_hold_unrecorded(r, id, when, 0);
}

/*
 * runner_later - an event not due before when: looked at again then
 * (r->queue), and not at listings before then (r->later), so that an
 * idle runner with a large backlog visits what falls due, not every
 * file every second. A wake-up for the id, and every RUNNER_RELIST
 * seconds a listing that forgets them all, look at it anyway.
 */
void    runner_later(struct runner *r, const char *id, long long when)
{
    int     created;
    void  **slot = htable_slot(r->later, id, &created);

    if (!created && *(long long *) *slot == when)
	return;					/* queued so already */
    if (created)
	*slot = xmalloc(sizeof(long long));
    *(long long *) *slot = when;
    timeq_add(r->queue, when, id);
}

/*
 * runner_held_now - the hold of an event, unless its file was replaced
 * since (the spool tool's retry, a new delivery: renamed in, a new
 * inode; the hold's own file only touched is the same): the hold was
 * for the old file, and "retry ID" means now. It was ignored for the
 * rest of a missing secret's minute, or for a full spool's backoff.
 */
static struct runner_held *runner_held_now(struct runner *r, const char *id, const char *path)
{
    struct runner_held *held = htable_find(r->held, id);
    struct stat st;

    if (held == NULL || (stat(path, &st) == 0
			 && st.st_dev == held->dev && st.st_ino == held->ino))
	return (held);
    htable_delete(r->held, id, free);
    return (NULL);
}

/*
 * runner_hold_over - a hold whose time has come stops nothing: swept at
 * each listing, so that those of events removed by hand (drop, rm) go
 */
int     runner_hold_over(void *value, void *context)
{
    const struct runner_held *h = value;
    time_t  now = *(time_t *) context;

    /* an unrecorded count outlives its hold, not the longest wait */
    return (runner_due(h->when, now) && (h->attempts == 0
				  || (long long) now - h->when > RUNNER_RETRY_AFTER_MAX));
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
    runner_later(r, id, (long long) time(NULL) + 1);	/* removal tried again */
    return (-1);
}

/* runner_answered_gone - removed by hand meanwhile: nothing left to remember */

int     runner_answered_gone(void *path, void *context)
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

/*
 * runner_expired - tried before, and the next attempt its last failure set
 * (header or mtime) lies past dead_letter_after: that failure was its
 * last (an event of a spool from before that rule, or made by hand), and
 * it is dead-lettered without another. One whose next attempt fell
 * within dead_letter_after gets that attempt even when found late (the
 * runner was down, the clock stepped forward): only its failure may
 * dead-letter it.
 */
static int runner_expired(const struct runner *r, const struct spool_event *ev)
{
    long long next = ev->next_attempt > ev->mtime ? ev->next_attempt : ev->mtime;

    return (r->tool->dead_after > 0 && ev->attempts > 0 && next - ev->created > r->tool->dead_after);
}

/*
 * runner_post - the attempt added to the multi handle; 0 when put aside
 * (runner_wait.c): an event found due while others wait, or whose origin
 * has its share in flight or is slow and the slow ones have theirs.
 * However many origins hang, half the slots stay for the others while
 * they have events due, and a slot an origin frees goes to the one with
 * the fewest in flight, not simply to its own next event.
 */
static int runner_post(struct runner *r, struct transfer *t, time_t now, int all,
		               enum runner_how how)
{
    int     created;

    t->origin = runner_origin(t->ev.url);
    /* picked: admitted as put aside, but the file read now may name
       another origin (replaced meanwhile) */
    if (how != RUNNER_UNCAPPED
	&& ((how == RUNNER_FOUND && runner_capped_count(r) > 0)
	    || !runner_share_admits(r, t->origin))) {
	runner_capped(r, t->ev.id, t->origin, all);
	free(t->origin);
	return (0);
    }
    if (r->flushing)				/* its attempt of this pass */
	*htable_slot(r->tried, t->ev.id, &created) = r;
    runner_share_start(r, t);
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
    *htable_slot(r->inflight, t->ev.id, &created) = t;
    r->running++;
    return (1);
}

/* runner_start - one attempt for an event file, if due */

void    runner_start(struct runner *r, const char *id, int all, enum runner_how how)
{
    time_t  now = time(NULL);
    char   *path = spool_path(r->tool->dir, SPOOL_ACTIVE, id);
    struct runner_held *held = runner_held_now(r, id, path);
    struct transfer *t;
    const char *err;
    struct stat st;

    htable_delete(r->later, id, free);		/* looked at now */
    if (!all && held != NULL && runner_due(held->when, now) == 0) {
	runner_later(r, id, held->when);
	free(path);
	return;					/* its backoff, unrecorded */
    }
    if (htable_find(r->answered, id) != NULL) {	/* posted: only removed now */
	if (runner_remove(r, id, path) == 0)
	    msg_info("event %s: its file removed at last", id);
	free(path);
	return;
    }
    t = xcalloc(1, sizeof(*t));
    if (!all && stat(path, &st) == 0 && !runner_due(spool_mtime_due(&st), now)) {
	runner_later(r, id, spool_mtime_due(&st));
	free(t);				/* not due: mtime = next attempt */
	free(path);
	return;
    }
    if ((err = spool_load(path, &t->ev)) == NULL && held != NULL
	&& held->attempts > t->ev.attempts)
	t->ev.attempts = held->attempts;	/* the spool could not record them */
    if (err != NULL) {
	int     bad = errno == EBADMSG;

	/* not for a ctime ahead of the clock (stepped back): waiting for
	   it could be waiting for ever, or, more than a day ahead (due at
	   once, runner_due()), no wait at all, again and again */
	if (bad && lstat(path, &st) == 0 && S_ISREG(st.st_mode)
	    && (long long) now >= (long long) st.st_ctime
	    && (long long) now - (long long) st.st_ctime < RUNNER_SETTLE)
	    /* changed a moment ago: maybe being written (a cp into
	       active/), not yet something to bury */
	    runner_later(r, id, (long long) st.st_ctime + RUNNER_SETTLE);
	else if (bad)
	    runner_unreadable(r, id, path, err);
	else if (access(path, F_OK) == 0) {	/* gone meanwhile: dropped by hand */
	    /* another user's 0600 file, say: kept (it may be a good event
	       once chowned), said once a minute rather than every second */
	    msg_warn("%s; tried again in %ds", err, RUNNER_SECRET_WAIT);
	    runner_hold(r, id, (long long) now + RUNNER_SECRET_WAIT);
	}
    } else if (spool_held_now(&t->ev, path, now)) {
	/* its mail being saved (spool_hold.c): due at its mtime, even for
	   a flush, and not while its delivery is at work past that; the
	   scan finds it again once released, expired or let go */
	if (!all && runner_due(t->ev.mtime, now))
	    runner_hold(r, id, (long long) now + RUNNER_BUSY_WAIT);
	else
	    runner_later(r, id, t->ev.mtime);
    } else if (runner_expired(r, &t->ev)) {
	runner_dead(r, &t->ev);
    } else if ((all || runner_due(t->ev.next_attempt, now))
	       && (err = runner_keys(r, t)) != NULL) {
	if (t->ev.secret_count == 0)		/* logged once by runner_key_load() */
	    runner_later(r, id, (long long) now + RUNNER_SECRET_WAIT);
	else {
	    msg_error("event %s not posted: %s; tried again in %ds", t->ev.id, err,
		      RUNNER_SECRET_WAIT);
	    runner_hold(r, id, (long long) now + RUNNER_SECRET_WAIT);
	}
    } else if (all || runner_due(t->ev.next_attempt, now)) {
	if (runner_post(r, t, now, all, how)) {
	    free(path);
	    return;
	}
    } else
	runner_later(r, id, t->ev.next_attempt);	/* its mtime was touched */
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
    t->ev.held = 0;				/* attempted: due as its header says */
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
	if (r->tool->dead_after > 0
	    && t->ev.next_attempt - t->ev.created > r->tool->dead_after) {
	    /* no attempt left within the bound: not "next in Ns" and then
	       dead-lettered only when that time comes (up to a day late) */
	    msg_info("event %s attempt %d to %s failed: %s; no attempt left within "
		     "dead_letter_after", t->ev.id, t->ev.attempts, shown, res.why);
	    runner_dead(r, &t->ev);
	} else if ((err = spool_update(r->tool->dir, &t->ev, &gone)) != NULL) {
	    /* the spool full: its backoff still holds, or the event
	       would be posted again at every scan */
	    runner_hold_unrecorded(r, t->ev.id, t->ev.next_attempt, t->ev.attempts);
	    msg_error("event %s: cannot record attempt %d: %s; next in %llds all the same",
		      t->ev.id, t->ev.attempts, err, delay);
	} else if (gone == SPOOL_UPDATE_GONE)
	    msg_info("event %s attempt %d to %s failed: %s; dropped meanwhile, not retried",
		     t->ev.id, t->ev.attempts, shown, res.why);
	else if (gone == SPOOL_UPDATE_REPLACED) {
	    /* a retry (or a new delivery of the same id) renamed over it
	       during the attempt: that one stands, looked at now (its
	       wake-up came while this attempt was in flight) */
	    msg_info("event %s attempt %d to %s failed: %s; replaced meanwhile (a retry, "
		     "a new delivery): that one is kept", t->ev.id, t->ev.attempts, shown,
		     res.why);
	    runner_later(r, t->ev.id, (long long) time(NULL));
	}
	else
	    msg_info("event %s attempt %d to %s failed: %s; next in %llds", t->ev.id,
		     t->ev.attempts, shown, res.why, delay);
	r->failed++;
	runner_count(runner_metrics.failed);
    }
}

void    runner_done(struct runner *r, struct transfer *t, CURLcode rc)
{
    char   *path = spool_path(r->tool->dir, SPOOL_ACTIVE, t->ev.id);
    char   *shown = route_url_redact(t->ev.url);	/* no secret in a log */
    struct post_result res;

    post_finish(&t->post, rc, &res);
    {
	double  total = 0;

	if (curl_easy_getinfo(t->post.curl, CURLINFO_TOTAL_TIME, &total) == CURLE_OK) {
	    if (runner_metrics.duration)
		metrics_observe(runner_metrics.duration, total);
	    runner_slow_mark(r, t->origin, total, res.outcome == POST_RETRY);
	}
    }
    if (spool_event_spoiled(&t->ev)) {
	/* cut under the attempt: what was sent is not the event; the next
	   scan reads the file again (and moves it to dead/) */
	msg_error("event %s: %s was truncated during attempt %d; the attempt does not "
		  "count", t->ev.id, path, t->ev.attempts + 1);
	runner_later(r, t->ev.id, (long long) time(NULL));	/* no wake-up for a cut */
	r->failed++;
    } else
	runner_outcome(r, t, &res, path, shown);
    free(path);
    free(shown);
    curl_multi_remove_handle(r->multi, t->post.curl);
    htable_delete(r->inflight, t->ev.id, NULL);
    runner_share_end(r, t);
    free(t->origin);
    post_handle_free(&t->post);
    spool_event_free(&t->ev);
    OPENSSL_cleanse(t->keys, sizeof(t->keys));
    free(t);
    r->running--;
}

