/*
 * NAME
 *	spool_tmp 3
 * SUMMARY
 *	the spool's tmp/: free files for reuse, and what crashed writers left
 * SYNOPSIS
 *	#include "spool.h"
 *
 *	int	spool_sweep_tmp(dir, now)
 *	int	spool_sweep_tmp_step(dir, now, &sweep, visits)
 *	void	spool_sweep_tmp_end(&sweep)
 *	int	spool_recycle(dir, path, &pool)
 *	int	spool_free_count(dir)
 *
 *	#include "spool_int.h"
 *
 *	char	*spool_tmp_name(dir, prefix)
 *	int	spool_free_name(name)
 *	int	spool_claim(dir, path)
 *	int	spool_rename_new(from, to)
 * DESCRIPTION
 *	The file-system side of spool.c's writers, kept apart from the
 *	event format: see spool.c for the free-file pool (spool_recycle()
 *	and spool_claim()) and for spool_sweep_tmp()'s ages. Every name in
 *	tmp/ is PREFIX.PID.RANDOM (spool_tmp_name()) so that the sweep can
 *	tell a live writer's file from a dead one's.
 *
 *	spool_sweep_tmp_step() looks at no more than visits names of tmp/
 *	per call, keeping the directory open in sweep between calls: 1
 *	when the sweep is done (sweep->removed says how many files it
 *	removed; the next call starts anew), 0 when names are left.
 *	spool_sweep_tmp_end() abandons one. spool_sweep_tmp() is a whole
 *	sweep at once.
 *
 *	spool_rename_new() is rename() that never replaces a file at TO
 *	(renameat2() RENAME_NOREPLACE): -1 with EEXIST when one is there,
 *	with EINVAL (or ENOSYS) where the kernel or file system cannot
 *	promise it; each caller decides what it may do then.
 * DIAGNOSTICS
 *	spool_claim(): a descriptor or -1; the others as described above
 *	each function.
 */

#define _GNU_SOURCE			/* renameat2() */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "spool.h"
#include "spool_int.h"

/*
 * spool_tmp_random - the RANDOM of a tmp/ name: a generator of its own
 * (splitmix64), seeded from getrandom() once per process (pid), not
 * random(): never seeded, every process named its files alike, and
 * seeding it here would change the random() of the Dovecot lmtp process
 * the plugin runs in. Time, pid and an address when getrandom() fails.
 */
