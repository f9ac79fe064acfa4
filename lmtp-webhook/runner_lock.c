/*
 * NAME
 *	runner_lock 3
 * SUMMARY
 *	lmtp-webhook-spool's lock on a spool, and its retry schedule
 * SYNOPSIS
 *	#include "spool_tool.h"
 *
 *	int	runner_lock(dir, &fd, &holder_pid)
 *	void	runner_unlock(fd)
 *	void	runner_lock_record(fd)
 *	void	runner_lock_detached(&fd)
 *	int	runner_lock_check(dir, &fd, &holder_pid)
 *	long long runner_backoff(attempts, retry_after)
 *	int	runner_due(next, now)
 * DESCRIPTION
 *	runner_lock() takes the exclusive flocks that make one process the
 *	spool's only poster: on DIR itself, which no "rm *.lock" can take
 *	away, and on DIR/runner.lock, where it records its pid (flush
 *	signals it); -1 with *holder_pid (0 when runner.lock was removed
 *	under the holder: it names it again within a second) when another
 *	holds them. A file system that cannot lock a directory (NFS
 *	before 4) leaves runner.lock alone to say it, with a warning.
 *	A spool out of inodes (or quota) leaves the directory's lock alone,
 *	with a warning: the runner must drain it; the file is made by
 *	runner_lock_check() once it can be.
 *	runner_unlock() lets both go. The file is owned like the spool
 *	(spool_own()), also when root makes it: the daemon, run as the
 *	mail user, must open it.
 *	runner_lock_record() writes this process's pid again: the daemon
 *	takes the lock before it detaches (a second runner fails in the
 *	foreground, with its exit status) and records the detached pid.
 *	The pid is written over the old one at a fixed width, never
 *	truncated first: a reader never sees an empty file.
 *	runner_lock_detached() is the same as a skeleton's detached hook.
 *
 *	runner_lock_check() (every pass that posts, once a second) finds
 *	runner.lock removed or replaced (an operator's
 *	"rm *.lock"): the directory's flock still keeps a second runner
 *	out, but it could not name the holder, nor flush signal it. It
 *	takes the new file's lock (and *fd) and returns 0, or -1 with
 *	*holder_pid when another process holds it (one that took no
 *	directory lock): the caller stops.
 *
 *	runner_backoff() is the wait before the next attempt: Retry-After
 *	(at most RUNNER_RETRY_AFTER_MAX), or the Standard Webhooks schedule
 *	with +-20% jitter; runner_due() says whether a next attempt
 *	time has come. Split from runner.c, which keeps the loop.
 */

#include "build_config.h"

#include <errno.h>
#include <poll.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "msg.h"
#include "spool.h"
#include "spool_tool.h"

/* the flock on the spool directory, while this process posts */

static int runner_dir_fd = -1;

/* the errno last said of runner.lock that cannot be made: once */
static int runner_lock_said;

/*
 * runner_lock_dir - the flock on DIR itself: 0, or -1 when another
 * process holds it. A directory the file system cannot lock (NFS's
 * emulation of flock() wants a file open for writing) counts as
 * locked, with a warning: runner.lock alone keeps a second runner out.
 */
static int runner_lock_dir(const char *dir)
{
    int     fd;

    if ((fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) < 0)
	msg_fatal("open %s: %m", dir);
    if (flock(fd, LOCK_EX | LOCK_NB) == 0) {
	runner_dir_fd = fd;
	return (0);
    }
    if (errno == EWOULDBLOCK) {
	close(fd);
	return (-1);
    }
    msg_warn("flock %s: %m; a runner.lock removed by hand lets a second runner in", dir);
    close(fd);
    return (0);
}

/* runner_lock_holder - the pid recorded in runner.lock, 0 if none */

static long runner_lock_holder(const char *path)
{
    char    pid[32];
    ssize_t n;
    int     fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK);
    long    holder = 0;

    if (fd >= 0 && (n = pread(fd, pid, sizeof(pid) - 1, 0)) > 0) {
	pid[n] = 0;
	holder = atol(pid);
    }
    if (fd >= 0)
	close(fd);
    return (holder);
}

/*
 * runner_lock_file - the flock on DIR/runner.lock (made if need be),
 * this process's pid recorded in it: 0, or -1 with *holder_r.
 */
static int runner_lock_file(const char *dir, int *fd_r, long *holder_r)
{
    char   *path = spool_path(dir, "runner.lock", NULL);
    struct stat st;
    /* O_NOFOLLOW: whoever owns the spool may plant a link here */
    int     fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK, 0600);

    if (fd < 0 && errno == EACCES && stat(path, &st) == 0)
	msg_fatal("open %s: Permission denied (owned by uid %ld, mode %04o; this process runs as uid %ld:"
		  " chown it to the spool's owner, or remove it while no runner runs)",
		  path, (long) st.st_uid, (unsigned) (st.st_mode & 07777), (long) geteuid());
    /* a spool out of inodes (or quota) must still drain: the directory's
       flock keeps a second runner out; runner_lock_check() makes the file
       once it can (helper-127: run and flush died, nothing was posted) */
    if (fd < 0 && (errno == ENOSPC || errno == EDQUOT) && runner_dir_fd >= 0) {
	runner_lock_said = errno;
	msg_warn("cannot make %s: %m; posting under the spool directory's lock alone "
		 "(flush cannot signal this runner until the file is made)", path);
	free(path);
	*holder_r = 0;
	*fd_r = -1;
	return (0);
    }
    if (fd < 0)
	msg_fatal("open %s: %m%s", path, errno == ELOOP ? " (a symbolic link: remove it)" : "");
    if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode))
	msg_fatal("%s is not a regular file: remove it", path);
    if (spool_own(dir, fd) < 0)			/* root's flush: the daemon's too */
	msg_warn("chown %s: %m", path);
    *holder_r = 0;
    if (flock(fd, LOCK_EX | LOCK_NB) < 0) {
	*holder_r = runner_lock_holder(path);
	free(path);
	close(fd);
	return (-1);
    }
    free(path);
    runner_lock_record(fd);
    *fd_r = fd;
    return (0);
}

