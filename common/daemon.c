/*
 * NAME
 *	daemon 3
 * SUMMARY
 *	command line, pidfile, privileges and signals
 * SYNOPSIS
 *	#include "daemon.h"
 *
 *	void	daemon_parse_args(argc, argv, default_config, &opts)
 *	void	daemon_detach(timeout_ms, failed)
 *	void	daemon_detached()
 *	const char *daemon_pidfile_write(path, &fd)
 *	const char *daemon_pidfile_lock(path, &fd)
 *	const char *daemon_pidfile_record(path, fd)
 *	void	daemon_pidfile_remove(path, &fd)
 *	int	daemon_pidfile_held()
 *	void	daemon_set_running()
 *	int	daemon_is_running()
 *	const char *daemon_socket_give(path, user, mode)
 *	const char *daemon_drop_privileges(user)
 *	int	daemon_parse_command(argc, argv, default_config, &opts)
 *	void	daemon_log_init(progname, &opts, cfg)
 *
 *	int	daemon_signal_action(sig)
 *	int	daemon_signal_fd()
 *	int	daemon_signal_next()
 *	void	daemon_signal_block(&set)
 *	int	daemon_signal_wait(&set)
 *	void	daemon_signal_hold()
 *	void	daemon_starting()
 *
 *	long long daemon_mono_ms()
 *	long long daemon_mono_sec()
 * DESCRIPTION
 *	daemon_parse_args() gives every daemon the same flags:
 *	-c FILE (configuration), -t (check the configuration, exit
 *	0 or 1), -f (stay in the foreground), -V (print the version),
 *	-v (verbose logging). daemon_parse_command() takes the same
 *	flags and returns the index of the first operand, for programs
 *	with subcommands.
 *
 *	daemon_log_init() sends the log to syslog when the daemon detaches
 *	or the configuration says "syslog = yes", and to stderr as well in
 *	the foreground and until daemon_detach(): an error before the
 *	fork (a port in use, a second instance) reaches whoever started
 *	the daemon, not only syslog.
 *
 *	daemon_detach() forks; the parent waits until the child calls
 *	daemon_detached() (once it serves: skeleton_ready()) and exits 0,
 *	or until the child exits, and exits with its status: a failure
 *	after the fork (a worker thread, privileges) reaches whoever
 *	started the daemon like one before it, and the child's stderr is
 *	the caller's until daemon_detached() (then /dev/null). A daemon
 *	that has not served after timeout_ms (start_timeout: a resolver
 *	or a store that never answers) is stopped (TERM, KILL 5 s later)
 *	and the parent calls failed() (the skeleton removes the pid file
 *	the killed daemon could not) and exits 1 saying so, as systemd's
 *	TimeoutStartSec fails a unit: nothing is left running, or named
 *	in a pid file, that the caller was told failed. A signal sent to
 *	the parent meanwhile goes to the daemon at once; after a TERM or
 *	INT (Ctrl-C on a start that hangs), or any other signal that would
 *	end the parent (QUIT, USR2, ALRM, ...: relayed as TERM), a daemon
 *	that has not served 5 s later is stopped the same way, without
 *	waiting for start_timeout.

 *	daemon_pidfile_write() creates and locks the pidfile; a second
 *	instance finds it locked and refuses to start. It is
 *	daemon_pidfile_lock() (create, lock, empty), which a daemon calls
 *	before it detaches (the lock passes to the child), then
 *	daemon_pidfile_record() (this process's pid), after. pid_file
 *	must be a regular file: a symbolic link is not followed (it would
 *	have root truncate what it names); a lock taken on a file that its
 *	holder removed meanwhile (it stopped between our open() and
 *	flock()) is taken again on the path's file, so that two instances
 *	never both run. daemon_pidfile_remove() removes the file only if
 *	it is still the one locked; when it cannot ("user" may not write
 *	its directory), it empties it and says why. daemon_pidfile_held()
 *	says whether this process holds one: a reload's configuration
 *	check does not try to open it then (daemon_config.c). A file there
 *	that holds anything but a process id (or nothing) is not ours to
 *	empty: daemon_pidfile_foreign() says so, and the lock refuses it.
 *
 *	daemon_mono_ms() and daemon_mono_sec() read CLOCK_MONOTONIC: every
 *	interval a daemon measures (a log line once per N seconds, a child's
 *	timeout, a periodic pass) is measured on it, never on time(), which
 *	an operator or NTP may step: stepped back an hour, "once every 10 s"
 *	had become "not for an hour", and a timeout never fired. time() is
 *	for what is compared with files' times or written down.
 *
 *	daemon_drop_privileges() switches to the named user and its
 *	groups, irrevocably. It refuses root (uid 0) as a target.
 *
 *	The signal policy is the same in every daemon, and
 *	daemon_signal_action() is where it is written: SIGHUP is
 *	DAEMON_RELOAD, SIGTERM and SIGINT DAEMON_STOP, SIGUSR1
 *	DAEMON_FLUSH (a daemon with nothing to flush logs it and goes
 *	on: the default action of SIGUSR1 would kill it), anything else
 *	DAEMON_NONE. Two ways to receive them:
 *
 *	daemon_signal_fd() installs handlers for those four signals and
 *	returns the read end of a self-pipe, for a daemon with an event
 *	loop (libevent, curl_multi_poll's extra descriptors); when it is
 *	readable, daemon_signal_next() returns the next signal number
 *	(0 when none is pending). Handlers do nothing but write one
 *	byte, so the real work happens in the daemon's own loop.
 *
 *	daemon_signal_block() blocks the same signals in the calling
 *	thread (and in the threads it creates afterwards), for a daemon
 *	whose main thread only waits for signals: daemon_signal_wait()
 *	returns the next one. Both ignore SIGPIPE.
 *
 *	daemon_signal_hold() blocks them from the first line of main()
 *	on, before anything loads: systemd's ExecReload (kill -HUP) may
 *	come while a Type=simple daemon still starts, and the default
 *	action of SIGHUP ended it for good (systemd does not restart a
 *	service that a SIGHUP ended). A held signal waits for the
 *	daemon's own handling: daemon_signal_wait(), or the handlers of
 *	daemon_signal_fd(), which unblocks the signals in its thread once
 *	they are installed. daemon_parse_args() holds them unless -t;
 *	a program with subcommands holds them for its daemon command.
 *	daemon_detach() hands the signals still held in the parent (sent
 *	to the pid that its starter knows, while it started) to the
 *	detached child: a SIGTERM then stops the daemon, a SIGHUP reloads
 *	it, a SIGUSR1 flushes, instead of dying with the parent.
 * DIAGNOSTICS
 *	The pidfile and privilege functions return NULL or an error
 *	text (static storage, overwritten by the next call). Usage
 *	errors are fatal.
 */

