/*
 * NAME
 *	runner_lock 3
 * SUMMARY
 *	lmtp-webhook-spool's lock on a spool, and its retry schedule
 * SYNOPSIS
 *	#include "spool_tool.h"
 *
 *	int	runner_lock(dir, &fd, &holder_pid)
 *	void	runner_lock_record(fd)
 *	void	runner_lock_detached(&fd)
 *	int	runner_lock_check(dir, &fd, &holder_pid)
 *	long long runner_backoff(attempts, retry_after)
 *	int	runner_due(next, now)
 * DESCRIPTION
 *	runner_lock() takes the exclusive flock on DIR/runner.lock that
 *	makes one process the spool's only poster, and records its pid
 *	there (flush signals it); -1 with *holder_pid when another holds
 *	it. The file is owned like the spool (spool_own()), also when
 *	root makes it: the daemon, run as the mail user, must open it.
 *	runner_lock_record() writes this process's pid again: the daemon
 *	takes the lock before it detaches (a second runner fails in the
 *	foreground, with its exit status) and records the detached pid.
 *	The pid is written over the old one at a fixed width, never
 *	truncated first: a reader never sees an empty file.
 *	runner_lock_detached() is the same as a skeleton's detached hook.
 *
 *	runner_lock_check() (the daemon, at each listing of active/) finds
 *	runner.lock removed or replaced (an operator's "rm *.lock"): a
 *	second runner would then lock a new file and post the same events
 *	at once, and flush would find no pid. It takes the new file's lock
 *	(and *fd) and returns 0, or -1 with *holder_pid when another
 *	process holds it: the caller stops.
 *
 *	runner_backoff() is the wait before the next attempt: Retry-After
 *	(at most RUNNER_RETRY_AFTER_MAX), or the Standard Webhooks schedule
 *	with +-20% jitter; runner_due() says whether a next attempt
 *	time has come. Split from runner.c, which keeps the loop.
 */

#include "build_config.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "msg.h"
#include "spool.h"
#include "spool_tool.h"

int     runner_lock(const char *dir, int *fd_r, long *holder_r)
{
    char   *path = spool_path(dir, "runner.lock", NULL);
    char    pid[32];
    ssize_t n;
    struct stat st;
    /* O_NOFOLLOW: whoever owns the spool may plant a link here */
    int     fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK, 0600);

    if (fd < 0 && errno == EACCES && stat(path, &st) == 0)
	msg_fatal("open %s: Permission denied (owned by uid %ld, mode %04o; this process runs as uid %ld:"
		  " chown it to the spool's owner, or remove it while no runner runs)",
		  path, (long) st.st_uid, (unsigned) (st.st_mode & 07777), (long) geteuid());
    if (fd < 0)
	msg_fatal("open %s: %m%s", path, errno == ELOOP ? " (a symbolic link: remove it)" : "");
    if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode))
	msg_fatal("%s is not a regular file: remove it", path);
    if (spool_own(dir, fd) < 0)			/* root's flush: the daemon's too */
	msg_warn("chown %s: %m", path);
    free(path);
    *holder_r = 0;
    if (flock(fd, LOCK_EX | LOCK_NB) < 0) {
	if ((n = pread(fd, pid, sizeof(pid) - 1, 0)) > 0) {
	    pid[n] = 0;
	    *holder_r = atol(pid);
	}
	close(fd);
	return (-1);
    }
    runner_lock_record(fd);
    *fd_r = fd;
    return (0);
}

void    runner_lock_record(int fd)
{
    char    pid[32];
    int     n = snprintf(pid, sizeof(pid), "%-20ld\n", (long) getpid());

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
    int     fd;

    *holder_r = 0;
    if (fstat(*fd_r, &held) == 0 && stat(path, &now) == 0 && held.st_dev == now.st_dev
	&& held.st_ino == now.st_ino) {
	free(path);
	return (0);
    }
    /* made first here: runner_lock() dies when it cannot open it */
    if ((fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK, 0600)) < 0) {
	msg_warn("%s was removed and cannot be made again: %m", path);
	free(path);
	return (0);
    }
    close(fd);
    free(path);
    if (runner_lock(dir, &fd, holder_r) < 0)
	return (-1);
    msg_warn("%s/runner.lock was removed or replaced; locked again", dir);
    close(*fd_r);
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