static unsigned long spool_tmp_random(pid_t pid)
{
    static uint64_t state;
    static pid_t seeded;
    uint64_t z;

    if (seeded != pid) {
	if (getrandom(&state, sizeof(state), GRND_NONBLOCK) != (ssize_t) sizeof(state))
	    state = ((uint64_t) time(NULL) << 20) ^ ((uint64_t) pid << 40)
		^ (uint64_t) (uintptr_t) &z;
	seeded = pid;
    }
    z = (state += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return ((unsigned long) ((z ^ (z >> 31)) & 0x7fffffffffffffffULL));
}

/* spool_tmp_name - tmp/PREFIX.PID.RANDOM: spool_sweep_tmp() reads the pid */

char   *spool_tmp_name(const char *dir, const char *prefix)
{
    char    name[200];
    pid_t   pid = getpid();

    snprintf(name, sizeof(name), "%s.%ld.%lu", prefix, (long) pid, spool_tmp_random(pid));
    return (spool_path(dir, SPOOL_TMP, name));
}

int     spool_free_name(const char *name)
{
    return (strncmp(name, SPOOL_FREE ".", sizeof(SPOOL_FREE)) == 0);
}

/*
 * spool_claim - a free file (see spool_recycle()) renamed to path and
 * opened, or -1. The rename is the claim: of several lmtp processes
 * that try one file, one wins and the others look further. A file we
 * cannot open for writing (another user's) is removed, not reused.
 * Its old bytes are cut off at once (the inode is what is worth
 * reusing, not its blocks): written over in place, they are blocks
 * ext4's data=ordered journal commit does not wait for, so with
 * mail_fsync = optimized (rename, then fsync) a crash between the
 * rename and the fsync left active/ID holding the old event's bytes at
 * the new length. Blocks newly allocated are written before the
 * commit that names them: the file is then a prefix of the event.
 */
int     spool_claim(const char *dir, const char *path)
{
    char   *tmp = spool_path(dir, SPOOL_TMP, NULL), *src;
    DIR    *d = opendir(tmp);
    struct dirent *de;
    struct stat st;
    int     fd = -1, tries = 0;

    while (d != NULL && fd < 0 && tries < 8 && (de = readdir(d)) != NULL) {
	if (!spool_free_name(de->d_name))
	    continue;
	tries++;
	src = spool_path(dir, SPOOL_TMP, de->d_name);
	if (rename(src, path) == 0
	    && ((fd = open(path, O_RDWR | O_NOFOLLOW | O_CLOEXEC)) < 0
		|| fstat(fd, &st) < 0 || !S_ISREG(st.st_mode) || st.st_nlink != 1
		|| ftruncate(fd, 0) < 0)) {
	    if (fd >= 0)
		close(fd);
	    fd = -1;
	    (void) unlink(path);
	}
	free(src);
    }
    if (d != NULL)
	closedir(d);
    free(tmp);
    return (fd);
}

/* spool_tmp_writer - the pid in NAME.PID.RANDOM, or 0 */

static long spool_tmp_writer(const char *name)
{
    const char *last = strrchr(name, '.'), *dot;
    char   *end;
    long    pid;

    if (last == NULL || last == name)
	return (0);
    for (dot = last - 1; dot > name && *dot != '.'; dot--)
	 /* void */ ;
    if (*dot != '.')
	return (0);
    pid = strtol(dot + 1, &end, 10);
    return (end == last && pid > 0 ? pid : 0);
}

/* spool_sweep_stale - a file of tmp/ that a crashed writer left */

static int spool_sweep_stale(const char *path, const char *name, time_t now)
{
    struct stat st;
    long    pid = spool_tmp_writer(name);

    /* ctime, not mtime: a commit sets the mtime to the next attempt,
       and every write, fallocate or truncate moves the ctime */
    return (lstat(path, &st) == 0 && S_ISREG(st.st_mode)
	    && (now - st.st_ctime > SPOOL_TMP_MAX_AGE
		|| (now - st.st_ctime > SPOOL_TMP_ORPHAN_AGE && pid > 0
		    && kill((pid_t) pid, 0) < 0 && errno == ESRCH)));
}

void    spool_sweep_tmp_end(struct spool_sweep *sw)
{
    if (sw->dir != NULL)
	closedir(sw->dir);
    sw->dir = NULL;
}

/* spool_sweep_tmp_step - at most visits names of tmp/; 1 once done */

int     spool_sweep_tmp_step(const char *dir, time_t now, struct spool_sweep *sw, int visits)
{
    struct dirent *de;
    char   *path;

    if (sw->dir == NULL) {
	char   *tmp = spool_path(dir, SPOOL_TMP, NULL);

	sw->removed = 0;
	sw->dir = opendir(tmp);
	free(tmp);
	if (sw->dir == NULL)
	    return (1);
    }
    while (visits-- > 0) {
	if ((de = readdir(sw->dir)) == NULL) {
	    spool_sweep_tmp_end(sw);
	    return (1);
	}
	if (de->d_name[0] == '.')
	    continue;
	path = spool_path(dir, SPOOL_TMP, de->d_name);
	if (spool_sweep_stale(path, de->d_name, now) && unlink(path) == 0)
	    sw->removed++;
	free(path);
    }
    return (0);
}

/* spool_sweep_tmp - remove files that crashed writers left in tmp/ */

int     spool_sweep_tmp(const char *dir, time_t now)
{
    struct spool_sweep sw = {NULL, 0};

    while (spool_sweep_tmp_step(dir, now, &sw, SPOOL_SWEEP_STEP) == 0)
	 /* void */ ;
    return (sw.removed);
}

/*
 * spool_recycle - remove a delivered event's file at path: renamed to a
 * free file for the next reservation while *pool (the caller's count of
 * free files) is under SPOOL_FREE_MAX and the file is small, unlinked
 * otherwise. 0, or -1 with errno (ENOENT: it was gone already).
 */
int     spool_recycle(const char *dir, const char *path, int *pool)
{
    struct stat st;
    char   *free_path;
    int     rc;

    if (*pool >= SPOOL_FREE_MAX || lstat(path, &st) < 0 || !S_ISREG(st.st_mode)
	|| st.st_size > SPOOL_FREE_SIZE_MAX)
	return (unlink(path));
    free_path = spool_tmp_name(dir, SPOOL_FREE);
    if ((rc = rename(path, free_path)) == 0)
	*pool += 1;
    else if (errno != ENOENT)
	rc = unlink(path);
    free(free_path);
    return (rc);
}

/* spool_free_count - the free files in tmp/ now */

int     spool_free_count(const char *dir)
{
    char   *tmp = spool_path(dir, SPOOL_TMP, NULL);
    DIR    *d = opendir(tmp);
    struct dirent *de;
    int     n = 0;

    while (d != NULL && (de = readdir(d)) != NULL)
	n += spool_free_name(de->d_name);
    if (d != NULL)
	closedir(d);
    free(tmp);
    return (n);
}

int     spool_rename_new(const char *from, const char *to)
{
#ifdef RENAME_NOREPLACE
    return (renameat2(AT_FDCWD, from, AT_FDCWD, to, RENAME_NOREPLACE));
#else
    (void) from;
    (void) to;
    errno = EINVAL;				/* as a file system without it */
    return (-1);
#endif
}