#include "build_config.h"

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <pwd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "config.h"
#include "daemon.h"
#include "msg.h"

static int daemon_pipe[2] = {-1, -1};
static int daemon_ready_fd = -1;
static char daemon_errbuf[512];

static void daemon_usage(void)
{
    msg_fatal("usage: %s [-c config_file] [-t] [-f] [-v] [-V]", msg_progname());
}

void    daemon_parse_args(int argc, char **argv, const char *default_config,
			          struct daemon_opts *opts)
{
    if (daemon_parse_command(argc, argv, default_config, opts) != argc)
	daemon_usage();
    if (!opts->check_only)
	daemon_starting();
}

/*
 * daemon_starting - the first step of a daemon's start (not of -t): its
 * signals held (daemon_signal_hold()), and its stderr copy bounded
 * (msg_set_bounded()) until it serves: a warning written while the
 * configuration loads, to a starter's stderr that is a full pipe nobody
 * reads yet, held the start in write() for ever, Ctrl-C and
 * start_timeout included (a world-readable secret_file's warning did).
 */
void    daemon_starting(void)
{
    daemon_signal_hold();
    msg_set_bounded(1);
}

int     daemon_parse_command(int argc, char **argv, const char *default_config,
			             struct daemon_opts *opts)
{
    int     ch;

    opts->config_path = default_config;
    opts->check_only = 0;
    opts->foreground = 0;
    while ((ch = getopt(argc, argv, "c:tfvV")) != -1) {
	switch (ch) {
	case 'c':
	    opts->config_path = optarg;
	    break;
	case 't':
	    opts->check_only = 1;
	    break;
	case 'f':
	    opts->foreground = 1;
	    break;
	case 'v':
	    msg_verbose++;
	    break;
	case 'V':
	    printf("%s (mxkit) %s\n", msg_progname(), PACKAGE_VERSION);
	    exit(0);
	default:
	    daemon_usage();
	}
    }
    return (optind);
}

