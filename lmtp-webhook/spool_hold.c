/*
 * NAME
 *	spool_hold 3
 * SUMMARY
 *	an event named before its mail is saved, posted once it is
 * SYNOPSIS
 *	#include "spool.h"
 *
 *	const char *spool_hold(&reservation)
 *	const char *spool_unhold(&reservation)
 *	void	spool_withdraw(&reservation)
 *	int	spool_held_busy(path)
 *	int	spool_held_now(&event, path, now)
 * DESCRIPTION
 *	The plugin's commit, in the order that lets the event ride on the
 *	journal commit Dovecot's own save makes, instead of a second one
 *	per delivery:
 *
 *	spool_hold() renames a streamed event (spool_reserve_stream(),
 *	its header saying "held") into active/ID before the mail is
 *	saved, with its mtime, which is its next attempt, SPOOL_HOLD
 *	seconds away: lmtp-webhook-spool neither posts nor flushes a
 *	held event before that time. SPOOL_SYNC_ALWAYS syncs the file
 *	before the rename and active/ after it.
 *
 *	Then the mail is saved; Dovecot syncs it (mail_fsync). On a
 *	journaling file system that sync commits the event's new name
 *	with it, and on ext4 (data=ordered) its bytes too.
 *
 *	spool_unhold(), once the mail is saved: SPOOL_SYNC_OPTIMIZED
 *	syncs the event now (on ext4 nearly free: the commit is made),
 *	then its mtime becomes now, which wakes lmtp-webhook-spool
 *	(inotify IN_ATTRIB) to post it at once. The release itself is not
 *	synced: a crash right after LMTP answered leaves the event held,
 *	posted when its hold ends. spool_withdraw(), when the mail was
 *	not saved, removes it.
 *
 *	A crash between hold and release (the save under way) leaves a
 *	held event: posted when the hold ends, at most SPOOL_HOLD seconds
 *	late, never lost. If its mail was not saved, LMTP had not
 *	answered, and Postfix's retry of the same bytes brings the same
 *	webhook-id.
 *
 *	spool_hold() never replaces an event that is in active/ under
 *	the same id already (renameat2() RENAME_NOREPLACE): that one was
 *	committed for an earlier delivery of the same bytes, and a
 *	withdraw would remove it. A held event is flock()ed by its
 *	delivery from before its rename until its release (let go just
 *	before it) or withdraw:
 *	a delivery of the same bytes that finds it waits for that (at
 *	most SPOOL_HOLD_WAIT_MS, then the error "cannot hold"), so that
 *	the withdraw of a failed save never removes the event another
 *	delivery committed over it; spool_held_busy() tells a held event
 *	whose mail is being saved from one a crash left (the spool tool's
 *	retry releases only the latter), and spool_held_now() tells the
 *	runner and the tool whether a held event waits still: until its
 *	hold ends, and past that while its delivery is still at work. Then, where the file system cannot
 *	rename without replacing, and when the reservation's file was
 *	swept from tmp/ meanwhile, it returns NULL with the reservation
 *	not held (its mtime back to now): spool_unhold() is then
 *	spool_commit() after the save, and spool_withdraw()
 *	spool_discard(), as before this order existed.
 * DIAGNOSTICS
 *	NULL, or a message naming the file and the system error. After a
 *	failed spool_hold() nothing is in active/ (discard the
 *	reservation and tempfail: the mail is not saved yet). After a
 *	failed spool_unhold() the event stays in active/, held.
 */

#define _GNU_SOURCE			/* renameat2() */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "spool.h"
#include "spool_int.h"

/* how long a hold waits for another delivery's hold of the same id */
#define SPOOL_HOLD_WAIT_MS	30000

/* spool_unheld - the reservation as spool_commit() expects it: due now */

static const char *spool_unheld(struct spool_reservation *res)
{
    struct timespec now[2] = {{0, UTIME_OMIT}, {0, UTIME_NOW}};

    if (futimens(res->fd, now) < 0)
	return (spool_fail("cannot set the mtime of", res->tmp_path));
    return (NULL);
}

