/*
 * NAME
 *	daemon_config 3
 * SUMMARY
 *	what every daemon's configuration has in common
 * SYNOPSIS
 *	#include "daemon.h"
 *
 *	DAEMON_CONFIG_SPECS
 *
 *	DAEMON_DRAIN_SPECS
 *
 *	void	daemon_config_check(cfg)
 *	void	daemon_config_addresses(cfg, addrs, count)
 *	long long daemon_config_connections(cfg, name, per_connection, reserve)
 *	long	daemon_threads_max()
 *
 *	void	daemon_config_running(cfg)
 *	int	daemon_config_unapplied(new, name)
 *	int	daemon_config_reload(new)
 *	long	daemon_nofile_raise()
 * DESCRIPTION
 *	DAEMON_DRAIN_SPECS is the row of drain_timeout (0 to 1h, default
 *	25s: below Kubernetes' 30 s terminationGracePeriodSeconds), for the
 *	daemons that drain at a stop (skeleton_drain(3)); a reload applies it.
 *
 *	DAEMON_CONFIG_SPECS are the specification rows of pid_file, user,
 *	syslog and metrics_listen, for the end of a daemon's table. They
 *	are marked CONFIG_RESTART: the start sequence uses them once.
 *
 *	daemon_config_check() checks their values the way start-up will
 *	use them, so that -t fails for what the daemon would die on: user
 *	must exist and not be root, pid_file's directory must exist and
 *	the file a regular one (not a symbolic link) that root can open
 *	for writing (an existing one is opened; for a missing one a file
 *	of the check's own is made beside it and removed: /proc, a
 *	read-only mount; not on a reload, whose daemon holds it, nor as
 *	another user), metrics_listen must be a TCP address of this
 *	host. Errors go into cfg, with the line of the setting.
 *
 *	daemon_config_addresses() reports two of the daemon's listening
 *	addresses (and metrics_listen, added here) that cannot both be
 *	bound: the same UNIX path, or the same port with the same address
 *	or a wildcard on either side. An IPv4-mapped address
 *	(::ffff:a.b.c.d) is a.b.c.d there, as bind() makes it; an IPv6
 *	wildcard (::) holds every IPv4 address of its port too when the
 *	daemon binds it without IPV6_V6ONLY ("dual_stack": milter-dkim's
 *	socket; addr_listen() sets it) and net.ipv6.bindv6only is 0, the
 *	Linux default. Also reported: a TCP address on
 *	port 0, where the daemon would listen on a port no client knows;
 *	and a TCP address no interface of this host has (a bind() to it
 *	on port 0 fails with EADDRNOTAVAIL). Addresses that do not
 *	parse are left to the caller's own checks; a caller that parsed
 *	them already passes the result in "addr".
 *
 *	daemon_config_connections() returns the "name" setting (a
 *	maximum number of connections) that fits the open-files limit,
 *	when each connection holds per_connection descriptors and the
 *	daemon reserve more. A value from the file that does not fit is
 *	an error: the daemon would run out of descriptors in accept()
 *	instead of refusing the excess cleanly. The default that does
 *	not fit is lowered to what fits, with a warning. Values below 1
 *	are errors.
 *
 *	daemon_config_running() remembers the values of the CONFIG_RESTART
 *	settings of the configuration a daemon starts with: those stay in
 *	effect until it restarts, whatever the reloads in between (NULL
 *	forgets them). daemon_config_unapplied() says whether a reloaded
 *	configuration's value of such a setting differs from the one in
 *	effect. daemon_config_reload() logs, in one warning, every such
 *	setting that differs, by name only, and returns how many.
 *
 *	daemon_nofile_raise() raises the soft open-files limit to the
 *	hard limit, and returns the soft limit then in force.
 *
 *	daemon_threads_max() is how many more threads (tasks) this process
 *	may start, as far as it can tell: the room left under its cgroup's
 *	pids.max (a container's --pids-limit, Kubernetes' pod pid limit)
 *	and under RLIMIT_NPROC (counted over the user's tasks); -1 when
 *	neither limits it. A daemon with a thread per session compares it
 *	with its session limit at the start.
 * DIAGNOSTICS
 *	Errors are added to the configuration (config_add_error()).
 */

