/*
 * NAME
 *	spool_outcome 3
 * SUMMARY
 *	an attempt's outcome written back, a file that is no event buried
 * SYNOPSIS
 *	#include "spool.h"
 *
 *	const char *spool_update(dir, &event, &gone)
 *	const char *spool_dead(dir, &event, &how)
 *	int	spool_bury(dir, id, path, name)
 * DESCRIPTION
 *	spool_update() writes the outcome of an attempt (attempts,
 *	next_attempt, last_error; the mtime its next attempt time) the
 *	durable way spool_commit() writes an event, but only over the file
 *	the attempt read (ev->dev, ev->ino as spool_load() found them):
 *	with *gone set and nothing written when active/ID was removed
 *	meanwhile (SPOOL_UPDATE_GONE: dropped by request) or replaced
 *	(SPOOL_UPDATE_REPLACED: the spool tool's retry, a new delivery of
 *	the same id), which stays as it is.
 *
 *	spool_dead() moves an event into dead/, rewritten with its last
 *	attempt (event), and, like spool_update(), only the file the
 *	attempt read: *how says SPOOL_UPDATE_GONE or SPOOL_UPDATE_REPLACED
 *	(nothing moved: the replacement stays in active/ to be tried),
 *	SPOOL_DEAD_AS_IS (the rewrite could not be written, the spool
 *	full: the file moved as it was; the error returned) or
 *	SPOOL_DEAD_KEPT (not even that: still in active/; the error).
 *
 *	spool_bury() moves a file of active/ that is not an event into
 *	dead/ as it is, never over an existing dead/ID.
 * DIAGNOSTICS
 *	spool_update(): NULL, or a message in a static buffer naming the
 *	file and the system error. spool_bury(): 0, or -1 and errno.
 */

#define _GNU_SOURCE			/* renameat2() */
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "spool.h"
#include "spool_int.h"
#include "wh_alloc.h"

/* spool_not_read - another file than the one ev was loaded from (dev, ino) */

static int spool_not_read(const struct spool_event *ev, const struct stat *st)
{
    return (ev->ino != 0 && (st->st_dev != ev->dev || st->st_ino != ev->ino));
}

/*
 * spool_move_new - rename(), never over an existing file (EEXIST); where
 * the file system cannot promise that, a look first (not atomic: a file
 * put there between the look and the rename is replaced)
 */
static int spool_move_new(const char *from, const char *to)
{
    struct stat st;

    if (spool_rename_new(from, to) == 0)
	return (0);
    if (errno != EINVAL && errno != ENOSYS)
	return (-1);
    if (lstat(to, &st) == 0) {		/* no RENAME_NOREPLACE here */
	errno = EEXIST;
	return (-1);
    }
    return (rename(from, to));
}

/*
 * spool_dead_take - active/ID renamed out of active/ (into taken, in
 * tmp/: atomic, so what is taken is ours to look at); one that is not
 * the file the attempt read goes back, untouched (a newer one already
 * back in its place stands: the older is removed, as a rename over it
 * would have). 0 when taken, else *how says why not.
 */
static int spool_dead_take(const char *active, const char *taken,
			           const struct spool_event *ev, int *how)
{
    struct stat st;

    /* replaced already: left where it is (taking it out and back would
       leave a replacement in tmp/ alone for two system calls); only one
       renamed over it between this stat() and the rename() goes the
       way round, and then the copy in dead/ holds the same id */
    if (stat(active, &st) == 0 && spool_not_read(ev, &st)) {
	*how = SPOOL_UPDATE_REPLACED;
	return (-1);
    }
    if (rename(active, taken) < 0) {
	*how = errno == ENOENT ? SPOOL_UPDATE_GONE : SPOOL_DEAD_KEPT;
	return (-1);
    }
    if (stat(taken, &st) == 0 && spool_not_read(ev, &st)) {
	*how = SPOOL_UPDATE_REPLACED;
	if (spool_move_new(taken, active) < 0)
	    (void) unlink(taken);
	return (-1);
    }
    return (0);
}

/*
 * spool_dead_as_is - the rewrite could not be written (the spool full):
 * active/ID renamed into dead/ as it is (a rename needs no space). One
 * that is not the file the attempt read goes back into active/: it was
 * in dead/ meanwhile, never in no directory at all.
 */
static void spool_dead_as_is(const char *active, const char *dead,
			             const struct spool_event *ev, int *how)
{
    struct stat st;

    if (rename(active, dead) < 0) {
	*how = errno == ENOENT ? SPOOL_UPDATE_GONE : SPOOL_DEAD_KEPT;
	return;
    }
    *how = SPOOL_DEAD_AS_IS;
    if (stat(dead, &st) == 0 && spool_not_read(ev, &st)) {
	*how = SPOOL_UPDATE_REPLACED;
	(void) spool_move_new(dead, active);	/* a newer one there: this stays */
    }
}

/*
 * spool_dead - the rewritten event is written (and fsynced) in tmp/,
 * renamed into dead/ and its directory fsynced; only then is the file
 * read taken out of active/ (spool_dead_take()). When that was dropped
 * or replaced meanwhile, the copy in dead/ is removed again (a
 * replacement is back in active/, to be tried). So the event's id is in
 * active/ or dead/ (or both) at every instant: a crash never leaves it
 * in tmp/ alone, which the runner's start sweeps (a replacement renamed
 * over the file in the instant between spool_dead_take()'s stat() and
 * rename() is the one case where its own file may be: the copy in dead/
 * then holds the same id). Before, it wrote
 * dead/ID, then unlinked whatever active/ID was by then: a retry or a
 * new delivery renamed over it during its last attempt went to dead/
 * never tried.
 */
