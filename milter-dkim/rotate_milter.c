/*
 * NAME
 *	rotate_milter 3
 * SUMMARY
 *	milter-dkim-keygen rotate: the running milter, and what it can read
 * SYNOPSIS
 *	#include "rotate.h"
 *
 *	long	rotate_milter_pid(pid_file, &why)
 *	const char *rotate_milter_reads(user, pid_file, path)
 * DESCRIPTION
 *	rotate_milter_pid() is the pid of the milter-dkim that holds
 *	pid_file locked and is named in it, or 0 with why set: the lock
 *	proves that some process holds the file, not that it is the one
 *	the file names (a process of the milter's user, who may write the
 *	file, could lock it naming any pid, and root's SIGHUP would reload
 *	or kill that process), so the named process must be milter-dkim.
 *
 *	rotate_milter_reads() says whether the milter can read the key
 *	file path. Every reload reads it as the milter runs: a key it
 *	cannot read fails the reload, the old key keeps signing, and once
 *	--retire ran and the old record is gone, mail signed with it
 *	fails; a restart fails at once. With user, checked as that user;
 *	without it (a container's milter: its own uid and fsGroup), as
 *	the running milter is (pid_file), whose uid and groups root does
 *	not share; without a running milter, not checked (root reads it).
 * DIAGNOSTICS
 *	rotate_milter_reads(): NULL, or who cannot read path and why.
 */

#include "build_config.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/file.h>
#include <unistd.h>

#include "daemon.h"
#include "rotate.h"

static int rotate_is_milter(long pid)
{
    char    path[64], comm[64] = "";
    FILE   *fp;

    snprintf(path, sizeof(path), "/proc/%ld/comm", pid);
    if ((fp = fopen(path, "r")) == NULL)
	return (0);
    if (fgets(comm, sizeof(comm), fp) == NULL)
	comm[0] = 0;
    fclose(fp);
    comm[strcspn(comm, "\n")] = 0;
    return (strcmp(comm, "milter-dkim") == 0 || strcmp(comm, "lt-milter-dkim") == 0);
}

long    rotate_milter_pid(const char *path, const char **why)
{
    static char buf[600];
    FILE   *fp;
    long    pid = 0;

    if ((fp = fopen(path, "r")) == NULL || fscanf(fp, "%ld", &pid) != 1 || pid <= 1
	|| flock(fileno(fp), LOCK_SH | LOCK_NB) == 0) {	/* the milter holds it locked */
	snprintf(buf, sizeof(buf), "%s: %s", path, fp == NULL ? strerror(errno)
		 : pid <= 1 ? "no process id in it" : "stale (no milter-dkim holds it locked)");
	if (fp)
	    fclose(fp);
	*why = buf;
	return (0);
    }
    fclose(fp);
    if (!rotate_is_milter(pid)) {
	snprintf(buf, sizeof(buf), "%s: process %ld is not milter-dkim (its pid file is "
		 "locked by another process)", path, pid);
	*why = buf;
	return (0);
    }
    return (pid);
}

static const char *rotate_milter_open(void *path)
{
    static char err[600];
    int     fd = open(path, O_RDONLY | O_CLOEXEC);

    if (fd >= 0) {
	close(fd);
	return (NULL);
    }
    snprintf(err, sizeof(err), "%s", strerror(errno));
    return (err);
}

const char *rotate_milter_reads(const char *user, const char *pid_file, const char *path)
{
    const char *err, *none;
    static char who[1400];
    long    pid;

    if (user != NULL || geteuid() != 0) {
	if ((err = daemon_as_user(user, rotate_milter_open, (void *) path)) == NULL)
	    return (NULL);
	snprintf(who, sizeof(who), "user %s (milter-dkim's) cannot read %s: %s",
		 user ? user : "(this one)", path, err);
	return (who);
    }
    if (pid_file == NULL || (pid = rotate_milter_pid(pid_file, &none)) == 0)
	return (NULL);				/* not running: root's read is its start's */
    if ((err = daemon_as_process(pid, rotate_milter_open, (void *) path)) == NULL)
	return (NULL);
    snprintf(who, sizeof(who), "the running milter-dkim (pid %ld) cannot read %s: %s", pid,
	     path, err);
    return (who);
}
