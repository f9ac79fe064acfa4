/*
 * NAME
 *	spool_owner 3
 * SUMMARY
 *	lmtp-webhook-spool, run by root, acts in the spool as its owner
 * SYNOPSIS
 *	#include "spool_tool.h"
 *
 *	const char *spool_owner_enter(dir)
 *
 *	void	spool_owner_root()
 *
 *	void	spool_owner_again()
 *
 *	const char *spool_owner_make(dir, user)
 *
 *	const char *spool_owner_user_reads(user, path)
 * DESCRIPTION
 *	The spool belongs to the user Dovecot delivers as (vmail), who can
 *	put anything into it: runner.lock made a symbolic link to
 *	/etc/shadow, dead/ or tmp/ replaced by a link to /etc. What root
 *	did there by path (open with O_CREAT, fchown, a rename into dead/)
 *	reached whatever the links named: a flush as root handed
 *	/etc/shadow to vmail. The tool therefore does its work in the
 *	spool with the effective user and groups of the spool's owner, as
 *	Postfix's postsuper does as mail_owner: a link then leads only
 *	where its owner could write anyway.
 *
 *	spool_owner_enter(), called as root before the spool is touched,
 *	takes the owner of dir (the configured spool_dir, followed if it
 *	is a link: the operator named it) as effective user and group and
 *	as the only supplementary group; a spool root owns, or a process
 *	that is not root, changes nothing. The real user stays root, so
 *	that spool_owner_root() can return to root for what only root may
 *	do (the pid file in /run, a reload's configuration file, the global
 *	secret_file readable by root alone (a daemon without "user"; with
 *	one, -t refuses such a file), never a route's secret file
 *	an event names; signalling a runner) and
 *	spool_owner_again() can leave it again. Both do nothing unless
 *	spool_owner_enter() took an owner. A daemon that drops to "user"
 *	(skeleton_start()) gives up root for good; these do nothing then.
 *
 *	spool_owner_make(), called as root before spool_owner_enter(),
 *	makes dir when it does not exist yet (its parent does: -t says
 *	so) for "user" (the daemon's, when not NULL), as Postfix makes its
 *	queue directories for mail_owner: owned by that user and its
 *	group, mode 0700. Made as root's, the daemon that then became
 *	"user" could use neither it nor its subdirectories, and the next
 *	-t and start refused the directory it had made itself. Without a
 *	user, or not root, it does nothing (spool_init() makes dir).
 *
 *	spool_owner_user_reads() says whether "user" can open path for
 *	reading, as the daemon will once it has become that user for good
 *	(its uid, group and supplementary groups; directories on the way,
 *	ACLs and all): NULL yes, else why not ("Permission denied"). For
 *	-t and the start: a file root alone reads passed them, and the
 *	running daemon could never read it. daemon_as_user() asks a child
 *	process, which gives up root and tries; this process keeps its
 *	ids. Not root, or no user: opened here.
 * DIAGNOSTICS
 *	spool_owner_enter() returns an error text (static) when the ids
 *	cannot be changed; the caller stops: it must not go on as root.
 */

#include "build_config.h"

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <pwd.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "daemon.h"
#include "msg.h"
#include "spool_tool.h"

static uid_t spool_owner_uid;
static gid_t spool_owner_gid;
static int spool_owner_taken;

const char *spool_owner_enter(const char *dir)
{
    static char why[256];
    struct stat st;

    if (getuid() != 0 || geteuid() != 0 || stat(dir, &st) < 0 || st.st_uid == 0)
	return (NULL);
    if (setgroups(1, &st.st_gid) < 0 || setegid(st.st_gid) < 0 || seteuid(st.st_uid) < 0) {
	snprintf(why, sizeof(why), "cannot act as %s's owner (uid %ld, gid %ld): %s",
		 dir, (long) st.st_uid, (long) st.st_gid, strerror(errno));
	return (why);
    }
    spool_owner_uid = st.st_uid;
    spool_owner_gid = st.st_gid;
    spool_owner_taken = 1;
    return (NULL);
}

void    spool_owner_root(void)
{
    int     saved = errno;

    if (spool_owner_taken && getuid() == 0 && seteuid(0) == 0 && setegid(0) < 0)
	msg_warn("setegid(0): %m");
    errno = saved;
}

void    spool_owner_again(void)
{
    int     saved = errno;

    if (spool_owner_taken && getuid() == 0 && geteuid() == 0
	&& (setegid(spool_owner_gid) < 0 || seteuid(spool_owner_uid) < 0))
	msg_fatal("cannot act as the spool's owner again: %m");	/* never as root */
    errno = saved;
}

const char *spool_owner_make(const char *dir, const char *user)
{
    static char why[300];
    struct passwd *pw;
    int     fd;

    if (user == NULL || geteuid() != 0)
	return (NULL);
    if ((pw = getpwnam(user)) == NULL) {	/* -t says so first */
	snprintf(why, sizeof(why), "unknown user \"%s\"", user);
	return (why);
    }
    if (mkdir(dir, 0700) < 0) {
	if (errno == EEXIST)			/* there: spool_owner_enter() */
	    return (NULL);
	snprintf(why, sizeof(why), "cannot create %s: %s", dir, strerror(errno));
	return (why);
    }
    /* by descriptor: the path is checked to be the directory just made */
    if ((fd = open(dir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)) < 0
	|| fchown(fd, pw->pw_uid, pw->pw_gid) < 0) {
	snprintf(why, sizeof(why), "cannot give %s to user %s: %s", dir, user, strerror(errno));
	if (fd >= 0)
	    close(fd);
	return (why);
    }
    close(fd);
    msg_info("made %s for user %s (mode 0700)", dir, user);
    return (NULL);
}

static const char *spool_owner_open_check(void *path)
{
    /* O_NONBLOCK: never wait on a FIFO; nothing is read */
    int     fd = open(path, O_RDONLY | O_NONBLOCK | O_NOCTTY | O_CLOEXEC);

    if (fd < 0)
	return (strerror(errno));
    close(fd);
    return (NULL);
}

const char *spool_owner_user_reads(const char *user, const char *path)
{
    return (daemon_as_user(user, spool_owner_open_check, (void *) path));
}