#include "build_config.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "addr.h"
#include "daemon.h"
#include "msg.h"
#include "xalloc.h"

/* daemon_config_has - is NAME in the specification of CFG? */

static const struct config_spec *daemon_config_has(const struct config *cfg, const char *name)
{
    for (const struct config_spec *spec = cfg->specs; spec->name; spec++)
	if (strcmp(spec->name, name) == 0)
	    return (spec);
    return (NULL);
}


/*
 * A tool command (lmtp-webhook-spool list, flush ...) loads the daemon's
 * configuration without being the daemon: it is not checked as a start
 * as this process's user would make it (daemon_config_tool_command()).
 * A reload is the running daemon's (daemon_config_reloading()).
 */
static int daemon_config_tool;

void    daemon_config_tool_command(void)
{
    daemon_config_tool = 1;
}

/* daemon_config_as_start - are the checks those of a start by this process? */

int     daemon_config_as_start(void)
{
    return (!daemon_config_tool && !daemon_pidfile_held() && !daemon_is_running());
}

/*
 * daemon_config_socket_dir - a start by a user other than root (a
 * container's) binds a UNIX socket as that user: can it create one in
 * the socket's directory? addr_unix_check() tries as root only. NULL, or
 * why not.
 */
const char *daemon_config_socket_dir(const char *path)
{
    static char why[600];
    char   *dir;
    int     denied;

    if (geteuid() == 0 || !daemon_config_as_start())
	return (NULL);
    dir = strchr(path, '/') ? xdirname(path) : xstrdup(".");
    if ((denied = faccessat(AT_FDCWD, *dir ? dir : "/", W_OK | X_OK, AT_EACCESS) < 0))
	snprintf(why, sizeof(why), "this user (uid %ld) cannot create a socket in %s: %s",
		 (long) geteuid(), *dir ? dir : "/", strerror(errno));
    free(dir);
    return (denied ? why : NULL);
}

static void daemon_config_user(struct config *cfg)
{
    const char *user = config_get_str(cfg, "user");
    struct passwd *pw;

    if (user == NULL)
	return;
    errno = 0;
    if ((pw = getpwnam(user)) == NULL)
	config_add_error(cfg, config_line(cfg, "user"), "user: unknown user \"%s\"%s%s",
			 user, errno ? ": " : "", errno ? strerror(errno) : "");
    else if (pw->pw_uid == 0)
	config_add_error(cfg, config_line(cfg, "user"),
			 "user: \"%s\" has uid 0; name an unprivileged user", user);
    /* a start as another unprivileged user cannot become this one */
    else if (geteuid() != 0 && geteuid() != pw->pw_uid && daemon_config_as_start())
	config_add_error(cfg, config_line(cfg, "user"), "user: cannot become \"%s\" (uid "
			 "%ld) when started as uid %ld, not root: remove user, or start as "
			 "root or as %s", user, (long) pw->pw_uid, (long) geteuid(), user);
}

/*
 * daemon_config_pidfile_owner - the daemon writes its pid file as root and
 * removes it as "user": in a directory that user cannot write to, the
 * file stays after a stop (emptied, so it names nobody). Said at start
 * (a warning: the daemon works), by mode bits; ACLs are not read.
 */
/*
 * daemon_config_user_cannot_write - a daemon started as root will run as
 * "user": can that user not write the directory st is of (by its mode
 * bits; ACLs are not read)? 0 when not root, without "user", or when
 * "user" is unknown or root (daemon_config_user() says so).
 */
int     daemon_config_user_cannot_write(const struct config *cfg, const struct stat *st)
{
    const char *user = config_get_str(cfg, "user");
    struct passwd *pw;

    if (user == NULL || geteuid() != 0 || (pw = getpwnam(user)) == NULL || pw->pw_uid == 0)
	return (0);
    return (!((st->st_uid == pw->pw_uid && (st->st_mode & S_IWUSR))
	      || (st->st_gid == pw->pw_gid && (st->st_mode & S_IWGRP))
	      || (st->st_mode & S_IWOTH)));
}