void    daemon_log_init(const char *progname, const struct daemon_opts *opts,
			        const struct config *cfg)
{
    if (!opts->foreground || config_get_bool(cfg, "syslog"))
	msg_init(progname, MSG_STDERR | MSG_SYSLOG);
}

static const int daemon_signals[] = {SIGHUP, SIGTERM, SIGINT, SIGUSR1};

#define DAEMON_SIGNAL_COUNT (sizeof(daemon_signals) / sizeof(daemon_signals[0]))

long long daemon_mono_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ((long long) ts.tv_sec * 1000 + ts.tv_nsec / 1000000);
}

long long daemon_mono_sec(void)
{
    return (daemon_mono_ms() / 1000);
}

/* the grace a stop signal sent to the starter gives its starting daemon */

#define DAEMON_STOP_GRACE_MS	5000

/*
 * Signals that end a process by default and come from outside (a shell's
 * Ctrl-\, a timeout(1), a supervisor): the starter killed by one while
 * its daemon starts would leave the daemon running after a start its
 * caller saw fail. While it waits, the starter holds them with its own
 * four and takes them as a request to stop the start, like TERM.
 */
static const int daemon_detach_enders[] = {SIGQUIT, SIGUSR2, SIGALRM, SIGVTALRM,
    SIGPROF, SIGXCPU, SIGIO, SIGPWR};

#define DAEMON_ENDER_COUNT (sizeof(daemon_detach_enders) / sizeof(daemon_detach_enders[0]))

/* daemon_detach_mask - the signals the starter holds while it waits */

static void daemon_detach_mask(sigset_t *mask)
{
    sigemptyset(mask);
    for (size_t i = 0; i < DAEMON_SIGNAL_COUNT; i++)
	sigaddset(mask, daemon_signals[i]);
    for (size_t i = 0; i < DAEMON_ENDER_COUNT; i++)
	sigaddset(mask, daemon_detach_enders[i]);
    for (int sig = SIGRTMIN; sig <= SIGRTMAX; sig++)
	sigaddset(mask, sig);
}

/* daemon_signal_label - "SIGQUIT" and the like, for a message */

static const char *daemon_signal_label(int sig)
{
    static const struct {
	int     sig;
	const char *name;
    }       names[] = {{SIGHUP, "SIGHUP"}, {SIGINT, "SIGINT"}, {SIGQUIT, "SIGQUIT"},
	{SIGTERM, "SIGTERM"}, {SIGUSR1, "SIGUSR1"}, {SIGUSR2, "SIGUSR2"},
	{SIGALRM, "SIGALRM"}, {SIGVTALRM, "SIGVTALRM"}, {SIGPROF, "SIGPROF"},
	{SIGXCPU, "SIGXCPU"}, {SIGIO, "SIGIO"}, {SIGPWR, "SIGPWR"}};
    static char other[32];

    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
	if (names[i].sig == sig)
	    return (names[i].name);
    snprintf(other, sizeof(other), "signal %d", sig);
    return (other);
}

/*
 * daemon_detach_relay - the signals sent to the starter while its daemon
 * starts go to the daemon at once (it holds them until it serves): HUP
 * and USR1 as they are, TERM and INT too, starting the stop grace; any
 * other as TERM, with the grace. sigtimedwait() takes them, so no handler
 * of the parent's runs (a daemon that installed its handlers before the
 * fork would have them write to the pipe its child shares).
 */
static void daemon_detach_relay(const sigset_t *mask, pid_t pid, int *stop_sig,
				        long long *stop_end)
{
    static const struct timespec now = {0, 0};
    int     sig, relayed;

    while ((sig = sigtimedwait(mask, NULL, &now)) > 0) {
	relayed = sig;
	if (sig != SIGHUP && sig != SIGUSR1 && sig != SIGTERM && sig != SIGINT)
	    relayed = SIGTERM;
	(void) kill(pid, relayed);
	if (sig != SIGHUP && sig != SIGUSR1 && *stop_end < 0) {
	    *stop_sig = sig;
	    *stop_end = daemon_mono_ms() + DAEMON_STOP_GRACE_MS;
	}
    }
}