const char *spool_dead(const char *dir, const struct spool_event *ev, int *how)
{
    struct spool_reservation res;
    char   *active = spool_path(dir, SPOOL_ACTIVE, ev->id);
    char   *taken = spool_tmp_name(dir, "dead");
    char   *dead = spool_path(dir, SPOOL_DEAD, ev->id);
    const char *err;

    *how = 0;
    if ((err = spool_reserve(dir, ev, &res)) == NULL) {
	free(res.final_path);
	free(res.dir_path);
	res.final_path = wh_strdup(dead);
	res.dir_path = spool_path(dir, SPOOL_DEAD, NULL);
	if ((err = spool_commit_write(&res)) == NULL
	    && rename(res.tmp_path, res.final_path) < 0)
	    err = spool_fail("cannot rename into", res.final_path);
	else if (err == NULL) {
	    free(res.tmp_path);			/* renamed: nothing to remove */
	    res.tmp_path = NULL;
	    if (spool_fsync_dir(res.dir_path) < 0)
		err = spool_fail("cannot fsync", res.dir_path);
	}
	spool_discard(&res);
    }
    if (err != NULL) {
	spool_dead_as_is(active, dead, ev, how);
    } else if (spool_dead_take(active, taken, ev, how) == 0) {
	(void) unlink(taken);
    } else {					/* not dead-lettered: no copy */
	if (*how == SPOOL_DEAD_KEPT)
	    err = spool_fail("cannot rename", active);
	(void) unlink(dead);
    }
    free(active);
    free(taken);
    free(dead);
    return (err);
}

/*
 * spool_update - RENAME_EXCHANGE swaps the new file in atomically and
 * fails with ENOENT when the old one is gone (a drop during the attempt);
 * without it (EINVAL) a stat() then a rename leave a narrow window. The
 * file swapped out must be the one the event was loaded from: another
 * (the spool tool's retry, or a new delivery of the same id, renamed
 * over it during the attempt) is swapped back, and kept as it is.
 */
const char *spool_update(const char *dir, const struct spool_event *ev, int *gone_r)
{
    struct spool_reservation res;
    struct stat st;
    const char *err;
    int     rc, exchanged;

    *gone_r = 0;
    if ((err = spool_reserve(dir, ev, &res)) != NULL || (err = spool_commit_write(&res)) != NULL) {
	spool_discard(&res);
	return (err);
    }
    rc = renameat2(AT_FDCWD, res.tmp_path, AT_FDCWD, res.final_path, RENAME_EXCHANGE);
    if (rc == 0 && stat(res.tmp_path, &st) == 0 && spool_not_read(ev, &st)
	&& renameat2(AT_FDCWD, res.tmp_path, AT_FDCWD, res.final_path, RENAME_EXCHANGE) == 0) {
	*gone_r = SPOOL_UPDATE_REPLACED;	/* swapped back: ours is in tmp/ */
	spool_discard(&res);
	return (NULL);
    }
    if ((exchanged = rc == 0) == 0 && (errno == EINVAL || errno == ENOSYS)
	&& (rc = stat(res.final_path, &st)) == 0) {
	if (spool_not_read(ev, &st)) {
	    *gone_r = SPOOL_UPDATE_REPLACED;
	    spool_discard(&res);
	    return (NULL);
	}
	rc = rename(res.tmp_path, res.final_path);
    }
    if (rc < 0 && errno == ENOENT && stat(res.dir_path, &st) == 0)
	*gone_r = SPOOL_UPDATE_GONE;		/* dropped by request meanwhile */
    else if (rc < 0 && !(errno == ENOENT && spool_commit_dir_again(&res) == 0))
	err = spool_fail("cannot rename into", res.final_path);
    else if (spool_fsync_dir(res.dir_path) < 0)
	err = spool_fail("cannot fsync", res.dir_path);
    if (err == NULL && *gone_r == 0 && !exchanged) {
	free(res.tmp_path);			/* renamed: nothing left to remove */
	res.tmp_path = NULL;
    }
    spool_discard(&res);		/* exchanged: removes the old file */
    return (err);
}


/*
 * spool_bury - a file of active/ that is not an event, to dead/ as it is;
 * never over dead/ID, which may be the event's own dead letter (a broken
 * copy of it moved back into active/ replaced it): as ID-notevent-TIME
 * then. 0 and its name in dead/ in name, or -1 and errno.
 */
int     spool_bury(const char *dir, const char *id, const char *path,
		           char name[SPOOL_BURY_NAME])
{
    char    base[SPOOL_BURY_NAME];
    char   *dead;
    int     rc;

    if (spool_id_ok(id)) {
	snprintf(base, sizeof(base), "%s", id);
    } else {				/* a name of the operator's: made one */
	size_t  n = (size_t) snprintf(base, sizeof(base), "notevent-%.80s", id);

	for (size_t i = 9; i < n && i < sizeof(base); i++)
	    if (!isalnum((unsigned char) base[i]) && base[i] != '-' && base[i] != '_')
		base[i] = '_';
    }
    snprintf(name, SPOOL_BURY_NAME, "%s", base);
    dead = spool_path(dir, SPOOL_DEAD, name);
    if ((rc = spool_move_new(path, dead)) < 0 && errno == EEXIST) {
	snprintf(name, SPOOL_BURY_NAME, "%.100s-notevent-%lld", base, (long long) time(NULL));
	free(dead);
	dead = spool_path(dir, SPOOL_DEAD, name);
	rc = spool_move_new(path, dead);
    }
    free(dead);
    return (rc);
}