static void daemon_config_pidfile_owner(struct config *cfg, const char *dir,
					        const struct stat *st)
{
    const char *user = config_get_str(cfg, "user");

    if (daemon_config_user_cannot_write(cfg, st))
	msg_warn("%s:%d: pid_file: user %s cannot write to %s: the pid file will be "
		 "emptied, not removed, when the daemon stops (give %s the directory, "
		 "e.g. systemd's RuntimeDirectory=)", cfg->path, config_line(cfg, "pid_file"),
		 user, dir, user);
}

/*
 * daemon_config_pidfile_open - what daemon_pidfile_lock() will do to the
 * file, tried: a symbolic link or a non-file refused; as root (daemons
 * start as root and drop to "user"), an existing file opened for
 * writing (not changed); for a missing one, a file of the check's own
 * made beside it and removed (never the pid file's own path: an
 * instance starting at the same time may have locked the file there,
 * and its removal left a daemon without a pid file). A
 * directory that exists but takes no file (/proc, a read-only mount,
 * an NFS export squashing root) passes every stat() and fails only
 * here. Not as another user: that is an operator running a tool
 * command (lmtp-webhook-spool flush) beside a daemon root started,
 * whose pid file it may not write and need not. A start as another user
 * (a container's) opens or makes it as that user: checked as it.
 */
static void daemon_config_pidfile_open(struct config *cfg, const char *path,
				               const char *dir)
{
    struct stat st = {0};
    char   *probe = NULL;
    int     fd;

    if (lstat(path, &st) == 0 && !S_ISREG(st.st_mode)) {
	config_add_error(cfg, config_line(cfg, "pid_file"), "pid_file: %s is %s",
			 path, S_ISLNK(st.st_mode) ? "a symbolic link: pid_file must name a "
			 "regular file" : "not a regular file");
	return;
    }
    if (S_ISREG(st.st_mode) && (fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW
					   | O_NONBLOCK)) >= 0) {
	int     foreign = daemon_pidfile_foreign(fd);

	close(fd);
	if (foreign) {
	    config_add_error(cfg, config_line(cfg, "pid_file"), "pid_file: %s holds "
			     "something other than a process id: pid_file must not name "
			     "another file (the daemon would empty it and remove it)", path);
	    return;
	}
    }
    if (geteuid() != 0 && !daemon_config_as_start())
	return;
    /* a missing one: a file of our own beside it, never the pid file's
       path, which an instance starting at the same time may have locked */
    if ((fd = open(path, O_WRONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK)) < 0 && errno == ENOENT) {
	probe = xasprintf("%s/.mxkit-pidcheck.%ld", dir, (long) getpid());
	if ((fd = open(probe, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600)) >= 0)
	    (void) unlink(probe);
    }
    if (fd < 0)
	config_add_error(cfg, config_line(cfg, "pid_file"), "pid_file: cannot %s %s: %s",
			 probe ? "create" : "open", path, strerror(errno));
    else
	close(fd);
    free(probe);
}

/* daemon_config_same_path - setting value WORD ("unix:PATH" too) is PATH */

static int daemon_config_same_path(const char *word, const char *path)
{
    const char *colon = strchr(word, ':');
    struct stat a, b;

    if (colon && colon[1] == '/' && strspn(word, "abcdefghijklmnopqrstuvwxyz") == (size_t) (colon - word))
	word = colon + 1;			/* unix:, local:, refile: */
    return (strcmp(word, path) == 0 || (stat(word, &a) == 0 && stat(path, &b) == 0
					  && a.st_dev == b.st_dev && a.st_ino == b.st_ino));
}

/*
 * daemon_config_pidfile_clash - another setting names pid_file's path
 * (a socket not made yet, a table): the daemon would die on it at start,
 * or empty the file, so -t says so
 */