/*
 * daemon_detach_wait - the starting parent's wait: 1 served, 0 ended, -1
 * start_timeout passed, -2 a stop signal's grace passed (*stop_sig: the
 * signal). A TERM or INT (Ctrl-C) to the starter ends a start that hangs
 * DAEMON_STOP_GRACE_MS later, not at start_timeout. The held signals are
 * looked at every 100 ms, and once more before it returns.
 */
static int daemon_detach_wait(int ready_fd, pid_t pid, long long timeout_ms,
			              const sigset_t *mask, int *stop_sig)
{
    struct pollfd pfd = {ready_fd, POLLIN, 0};
    long long end = daemon_mono_ms() + timeout_ms, stop_end = -1, left;
    ssize_t got;
    char    byte;
    int     n;

    for (;;) {
	daemon_detach_relay(mask, pid, stop_sig, &stop_end);
	left = (stop_end >= 0 && stop_end < end ? stop_end : end) - daemon_mono_ms();
	/* past the deadline, one look without waiting: a starter stopped
	   (SIGSTOP, a suspended VM) while its daemon served in time must
	   not call it one that did not serve */
	if ((n = poll(&pfd, 1, left <= 0 ? 0 : left > 100 ? 100 : (int) left)) < 0
	    && errno != EINTR) {
	    n = 0;
	    break;
	}
	if (n <= 0 && left <= 0) {
	    n = stop_end >= 0 && stop_end < end ? -2 : -1;
	    break;
	}
	if (n <= 0)
	    continue;
	while ((got = read(ready_fd, &byte, 1)) < 0 && errno == EINTR)
	     /* void */ ;
	n = got == 1;
	break;
    }
    daemon_detach_relay(mask, pid, stop_sig, &stop_end);
    return (n);
}

/*
 * daemon_detach_stop - a start that timed out, or that a stop signal to
 * the starter interrupted: nothing left running
 */
static void daemon_detach_stop(pid_t pid, long long timeout_ms, int stop_sig,
			               void (*failed) (void))
{
    int     status, reaped = 0;

    if (stop_sig)
	msg_error("pid %ld had not served %d s after %s reached its starter: stopped",
		  (long) pid, DAEMON_STOP_GRACE_MS / 1000, daemon_signal_label(stop_sig));
    else if (timeout_ms % 1000)
	msg_error("pid %ld did not serve within start_timeout (%lldms): stopped; its log"
		  " says what it waited for", (long) pid, timeout_ms);
    else
	msg_error("pid %ld did not serve within start_timeout (%llds): stopped; its log"
		  " says what it waited for", (long) pid, timeout_ms / 1000);
    (void) kill(pid, SIGTERM);
    for (int i = 0; i < 50 && !reaped; i++)
	if (!(reaped = waitpid(pid, &status, WNOHANG) == pid))
	    poll(NULL, 0, 100);
    if (!reaped && kill(pid, SIGKILL) == 0)	/* not reaped: still our child's pid */
	(void) waitpid(pid, &status, 0);
    if (failed)
	failed();
    _exit(1);
}

/*
 * daemon_detach_ended - the daemon ended before it served: its exit status,
 * or 1 and the signal named when one killed it (the OOM killer, a crash:
 * no message of its own, no atexit() to remove its pid file)
 */
static void daemon_detach_ended(pid_t pid, void (*failed) (void))
{
    int     status;

    while (waitpid(pid, &status, 0) < 0)
	if (errno != EINTR)
	    _exit(1);
    if (WIFSIGNALED(status))
	msg_error("pid %ld was killed by signal %d (%s) while it started", (long) pid,
		  WTERMSIG(status), strsignal(WTERMSIG(status)));
    if (failed)
	failed();			/* its pid file, if still there */
    _exit(WIFEXITED(status) ? WEXITSTATUS(status) : 1);
}

