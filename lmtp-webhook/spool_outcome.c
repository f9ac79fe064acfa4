/*
 * NAME
 *	spool_outcome 3
 * SUMMARY
 *	an attempt's outcome written back, a file that is no event buried
 * SYNOPSIS
 *	#include "spool.h"
 *
 *	const char *spool_update(dir, &event, &gone)
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

#include "spool.h"
#include "spool_int.h"

/* spool_not_read - another file than the one ev was loaded from (dev, ino) */

static int spool_not_read(const struct spool_event *ev, const struct stat *st)
{
    return (ev->ino != 0 && (st->st_dev != ev->dev || st->st_ino != ev->ino));
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

/* spool_move_new - rename(), never over an existing file (EEXIST) */

static int spool_move_new(const char *from, const char *to)
{
    struct stat st;

    if (renameat2(AT_FDCWD, from, AT_FDCWD, to, RENAME_NOREPLACE) == 0)
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