static void daemon_config_pidfile_clash(struct config *cfg, const char *path)
{
    for (const struct config_spec *s = cfg->specs; s->name != NULL; s++) {
	const struct config_entry *e = config_lookup(cfg, s->name);
	const char *value = e ? e->value : s->default_value;

	if (strcmp(s->name, "pid_file") == 0 || (s->type != CONFIG_STRING && s->type != CONFIG_LIST))
	    continue;
	for (; value != NULL; e = e ? config_next(cfg, e, s->name) : NULL,
	     value = e ? e->value : NULL) {
	    int     clash = 0;

	    if (s->type == CONFIG_LIST) {
		int     n;
		char  **words = config_split_list(value, &n);

		for (int i = 0; i < n; i++)
		    clash |= daemon_config_same_path(words[i], path);
		config_list_free(&words);
	    } else
		clash = daemon_config_same_path(value, path);
	    if (clash && e != NULL)
		config_add_error(cfg, config_line(cfg, "pid_file"), "pid_file: %s is "
				 "also the path of %s (line %d): the pid file needs its own",
				 path, s->name, e->line);
	    else if (clash)
		config_add_error(cfg, config_line(cfg, "pid_file"), "pid_file: %s is "
				 "also the path of %s (its default): the pid file needs its own",
				 path, s->name);
	    if (clash || e == NULL)
		break;
	}
    }
}

static void daemon_config_pidfile(struct config *cfg)
{
    const char *path = config_get_str(cfg, "pid_file");
    const char *slash;
    struct stat st;
    char   *dir;

    if (path == NULL)
	return;
    if (*path != '/') {
	config_add_error(cfg, config_line(cfg, "pid_file"),
			 "pid_file: \"%s\" is not an absolute path", path);
	return;
    }
    daemon_config_pidfile_clash(cfg, path);
    slash = strrchr(path, '/');
    dir = xdirname(path);
    if (slash[1] == 0)
	config_add_error(cfg, config_line(cfg, "pid_file"),
			 "pid_file: \"%s\" names a directory, not a file", path);
    else if (stat(dir, &st) < 0)
	config_add_error(cfg, config_line(cfg, "pid_file"),
			 "pid_file: directory %s: %s", dir, strerror(errno));
    else if (!S_ISDIR(st.st_mode))
	config_add_error(cfg, config_line(cfg, "pid_file"),
			 "pid_file: %s is not a directory", dir);
    else {
	daemon_config_pidfile_owner(cfg, dir, &st);
	/* a reload: the file is ours, and "user" may not open it */
	if (!daemon_pidfile_held())
	    daemon_config_pidfile_open(cfg, path, dir);
    }
    free(dir);
}

/*
 * daemon_config_foreign - errno of a bind() to the TCP address with port
 * 0 (EADDRNOTAVAIL: no interface of this host has it; a mistyped or
 * retired address), else 0. Port 0 leaves the daemon's own port alone:
 * the check works while the running daemon holds it.
 */
static int daemon_config_foreign(const struct addr *a)
{
    struct addr probe = *a;
    int     fd, err = 0;

    if (a->family != AF_INET && a->family != AF_INET6)
	return (0);
    if (a->family == AF_INET)
	probe.u.in.sin_port = 0;
    else
	probe.u.in6.sin6_port = 0;
    if ((fd = socket(a->family, SOCK_STREAM | SOCK_CLOEXEC, 0)) < 0)
	return (0);				/* not this check's business */
    if (bind(fd, &probe.u.sa, probe.salen) < 0 && errno == EADDRNOTAVAIL)
	err = errno;
    close(fd);
    return (err);
}

static void daemon_config_metrics(struct config *cfg)
{
    const char *listen = config_get_str(cfg, "metrics_listen");
    struct addr addr;
    const char *err;
    int     foreign;

    if (listen == NULL)
	return;
    if ((err = addr_parse(listen, &addr)) != NULL)
	config_add_error(cfg, config_line(cfg, "metrics_listen"),
			 "metrics_listen: %s", err);
    else if (addr.family == AF_UNIX)
	config_add_error(cfg, config_line(cfg, "metrics_listen"),
			 "metrics_listen: %s: Prometheus scrapes TCP; use inet: or inet6:",
			 listen);
    else if ((foreign = daemon_config_foreign(&addr)) != 0)
	config_add_error(cfg, config_line(cfg, "metrics_listen"),
			 "metrics_listen %s: no interface of this host has that address (%s)",
			 listen, strerror(foreign));
}