void    daemon_detach(long long timeout_ms, void (*failed) (void))
{
    pid_t   pid;
    int     fd, ready[2], served, stop_sig = 0;
    sigset_t held, before;

    if (pipe2(ready, O_CLOEXEC) < 0)
	msg_fatal("pipe: %s", strerror(errno));
    msg_set_bounded(1);			/* a caller that reads stderr late */
    /* held from before the fork: what the starter is sent while its
       daemon starts (held since the first line of main(), or taken by a
       daemon's handlers, or one that would end the starter) is relayed
       to the daemon, never lost with this process; the child gets its
       mask back */
    daemon_detach_mask(&held);
    (void) pthread_sigmask(SIG_BLOCK, &held, &before);
    if ((pid = fork()) < 0)
	msg_fatal("fork: %s", strerror(errno));
    if (pid > 0) {
	/* the daemon's start-up ends when it serves (daemon_detached(),
	   one byte) or when it exits (end of file): what fails after
	   the fork (a thread, privileges) fails here too, with its exit
	   status, its message already on our stderr */
	close(ready[1]);
	served = daemon_detach_wait(ready[0], pid, timeout_ms, &held, &stop_sig);
	if (served > 0)
	    _exit(0);
	if (served < 0)
	    daemon_detach_stop(pid, timeout_ms, served == -2 ? stop_sig : 0, failed);
	daemon_detach_ended(pid, failed);
    }
    (void) pthread_sigmask(SIG_SETMASK, &before, NULL);
    close(ready[0]);
    daemon_ready_fd = ready[1];
    if (setsid() < 0)
	msg_fatal("setsid: %s", strerror(errno));
    /* stderr stays the caller's until daemon_detached() */
    if ((fd = open("/dev/null", O_RDWR)) >= 0) {
	dup2(fd, 0);
	dup2(fd, 1);
	if (fd > 2)
	    close(fd);
    }
}

void    daemon_detached(void)
{
    int     fd;

    if (daemon_ready_fd < 0) {		/* in the foreground: serving */
	msg_set_bounded(0);			/* the service manager's stderr */
	return;
    }
    msg_set_outputs(MSG_SYSLOG);		/* daemon_log_init(): detached */
    /* stderr too: a caller reading it (a shell's $(...), ssh) would
       wait for it to close as long as the daemon runs; what the daemon
       says from here on goes to syslog (daemon_log_init()) */
    if ((fd = open("/dev/null", O_RDWR)) >= 0) {
	dup2(fd, 2);
	if (fd > 2)
	    close(fd);
    }
    msg_set_bounded(0);
    if (write(daemon_ready_fd, "", 1) != 1) {
	/* the parent is gone already: nobody waits */
    }
    close(daemon_ready_fd);
    daemon_ready_fd = -1;
}

/* pid files this process holds: a reload's check leaves them alone */
static int daemon_pidfiles_held;

int     daemon_pidfile_held(void)
{
    return (daemon_pidfiles_held > 0);
}

/*
 * daemon_is_running - the start sequence is done (skeleton_start() said
 * so through daemon_set_running()): a configuration read now is a
 * reload's, by a process that may have dropped to its user, whose
 * sockets and pid file were made before.
 */
static int daemon_running_flag;

void    daemon_set_running(void)
{
    daemon_running_flag = 1;
}

int     daemon_is_running(void)
{
    return (daemon_running_flag);
}

/*
 * daemon_pidfile_foreign - open file FD holds something other than a
 * pid (digits and a newline, or nothing: a crashed instance's). A
 * pid_file naming a key, a table or a configuration would be emptied
 * by the lock and removed at the stop.
 */
int     daemon_pidfile_foreign(int fd)
{
    char    buf[32];
    ssize_t n = pread(fd, buf, sizeof(buf), 0);
    ssize_t digits = 0;

    if (n < 0)
	return (0);				/* unreadable: the open said so */
    while (digits < n && buf[digits] >= '0' && buf[digits] <= '9')
	digits++;
    return (n == (ssize_t) sizeof(buf)
	    || !(digits == n || (digits + 1 == n && buf[digits] == '\n')));
}