/*
 * spool_unlink_own - the held file out of active/, but only our own: the
 * name may hold another by now (the operator's retry; ours posted once
 * its hold ended and the name used again). Another delivery of the same
 * id cannot have replaced it: it waits for our flock (spool_hold_wait()).
 */
static void spool_unlink_own(struct spool_reservation *res)
{
    struct stat ours, named;

    if (fstat(res->fd, &ours) == 0 && stat(res->final_path, &named) == 0
	&& ours.st_dev == named.st_dev && ours.st_ino == named.st_ino)
	(void) unlink(res->final_path);
}

/*
 * spool_hold_wait - an event of our id is in active/: wait while the
 * delivery that named it holds it (its flock, taken before its rename
 * and kept until its release or withdraw), at most SPOOL_HOLD_WAIT_MS,
 * so that it cannot withdraw an event we committed over it. 1: it is
 * there and settled (we commit after our save, over it, as before); 0:
 * it went meanwhile (withdrawn: hold again); -1 (errno EAGAIN): still
 * held when the wait ended.
 */
static int spool_hold_wait(const char *path)
{
    struct stat st;
    int     fd, gone;

    for (int waited = 0; waited < SPOOL_HOLD_WAIT_MS; waited += 10) {
	if ((fd = open(path, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC)) < 0)
	    return (errno == ENOENT ? 0 : 1);	/* not an event we can judge */
	if (flock(fd, LOCK_EX | LOCK_NB) == 0) {
	    gone = fstat(fd, &st) == 0 && st.st_nlink == 0;
	    close(fd);
	    return (gone ? 0 : 1);
	}
	gone = errno != EWOULDBLOCK;		/* no flock here: as before */
	close(fd);
	if (gone)
	    return (1);
	usleep(10 * 1000);
    }
    errno = EAGAIN;
    return (-1);
}

/*
 * spool_hold_rename - tmp/ to active/ID, never over an event there (see
 * spool_hold_wait()); active/ made again if removed. -1 with errno.
 */
static int spool_hold_rename(struct spool_reservation *res)
{
    int     rc, settled;

    for (int tries = 0;; tries++) {
	rc = spool_rename_new(res->tmp_path, res->final_path);
	if (rc < 0 && errno == ENOENT && access(res->tmp_path, F_OK) == 0
	    && spool_dir_again(res->dir_path) == 0)	/* active/ removed */
	    rc = spool_rename_new(res->tmp_path, res->final_path);
	if (rc == 0 || errno != EEXIST || tries >= 3)
	    return (rc);
	if ((settled = spool_hold_wait(res->final_path)) != 0) {
	    errno = settled > 0 ? EEXIST : EAGAIN;
	    return (-1);
	}
    }
}

/* spool_held_end - the held file's descriptor closed, the reservation freed */

static void spool_held_end(struct spool_reservation *res)
{
    if (res->fd >= 0)
	close(res->fd);
    res->fd = -1;
    res->held = 0;
    spool_discard(res);				/* nothing left but memory */
}