/* daemon_config_duration - a duration setting within [min_ms, max_ms] */

static void daemon_config_duration(struct config *cfg, const char *name, long long min_ms,
				           long long max_ms, const char *range)
{
    long long ms = config_get_duration(cfg, name);

    if (ms < min_ms || ms > max_ms)
	config_add_error(cfg, config_line(cfg, name), "%s: %s", name, range);
}

void    daemon_config_check(struct config *cfg)
{
    if (daemon_config_has(cfg, "user"))
	daemon_config_user(cfg);
    if (daemon_config_has(cfg, "pid_file"))
	daemon_config_pidfile(cfg);
    if (daemon_config_has(cfg, "metrics_listen"))
	daemon_config_metrics(cfg);
    if (daemon_config_has(cfg, "start_timeout"))
	daemon_config_duration(cfg, "start_timeout", 1000, DAEMON_START_TIMEOUT_MAX, "from 1s "
			       "to 1d (a detached start waits that long for the daemon to serve)");
    if (daemon_config_has(cfg, "drain_timeout"))
	daemon_config_duration(cfg, "drain_timeout", 0, DAEMON_DRAIN_TIMEOUT_MAX, "from 0 (cut "
			       "at once) to 1h (how long a stop lets the work in flight finish)");
}

/*
 * daemon_config_v6only - does an IPv6 wildcard bound without IPV6_V6ONLY
 * stay IPv6 only? Only when net.ipv6.bindv6only says so; unreadable:
 * no, which reports more clashes rather than fewer.
 */
static int daemon_config_v6only(void)
{
    FILE   *fp = fopen("/proc/sys/net/ipv6/bindv6only", "r");
    int     on = 0;

    if (fp != NULL) {
	if (fscanf(fp, "%d", &on) != 1)
	    on = 0;
	fclose(fp);
    }
    return (on);
}

/* daemon_config_unmap - ::ffff:a.b.c.d as the IPv4 address bind() makes of it */

static struct addr daemon_config_unmap(const struct addr *a)
{
    struct addr v4 = *a;

    if (a->family == AF_INET6 && IN6_IS_ADDR_V4MAPPED(&a->u.in6.sin6_addr)) {
	memset(&v4.u, 0, sizeof(v4.u));
	v4.family = v4.u.in.sin_family = AF_INET;
	v4.u.in.sin_port = a->u.in6.sin6_port;
	memcpy(&v4.u.in.sin_addr, a->u.in6.sin6_addr.s6_addr + 12, 4);
	v4.salen = sizeof(v4.u.in);
    }
    return (v4);
}

/* daemon_config_holds_v4 - a dual-stack IPv6 wildcard: every IPv4 address of its port */

static int daemon_config_holds_v4(const struct addr *a, int dual_stack, const struct addr *v4)
{
    return (dual_stack && a->family == AF_INET6 && v4->family == AF_INET
	    && IN6_IS_ADDR_UNSPECIFIED(&a->u.in6.sin6_addr)
	    && a->u.in6.sin6_port == v4->u.in.sin_port && !daemon_config_v6only());
}

/* daemon_config_clash - can A and B not both be bound? */