const char *daemon_pidfile_lock(const char *path, int *fdp)
{
    struct stat fst, pst;
    int     fd, tries;

    for (tries = 0;; tries++) {
	/* O_NOFOLLOW: a symlink planted there would have root truncate
	   and write whatever file it names */
	if ((fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK,
		       0644)) < 0) {
	    snprintf(daemon_errbuf, sizeof(daemon_errbuf), "open %s: %s%s", path,
		     strerror(errno), errno == ELOOP ? " (a symbolic link: pid_file must "
		     "name a regular file)" : "");
	    return (daemon_errbuf);
	}
	if (fstat(fd, &fst) < 0 || !S_ISREG(fst.st_mode)) {
	    snprintf(daemon_errbuf, sizeof(daemon_errbuf),
		     "%s is not a regular file: pid_file must name one", path);
	    close(fd);
	    return (daemon_errbuf);
	}
	if (flock(fd, LOCK_EX | LOCK_NB) < 0) {
	    snprintf(daemon_errbuf, sizeof(daemon_errbuf),
		     "%s is locked: another instance is running", path);
	    close(fd);
	    return (daemon_errbuf);
	}
	/* the instance that held it removed it between our open() and
	   flock() (it stopped): that lock is on a file nobody else will
	   open, and the next instance would lock a new one; again */
	if (stat(path, &pst) == 0 && pst.st_dev == fst.st_dev && pst.st_ino == fst.st_ino)
	    break;
	close(fd);
	if (tries >= 10) {
	    snprintf(daemon_errbuf, sizeof(daemon_errbuf),
		     "%s keeps being removed or replaced while it is locked", path);
	    return (daemon_errbuf);
	}
    }
    if (daemon_pidfile_foreign(fd)) {
	snprintf(daemon_errbuf, sizeof(daemon_errbuf), "%s holds something other than a "
		 "process id: pid_file must not name another file; left as it is", path);
	close(fd);
	return (daemon_errbuf);
    }
    /* a crashed instance's pid is nobody's to signal: empty until ours */
    if (ftruncate(fd, 0) < 0) {
	snprintf(daemon_errbuf, sizeof(daemon_errbuf), "truncate %s: %s", path, strerror(errno));
	close(fd);
	return (daemon_errbuf);
    }
    *fdp = fd;
    daemon_pidfiles_held++;
    return (NULL);
}

const char *daemon_pidfile_record(const char *path, int fd)
{
    char    buf[32];
    int     len = snprintf(buf, sizeof(buf), "%ld\n", (long) getpid());

    if (pwrite(fd, buf, len, 0) != len || ftruncate(fd, len) < 0) {
	snprintf(daemon_errbuf, sizeof(daemon_errbuf), "write %s: %s", path, strerror(errno));
	return (daemon_errbuf);
    }
    return (NULL);
}

const char *daemon_pidfile_write(const char *path, int *fdp)
{
    const char *err;

    if ((err = daemon_pidfile_lock(path, fdp)) == NULL
	&& (err = daemon_pidfile_record(path, *fdp)) != NULL) {
	close(*fdp);
	*fdp = -1;
	daemon_pidfiles_held--;
    }
    return (err);
}

void    daemon_pidfile_remove(const char *path, int *fdp)
{
    struct stat fst, pst;

    if (*fdp < 0)
	return;
    /* only our own file, not one that replaced it meanwhile */
    if (fstat(*fdp, &fst) == 0 && stat(path, &pst) == 0
	&& pst.st_dev == fst.st_dev && pst.st_ino == fst.st_ino && unlink(path) < 0) {
	/* "user" may not write the directory root created it in: leave
	   no pid for anyone to signal, and say why the file stays */
	msg_warn("cannot remove %s: %s; emptied it instead", path, strerror(errno));
	if (ftruncate(*fdp, 0) < 0)
	    msg_warn("cannot empty %s: %s", path, strerror(errno));
    }
    close(*fdp);
    *fdp = -1;
    daemon_pidfiles_held--;
}

/*
 * daemon_socket_give - a UNIX socket root made for a daemon that runs as
 * user becomes user's and user's group's (mode, unless 0, set too): a
 * root-owned socket let neither connect, so not Postfix, which the
 * guides put in that group. NULL, or a static error.
 */
const char *daemon_socket_give(const char *path, const char *user, mode_t mode)
{
    struct passwd *pw;

    if (user == NULL || geteuid() != 0)
	return (NULL);
    if ((pw = getpwnam(user)) == NULL) {
	snprintf(daemon_errbuf, sizeof(daemon_errbuf), "unknown user \"%s\"", user);
	return (daemon_errbuf);
    }
    if (lchown(path, pw->pw_uid, pw->pw_gid) < 0 || (mode && chmod(path, mode) < 0)) {
	snprintf(daemon_errbuf, sizeof(daemon_errbuf), "cannot give %s to user %s: %s", path,
		 user, strerror(errno));
	return (daemon_errbuf);
    }
    return (NULL);
}