const char *spool_hold(struct spool_reservation *res)
{
    struct timespec hold[2] = {{0, UTIME_OMIT}, {time(NULL) + SPOOL_HOLD, 0}};
    struct spool_keeper *keeper = res->keeper;
    int     rc;

    if (!res->streamed || !res->ev->held)	/* nothing says "held": as before */
	return (NULL);
    if (ftruncate(res->fd, (off_t) (res->meta_len + res->ev->body_len)) < 0)
	return (spool_fail("cannot truncate", res->tmp_path));
    if (futimens(res->fd, hold) < 0)
	return (spool_fail("cannot set the mtime of", res->tmp_path));
    if (res->sync == SPOOL_SYNC_ALWAYS && fsync(res->fd) < 0)
	return (spool_fail("cannot fsync", res->tmp_path));
    /* the bytes on their way now: blocks allocated (ext4 allocates at
       writeback, not at write) in the journal transaction that the
       save's sync commits, which waits for them (data=ordered); then
       spool_unhold()'s fsync has nothing left to do */
    if (res->sync == SPOOL_SYNC_OPTIMIZED)
	(void) sync_file_range(res->fd, 0, 0, SYNC_FILE_RANGE_WRITE);
    /* ours from before the name until the release or withdraw: another
       delivery of this id waits for it (spool_hold_wait()) */
    (void) flock(res->fd, LOCK_EX);
    rc = spool_hold_rename(res);
    if (rc < 0 && errno == EAGAIN) {
	spool_fail("cannot hold (another delivery of the same message holds its event)",
		   res->final_path);
	(void) flock(res->fd, LOCK_UN);
	return (spool_err);
    }
    if (rc < 0) {
	/* an event with this id is there; no RENAME_NOREPLACE here; or our
	   file was swept (spool_commit() writes it anew): commit after
	   the save, as before */
	if (errno == EEXIST || errno == EINVAL || errno == ENOSYS || errno == ENOTSUP
	    || (errno == ENOENT && access(res->tmp_path, F_OK) < 0 && errno == ENOENT)) {
	    /* not held, so not ours to lock: the runner must not take the
	       event committed so for one whose delivery is at work */
	    int     swept = errno == ENOENT;

	    (void) flock(res->fd, LOCK_UN);
	    return (swept ? NULL : spool_unheld(res));
	}
	spool_fail("cannot rename into", res->final_path);
	(void) flock(res->fd, LOCK_UN);
	return (spool_err);
    }
    if (res->sync == SPOOL_SYNC_ALWAYS && spool_fsync_dir(res->dir_path) < 0) {
	spool_fail("cannot fsync", res->dir_path);
	spool_unlink_own(res);			/* the mail will not be saved */
	(void) flock(res->fd, LOCK_UN);
	return (spool_err);
    }
    /* the file is active/ID now, and its descriptor ours until released */
    free(res->tmp_path);
    res->tmp_path = NULL;
    if (keeper != NULL) {
	free(keeper->path);
	keeper->path = NULL;
	keeper->fd = -1;			/* not closed: res->fd */
	spool_keeper_close(keeper);
	res->keeper = NULL;
    }
    res->held = 1;
    return (NULL);
}

const char *spool_unhold(struct spool_reservation *res)
{
    /* both times: inotify says IN_ATTRIB only for a change of both (one
       alone is IN_MODIFY, which every write in active/ would raise) */
    struct timespec now[2] = {{0, UTIME_NOW}, {0, UTIME_NOW}};
    const char *err = NULL;

    if (!res->held)
	return (spool_commit(res));
    if (res->sync == SPOOL_SYNC_OPTIMIZED && fsync(res->fd) < 0)
	err = spool_fail("cannot fsync", res->final_path);
    /* let go first: the runner, woken by the release, finds it free
       (spool_held_now() of an event past its hold) */
    else if (flock(res->fd, LOCK_UN), futimens(res->fd, now) < 0)
	err = spool_fail("cannot set the mtime of", res->final_path);
    spool_held_end(res);
    return (err);
}

/*
 * spool_held_busy - 1 when the delivery that named this held event is
 * still at work (saving its mail: it holds the file's flock), 0 when it
 * is gone (a crash or kill -9 between hold and release: its leftover)
 * or no flock can tell.
 */
int     spool_held_busy(const char *path)
{
    int     fd = open(path, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC), busy;

    if (fd < 0)
	return (0);
    busy = flock(fd, LOCK_SH | LOCK_NB) < 0 && errno == EWOULDBLOCK;
    close(fd);
    return (busy);
}

/*
 * spool_held_now - 1 when a held event must not be posted yet: its hold is
 * not over, or its delivery is still saving the mail past it (a save
 * longer than SPOOL_HOLD: posting then would post a bill whose mail may
 * not be saved after all). A hold ending further away than SPOOL_HOLD
 * was set by a clock since stepped back: it was held until the clock
 * caught up (two days), though nothing held its lock.
 */
int     spool_held_now(const struct spool_event *ev, const char *path, time_t now)
{
    return (ev->held && ((ev->mtime > (long long) now
			  && ev->mtime - (long long) now <= SPOOL_HOLD)
			 || spool_held_busy(path)));
}

void    spool_withdraw(struct spool_reservation *res)
{
    if (!res->held) {
	spool_discard(res);
	return;
    }
    spool_unlink_own(res);
    spool_held_end(res);
}