static int daemon_config_clash(const struct addr *pa, int a_dual, const struct addr *pb,
			               int b_dual)
{
    struct addr a = daemon_config_unmap(pa), b = daemon_config_unmap(pb);

    if (daemon_config_holds_v4(&a, a_dual, &b) || daemon_config_holds_v4(&b, b_dual, &a))
	return (1);
    if (a.family != b.family)
	return (0);				/* IPV6_V6ONLY: v4 and v6 coexist */
    switch (a.family) {
    case AF_UNIX:
	return (strcmp(a.u.un.sun_path, b.u.un.sun_path) == 0);
    case AF_INET:
	return (a.u.in.sin_port == b.u.in.sin_port
		&& (a.u.in.sin_addr.s_addr == b.u.in.sin_addr.s_addr
		    || a.u.in.sin_addr.s_addr == htonl(INADDR_ANY)
		    || b.u.in.sin_addr.s_addr == htonl(INADDR_ANY)));
    case AF_INET6:
	return (a.u.in6.sin6_port == b.u.in6.sin6_port
		&& (IN6_ARE_ADDR_EQUAL(&a.u.in6.sin6_addr, &b.u.in6.sin6_addr)
		    || IN6_IS_ADDR_UNSPECIFIED(&a.u.in6.sin6_addr)
		    || IN6_IS_ADDR_UNSPECIFIED(&b.u.in6.sin6_addr)));
    default:
	return (0);
    }
}

/* daemon_config_mixed - why an IPv6 address clashes with an IPv4 one, or "" */

static const char *daemon_config_mixed(const struct addr *a, const struct addr *b)
{
    if (a->family == b->family && (a->family != AF_INET6
				   || (!IN6_IS_ADDR_V4MAPPED(&a->u.in6.sin6_addr)
				       && !IN6_IS_ADDR_V4MAPPED(&b->u.in6.sin6_addr))))
	return ("");
    return (" (::ffff:a.b.c.d is the IPv4 address a.b.c.d, and \"::\" of a socket "
	    "without IPV6_V6ONLY holds IPv4 too while net.ipv6.bindv6only is 0)");
}

/* daemon_config_port0 - a TCP address on port 0: the kernel picks one */

static int daemon_config_port0(const struct addr *a)
{
    return ((a->family == AF_INET && a->u.in.sin_port == 0)
	    || (a->family == AF_INET6 && a->u.in6.sin6_port == 0));
}

void    daemon_config_addresses(struct config *cfg, const struct daemon_address *addrs,
				        int count)
{
    struct daemon_address *all = xcalloc(count + 1, sizeof(*all));
    struct addr *parsed = xcalloc(count + 1, sizeof(*parsed));
    char   *ok = xcalloc(count + 1, 1);
    int     n = count;

    memcpy(all, addrs, count * sizeof(*all));
    if (daemon_config_has(cfg, "metrics_listen")
	&& (all[n].spec = config_get_str(cfg, "metrics_listen")) != NULL) {
	all[n].name = "metrics_listen";
	all[n++].line = config_line(cfg, "metrics_listen");
    }
    for (int i = 0; i < n; i++)
	if (all[i].addr)
	    parsed[i] = *all[i].addr, ok[i] = 1;
	else
	    ok[i] = addr_parse(all[i].spec, &parsed[i]) == NULL;
    for (int i = 0, err; i < count; i++)	/* metrics_listen: checked above */
	if (ok[i] && (err = daemon_config_foreign(&parsed[i])) != 0)
	    config_add_error(cfg, all[i].line, "%s %s: no interface of this host has that "
			     "address (%s)", all[i].name, all[i].spec, strerror(err));
    for (int i = 0; i < count; i++) {		/* a file bind() would have removed */
	const char *why;

	if (ok[i] && parsed[i].family == AF_UNIX
	    && ((why = addr_unix_check(parsed[i].u.un.sun_path)) != NULL
		|| (why = daemon_config_socket_dir(parsed[i].u.un.sun_path)) != NULL))
	    config_add_error(cfg, all[i].line, "%s %s: %s", all[i].name, all[i].spec, why);
    }
    for (int i = 0; i < n; i++)			/* -t said OK, no client could connect */
	if (ok[i] && daemon_config_port0(&parsed[i]))
	    config_add_error(cfg, all[i].line, "%s %s: port 0 (the kernel would pick a "
			     "port no client knows)", all[i].name, all[i].spec);
    for (int i = 0; i < n; i++)
	for (int j = 0; j < i; j++)
	    if (ok[i] && ok[j] && daemon_config_clash(&parsed[i], all[i].dual_stack,
						      &parsed[j], all[j].dual_stack))
		config_add_error(cfg, all[i].line,
			   "%s %s: the same address as %s %s (line %d); only one can listen%s",
				 all[i].name, all[i].spec, all[j].name, all[j].spec,
				 all[j].line, daemon_config_mixed(&parsed[i], &parsed[j]));
    free(all);
    free(parsed);
    free(ok);
}