const char *daemon_drop_privileges(const char *user)
{
    struct passwd *pw;

    errno = 0;
    if ((pw = getpwnam(user)) == NULL) {
	snprintf(daemon_errbuf, sizeof(daemon_errbuf), "unknown user \"%s\"", user);
	return (daemon_errbuf);
    }
    if (pw->pw_uid == 0) {
	snprintf(daemon_errbuf, sizeof(daemon_errbuf),
		 "refusing to run as \"%s\": it has uid 0", user);
	return (daemon_errbuf);
    }
    /* started as that user already (a container's runAsUser): its
       groups are the ones it was given (fsGroup), not initgroups()' */
    if (geteuid() != 0 && geteuid() == pw->pw_uid && getuid() == pw->pw_uid)
	return (NULL);
    if (geteuid() != 0) {
	snprintf(daemon_errbuf, sizeof(daemon_errbuf), "cannot become \"%s\" (uid %ld): "
		 "started as uid %ld, not root; remove user, or start as root or as %s",
		 user, (long) pw->pw_uid, (long) geteuid(), user);
	return (daemon_errbuf);
    }
    if (setgid(pw->pw_gid) < 0 || initgroups(user, pw->pw_gid) < 0
	|| setuid(pw->pw_uid) < 0) {
	snprintf(daemon_errbuf, sizeof(daemon_errbuf), "cannot become \"%s\": %s",
		 user, strerror(errno));
	return (daemon_errbuf);
    }
    if (setuid(0) == 0)
	msg_panic("daemon_drop_privileges: could regain root after dropping to %s", user);
    return (NULL);
}

static void daemon_signal_handler(int sig)
{
    unsigned char byte = (unsigned char) sig;
    int     saved = errno;

    if (write(daemon_pipe[1], &byte, 1) < 0) {
	/* pipe full: the daemon already has signals to handle */
    }
    errno = saved;
}

static void daemon_signal_set(sigset_t *set)
{
    sigemptyset(set);
    for (size_t i = 0; i < DAEMON_SIGNAL_COUNT; i++)
	sigaddset(set, daemon_signals[i]);
}

static void daemon_signal_unblock(void)
{
    sigset_t set;
    int     err;

    daemon_signal_set(&set);
    if ((err = pthread_sigmask(SIG_UNBLOCK, &set, NULL)) != 0)
	msg_fatal("pthread_sigmask: %s", strerror(err));
}

int     daemon_signal_action(int sig)
{
    switch (sig) {
    case SIGHUP:
	return (DAEMON_RELOAD);
    case SIGTERM:
    case SIGINT:
	return (DAEMON_STOP);
    case SIGUSR1:
	return (DAEMON_FLUSH);
    default:
	return (DAEMON_NONE);
    }
}

int     daemon_signal_fd(void)
{
    struct sigaction sa;

    if (daemon_pipe[0] >= 0)
	return (daemon_pipe[0]);
    if (pipe2(daemon_pipe, O_CLOEXEC | O_NONBLOCK) < 0)
	msg_fatal("pipe: %s", strerror(errno));
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = daemon_signal_handler;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = SA_RESTART;
    for (size_t i = 0; i < DAEMON_SIGNAL_COUNT; i++)
	if (sigaction(daemon_signals[i], &sa, NULL) < 0)
	    msg_fatal("sigaction: %s", strerror(errno));
    daemon_signal_unblock();			/* held ones arrive now */
    signal(SIGPIPE, SIG_IGN);
    return (daemon_pipe[0]);
}

int     daemon_signal_next(void)
{
    unsigned char byte;

    if (daemon_pipe[0] < 0 || read(daemon_pipe[0], &byte, 1) != 1)
	return (0);
    return (byte);
}

void    daemon_signal_block(sigset_t *set)
{
    int     err;

    daemon_signal_set(set);
    if ((err = pthread_sigmask(SIG_BLOCK, set, NULL)) != 0)
	msg_fatal("pthread_sigmask: %s", strerror(err));
    signal(SIGPIPE, SIG_IGN);
}

void    daemon_signal_hold(void)
{
    sigset_t set;

    daemon_signal_block(&set);
}

int     daemon_signal_wait(const sigset_t *set)
{
    int     sig, err;

    while ((err = sigwait(set, &sig)) != 0)
	if (err != EINTR)
	    msg_fatal("sigwait: %s", strerror(err));
    return (sig);
}
