/*
 * NAME
 *	daemon_user 3
 * SUMMARY
 *	a check made as the daemon's user, before it is that user
 * SYNOPSIS
 *	#include "daemon.h"
 *
 *	const char *daemon_as_user(user, check, context)
 *	const char *daemon_as_process(pid, check, context)
 * DESCRIPTION
 *	daemon_as_user() runs check(context) as "user" would, for -t and
 *	the start, which run as root: a file the daemon reads after
 *	privileges are dropped (resolv_conf, a table) passed the check as
 *	root and then failed in the running daemon. With a user and root,
 *	check runs in a child that dropped privileges and hands its error
 *	text back through a pipe; without a user, no longer root (a
 *	reload), or with a user that is unknown or root (which
 *	daemon_config_check() refuses anyway), it runs here. The result:
 *	check's error (up to 511 bytes), why the child could not check,
 *	or NULL. A fork that fails refuses nothing (NULL): the daemon
 *	itself still says it later.
 *
 *	daemon_as_process() runs check(context) with the credentials a
 *	running process has (its effective uid and gid and its
 *	supplementary groups, from /proc/PID/status), for a daemon that
 *	runs without a user setting under an id of its own (a container's
 *	runAsUser, fsGroup): what root can read may not be readable there.
 *	As daemon_as_user(): here when not root or the process runs as root;
 *	NULL, or check's error, or why the check could not be made (the
 *	process gone, its status unreadable).
 */

#include "build_config.h"

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "daemon.h"
#include "xalloc.h"

static char daemon_user_errbuf[512];

struct daemon_creds {
    uid_t   uid;
    gid_t   gid;
    gid_t  *groups;
    size_t  ngroups;
};

/* daemon_become_creds - the child takes a process's credentials */

static const char *daemon_become_creds(const void *who)
{
    const struct daemon_creds *c = who;

    if (setgroups(c->ngroups, c->groups) < 0 || setgid(c->gid) < 0 || setuid(c->uid) < 0)
	return ("cannot take the process's user and groups");
    return (NULL);
}

static const char *daemon_become_user(const void *who)
{
    return (daemon_drop_privileges(who));
}

/*
 * daemon_run_as - check(context) in a child that became "who" first; its
 * error text comes back through a pipe. "label" names who in an error.
 */
static const char *daemon_run_as(const char *(*become) (const void *), const void *who,
				         const char *label, const char *(*check) (void *),
				         void *context)
{
    const char *err;
    ssize_t len = 0, got;
    int     fds[2], status;
    pid_t   pid;

    fflush(NULL);
    if (pipe2(fds, O_CLOEXEC) < 0)
	return (NULL);
    if ((pid = fork()) < 0) {
	close(fds[0]);
	close(fds[1]);
	return (NULL);
    }
    if (pid == 0) {
	close(fds[0]);
	/* as the running daemon after its start: a configuration loaded
	   here is checked as a reload's (daemon_config_as_start()) */
	daemon_set_running();
	if ((err = become(who)) == NULL)
	    err = check(context);
	if (err && write(fds[1], err, strnlen(err, sizeof(daemon_user_errbuf) - 1)) < 0)
	    _exit(2);
	_exit(err != NULL);
    }
    close(fds[1]);
    while ((got = read(fds[0], daemon_user_errbuf + len, sizeof(daemon_user_errbuf) - 1 - len)) != 0)
	if (got > 0)
	    len += got;
	else if (errno != EINTR)
	    break;
    close(fds[0]);
    daemon_user_errbuf[len] = 0;
    while (waitpid(pid, &status, 0) < 0)
	if (errno != EINTR)
	    return (NULL);
    if (WIFEXITED(status) && WEXITSTATUS(status) == 0)
	return (NULL);
    if (len == 0)
	snprintf(daemon_user_errbuf, sizeof(daemon_user_errbuf), "the check as %s failed "
		 "(status 0x%x)", label, (unsigned) status);
    return (daemon_user_errbuf);
}

const char *daemon_as_user(const char *user, const char *(*check) (void *),
			           void *context)
{
    const struct passwd *pw;
    char    label[300];

    if (user == NULL || geteuid() != 0 || (pw = getpwnam(user)) == NULL || pw->pw_uid == 0)
	return (check(context));
    snprintf(label, sizeof(label), "user \"%s\"", user);
    return (daemon_run_as(daemon_become_user, user, label, check, context));
}

/* daemon_proc_creds - effective uid, gid and groups of pid; 0, or -1 */

static int daemon_proc_creds(long pid, struct daemon_creds *c)
{
    char    path[64], *line = NULL, *p, *end;
    size_t  cap = 0;
    unsigned long id;
    int     have = 0;
    FILE   *fp;

    snprintf(path, sizeof(path), "/proc/%ld/status", pid);
    if ((fp = fopen(path, "r")) == NULL)
	return (-1);
    while (getline(&line, &cap, fp) > 0) {
	if (strncmp(line, "Uid:", 4) == 0 || strncmp(line, "Gid:", 4) == 0) {
	    /* real, effective, saved, file system: the effective one */
	    (void) strtoul(line + 4, &end, 10);
	    id = strtoul(end, &end, 10);
	    if (line[0] == 'U')
		c->uid = (uid_t) id;
	    else
		c->gid = (gid_t) id;
	    have++;
	} else if (strncmp(line, "Groups:", 7) == 0) {
	    for (p = line + 7; (id = strtoul(p, &end, 10)), end != p; p = end) {
		c->groups = xrealloc(c->groups, (c->ngroups + 1) * sizeof(*c->groups));
		c->groups[c->ngroups++] = (gid_t) id;
	    }
	    have++;
	}
    }
    free(line);
    fclose(fp);
    return (have == 3 ? 0 : -1);
}

const char *daemon_as_process(long pid, const char *(*check) (void *), void *context)
{
    struct daemon_creds c = {0, 0, NULL, 0};
    char    label[64];
    const char *err;

    if (geteuid() != 0)
	return (check(context));
    if (daemon_proc_creds(pid, &c) < 0) {
	free(c.groups);
	snprintf(daemon_user_errbuf, sizeof(daemon_user_errbuf), "cannot read the user and "
		 "groups of process %ld (/proc/%ld/status): %s", pid, pid, strerror(errno));
	return (daemon_user_errbuf);
    }
    if (c.uid == 0) {
	free(c.groups);
	return (check(context));
    }
    snprintf(label, sizeof(label), "the user of process %ld (uid %lu)", pid,
	     (unsigned long) c.uid);
    err = daemon_run_as(daemon_become_creds, &c, label, check, context);
    free(c.groups);
    return (err);
}