long    daemon_nofile_raise(void)
{
    struct rlimit rl;

    if (getrlimit(RLIMIT_NOFILE, &rl) < 0)
	return (1024);
    if (rl.rlim_cur < rl.rlim_max) {
	rl.rlim_cur = rl.rlim_max;
	if (setrlimit(RLIMIT_NOFILE, &rl) < 0)
	    (void) getrlimit(RLIMIT_NOFILE, &rl);
    }
    return (rl.rlim_cur == RLIM_INFINITY || rl.rlim_cur > 1L << 30 ? 1L << 30
	    : (long) rl.rlim_cur);
}

long long daemon_config_connections(struct config *cfg, const char *name,
				            int per_connection, int reserve)
{
    long long max = config_get_int(cfg, name);
    int     line = config_line(cfg, name);
    struct rlimit rl;
    long long limit, fit;

    if (max < 1) {
	config_add_error(cfg, line, "%s must be at least 1", name);
	return (1);
    }
    if (getrlimit(RLIMIT_NOFILE, &rl) < 0 || rl.rlim_cur == RLIM_INFINITY)
	return (max);
    limit = (long long) rl.rlim_cur;
    fit = (limit - reserve) / per_connection;
    if (max <= fit)
	return (max);
    if (fit < 1) {
	config_add_error(cfg, line, "the open-files limit (%lld) leaves no descriptor for "
			 "connections: raise it (LimitNOFILE=, ulimit -n) above %d",
			 limit, reserve + per_connection);
	return (1);
    }
    if (line)
	config_add_error(cfg, line, "%s = %lld needs %lld open files (%d per connection, "
			 "%d more for the daemon) but the limit is %lld: lower it to %lld, "
			 "or raise the limit (LimitNOFILE=, ulimit -n)", name, max,
			 max * per_connection + reserve, per_connection, reserve, limit, fit);
    else
	msg_warn("%s: the default %lld needs %lld open files but the limit is %lld: "
		 "serving at most %lld connections", name, max,
		 max * per_connection + reserve, limit, fit);
    return (fit);
}

/*
 * The values of the CONFIG_RESTART settings in effect: those of the
 * configuration the daemon started with, whatever the reloads since.
 */
static struct {
    const struct config_spec *specs;
    char  **values;			/* per row; NULL: unset, or not restart-only */
    int     count;
}       daemon_running;

/* daemon_config_value - NAME's value, or its lines joined; NULL if unset */

static char *daemon_config_value(const struct config *cfg, const struct config_spec *spec)
{
    const struct config_entry *e = NULL;
    const char *value;
    char   *joined = NULL, *next;

    if (!(spec->flags & CONFIG_REPEAT))
	return ((value = config_get_str(cfg, spec->name)) ? xstrdup(value) : NULL);
    while ((e = config_next(cfg, e, spec->name)) != NULL) {
	next = joined ? xasprintf("%s\n%s", joined, e->value) : xstrdup(e->value);
	free(joined);
	joined = next;
    }
    return (joined);
}

void    daemon_config_running(const struct config *cfg)
{
    for (int i = 0; i < daemon_running.count; i++)
	free(daemon_running.values[i]);
    free(daemon_running.values);
    memset(&daemon_running, 0, sizeof(daemon_running));
    if (cfg == NULL)
	return;
    daemon_running.specs = cfg->specs;
    while (cfg->specs[daemon_running.count].name)
	daemon_running.count++;
    daemon_running.values = xcalloc(daemon_running.count + 1, sizeof(char *));
    for (int i = 0; i < daemon_running.count; i++)
	if (cfg->specs[i].flags & CONFIG_RESTART)
	    daemon_running.values[i] = daemon_config_value(cfg, cfg->specs + i);
}

