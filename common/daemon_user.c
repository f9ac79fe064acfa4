/*
 * NAME
 *	daemon_user 3
 * SUMMARY
 *	a check made as the daemon's user, before it is that user
 * SYNOPSIS
 *	#include "daemon.h"
 *
 *	const char *daemon_as_user(user, check, context)
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
 */

#include "build_config.h"

#include <errno.h>
#include <fcntl.h>
#include <pwd.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "daemon.h"

static char daemon_user_errbuf[512];

const char *daemon_as_user(const char *user, const char *(*check) (void *),
			           void *context)
{
    const struct passwd *pw;
    const char *err;
    ssize_t len = 0, got;
    int     fds[2], status;
    pid_t   pid;

    if (user == NULL || geteuid() != 0 || (pw = getpwnam(user)) == NULL || pw->pw_uid == 0)
	return (check(context));
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
	if ((err = daemon_drop_privileges(user)) == NULL)
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
	snprintf(daemon_user_errbuf, sizeof(daemon_user_errbuf), "the check as user \"%s\" failed "
		 "(status 0x%x)", user, (unsigned) status);
    return (daemon_user_errbuf);
}