/*
 * runner_lock - the directory first: a process that cannot have it
 * makes no runner.lock, which its holder makes again when it was
 * removed (runner_lock_check()) and must find unlocked.
 */
int     runner_lock(const char *dir, int *fd_r, long *holder_r)
{
    char   *path;

    if (runner_lock_dir(dir) < 0) {
	/* the holder names itself once started: four runners started at
	   once had the losers read an empty runner.lock and say it was
	   removed; wait a little for the name before saying none came */
	path = spool_path(dir, "runner.lock", NULL);
	for (int tries = 0; (*holder_r = runner_lock_holder(path)) <= 0 && tries < 30; tries++)
	    (void) poll(NULL, 0, 100);
	free(path);
	return (-1);
    }
    if (runner_lock_file(dir, fd_r, holder_r) < 0) {
	runner_unlock(-1);
	return (-1);
    }
    return (0);
}

void    runner_unlock(int fd)
{
    if (fd >= 0)
	close(fd);
    if (runner_dir_fd >= 0)
	close(runner_dir_fd);
    runner_dir_fd = -1;
}

void    runner_lock_record(int fd)
{
    char    pid[32];
    int     n = snprintf(pid, sizeof(pid), "%-20ld\n", (long) getpid());

    if (fd < 0)					/* not made: said once */
	return;
    /* one write of one width over the last: never an empty moment */
    if (pwrite(fd, pid, (size_t) n, 0) != n || ftruncate(fd, n) < 0)
	msg_warn("cannot record pid in runner.lock: %m");
}

void    runner_lock_detached(void *fd_ptr)
{
    runner_lock_record(*(int *) fd_ptr);
}

long long runner_backoff(int attempts, long long retry_after)
{
    static const long long schedule[] = {5, 300, 1800, 7200, 18000, 36000, 36000};
    int     last = sizeof(schedule) / sizeof(schedule[0]) - 1;
    long long base;

    if (retry_after > 0)
	return (retry_after > RUNNER_RETRY_AFTER_MAX ? RUNNER_RETRY_AFTER_MAX : retry_after);
    base = schedule[attempts < 1 ? 0 : attempts - 1 > last ? last : attempts - 1];
    return (base * (80 + random() % 41) / 100);
}

int     runner_lock_check(const char *dir, int *fd_r, long *holder_r)
{
    char   *path = spool_path(dir, "runner.lock", NULL);
    struct stat held, now;
    int     fd = -1, there = -1, gone, err;

    *holder_r = 0;
    if (*fd_r >= 0 && fstat(*fd_r, &held) == 0 && (there = stat(path, &now)) == 0
	&& held.st_dev == now.st_dev && held.st_ino == now.st_ino) {
	runner_lock_said = 0;
	free(path);
	return (0);
    }
    if (*fd_r < 0)				/* never made (no inode) */
	there = stat(path, &now);
    gone = there < 0 ? errno : 0;		/* ENOENT: removed */
    /* made first here: runner_lock_file() dies when it cannot open it */
    if ((gone == 0 || gone == ENOENT)
	&& (fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK, 0600)) >= 0)
	close(fd);
    else if ((err = errno) != runner_lock_said) {	/* once, and true: not always removed */
	msg_warn("%s %s: %s (this process runs as uid %ld)", path, gone == 0
		 ? "was replaced by a file this process cannot open" : gone == ENOENT
		 ? "was removed and cannot be made again" : "cannot be looked at",
		 strerror(err), (long) geteuid());
	runner_lock_said = err;
    }
    free(path);
    if (fd < 0)
	return (0);
    /* the directory's flock is ours already: the file's alone */
    if (runner_lock_file(dir, &fd, holder_r) < 0)
	return (-1);
    if (*fd_r >= 0) {
	msg_warn("%s/runner.lock was removed or replaced; locked again", dir);
	close(*fd_r);
    } else
	msg_info("%s/runner.lock made and locked: flush can signal this runner", dir);
    runner_lock_said = 0;
    *fd_r = fd;
    return (0);
}

/*
 * runner_due - a next attempt time reached, or further away than any
 * wait the runner sets (RUNNER_RETRY_AFTER_MAX): written while the clock
 * was ahead and since stepped back, it would otherwise wait that long.
 */
int     runner_due(long long next, time_t now)
{
    return (next <= (long long) now || next - (long long) now > RUNNER_RETRY_AFTER_MAX);
}