int     daemon_config_unapplied(const struct config *new, const char *name)
{
    char   *value;
    const char *running;
    int     differs;

    if (new->specs != daemon_running.specs)
	msg_panic("daemon_config_unapplied: no daemon_config_running() for this table");
    for (int i = 0; i < daemon_running.count; i++) {
	if (strcmp(new->specs[i].name, name) != 0)
	    continue;
	if (!(new->specs[i].flags & CONFIG_RESTART))
	    return (0);
	value = daemon_config_value(new, new->specs + i);
	running = daemon_running.values[i];
	differs = !(value == running || (value && running && strcmp(value, running) == 0));
	free(value);
	return (differs);
    }
    msg_panic("daemon_config_unapplied: no parameter \"%s\"", name);
}

int     daemon_config_reload(const struct config *new)
{
    char    names[512];
    size_t  len = 0;
    int     changed = 0;

    names[0] = 0;
    for (const struct config_spec *spec = new->specs; spec->name; spec++) {
	if (!(spec->flags & CONFIG_RESTART) || !daemon_config_unapplied(new, spec->name))
	    continue;
	/* names only: a value may hold a secret (a store URL's password) */
	if (len < sizeof(names))
	    len += snprintf(names + len, sizeof(names) - len, "%s%s",
			    changed ? ", " : "", spec->name);
	changed++;
    }
    if (changed)
	msg_warn("reload: %s changed but cannot change while running: the old %s in "
		 "effect until a restart", names, changed > 1 ? "values stay" : "value stays");
    return (changed);
}

/* daemon_cgroup_pids - pids.max less pids.current of this process's cgroup (v1 or v2), or -1 */

static long daemon_cgroup_pids(void)
{
    char    line[512], path[700];
    long    max = -1, cur = 0;
    FILE   *fp;

    if ((fp = fopen("/proc/self/cgroup", "r")) == NULL)
	return (-1);
    path[0] = 0;
    while (fgets(line, sizeof(line), fp) != NULL) {
	char   *v1 = strstr(line, ":pids:");

	line[strcspn(line, "\n")] = 0;
	if (v1 != NULL)				/* cgroup v1's pids controller */
	    snprintf(path, sizeof(path), "/sys/fs/cgroup/pids%s", v1 + 6);
	else if (strncmp(line, "0::", 3) == 0 && path[0] == 0)
	    snprintf(path, sizeof(path), "/sys/fs/cgroup%s", line + 3);
    }
    fclose(fp);
    for (int i = 0; path[0] && i < 2; i++) {
	char    file[760];

	snprintf(file, sizeof(file), "%s/%s", path, i ? "pids.current" : "pids.max");
	if ((fp = fopen(file, "r")) == NULL)
	    return (-1);
	if (fgets(line, sizeof(line), fp) != NULL) {
	    if (i == 0)
		max = strncmp(line, "max", 3) == 0 ? -1 : strtol(line, NULL, 10);
	    else
		cur = strtol(line, NULL, 10);
	}
	fclose(fp);
	if (max < 0)
	    return (-1);
    }
    return (max < 0 ? -1 : max - cur);
}

long    daemon_threads_max(void)
{
    struct rlimit rl;
    long    room = daemon_cgroup_pids(), tasks = 0;
    char    line[256];
    FILE   *fp;

    if (getrlimit(RLIMIT_NPROC, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY) {
	if ((fp = fopen("/proc/self/status", "r")) != NULL) {
	    while (fgets(line, sizeof(line), fp) != NULL)
		if (strncmp(line, "Threads:", 8) == 0)
		    tasks = strtol(line + 8, NULL, 10);
	    fclose(fp);
	}
	if (room < 0 || (long) rl.rlim_cur - tasks < room)
	    room = (long) rl.rlim_cur - tasks;	/* this process's share at least */
    }
    return (room);
}
