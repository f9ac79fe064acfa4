/*
 * NAME
 *	skeleton 3
 * SUMMARY
 *	start sequence and accept guard shared by the daemons
 * SYNOPSIS
 *	#include "skeleton.h"
 *
 *	void	skeleton_lock(&sk, cfg)
 *	void	skeleton_start(&sk, &opts, cfg)
 *	void	skeleton_stop(&sk)
 *	void	skeleton_ready(on)
 *	void	skeleton_listener_guard(lev)
 *	int	skeleton_accept_exhausted(err)
 *	void	skeleton_accept_failed(listen_fd, err)
 *	unsigned long skeleton_accept_pauses()
 * DESCRIPTION
 *	A daemon's life, in the same order everywhere: parse the command
 *	line (daemon_parse_args()), raise the open-files limit, load and
 *	check the whole configuration (daemon_config_check() and the
 *	part's own checks; -t stops here), log init, skeleton_lock(): lock
 *	pid_file (before anything is bound or removed: a second start is
 *	told by the lock, and leaves the first one's sockets alone), bind
 *	its listeners while still root, then skeleton_start(): bind
 *	metrics_listen (before the fork, so that "another instance is
 *	running" or a port in use reaches whoever started the daemon,
 *	with exit status 1); detach unless -f; start the metrics
 *	endpoint's thread (after the fork, which threads do not survive,
 *	and before privileges go); call sk->detached(sk->context) when
 *	set (a caller's record of the new pid); write the pid into
 *	pid_file, last, so that its reader finds the daemon whole;
 *	become "user". The
 *	caller zeroes sk (or sets detached) before the call. Every failure is fatal
 *	and names its cause. The signal policy is daemon_signal_action().
 *	skeleton_stop() ends the metrics endpoint's thread (metrics_http_stop())
 *	and removes the pid file; so does a fatal error after skeleton_start()
 *	(atexit), so that no pid file names a dead process. A detaching
 *	daemon's starter waits for skeleton_ready(1) (daemon_detached()):
 *	its exit status 0 means "serving", and a failure after the fork
 *	(a worker thread that does not start) is its exit status 1 and
 *	message.
 *
 *	skeleton_ready(1) is said once the daemon serves (its listeners
 *	bound, its configuration loaded, its loop running), skeleton_ready(0)
 *	when it starts to stop: /readyz follows (metrics_http_serving()),
 *	and so does systemd, told READY=1 and STOPPING=1 (daemon_notify(),
 *	for Type=notify units), each once.
 *
 *	skeleton_listener_guard() keeps an evconnlistener from spinning
 *	when accept() fails for a reason that does not go away by itself
 *	(EMFILE, ENFILE, ENOBUFS, ENOMEM): libevent would call accept()
 *	again at once, forever, logging each failure. The guard stops
 *	listening for 100 ms and tries again; pending clients wait in the
 *	kernel's backlog meanwhile, and are served as soon as descriptors
 *	are free. One warning per 10 s at most, with the count of pauses
 *	since the last one; skeleton_accept_pauses() returns the total.
 *
 *	For an accept loop that is not libevent's (libmilter's),
 *	skeleton_accept_exhausted() says whether an accept() error is one
 *	of those, and skeleton_accept_failed() counts a pause and writes
 *	the same rate-limited warning; the caller pauses.
 * DIAGNOSTICS
 *	Fatal errors as "metrics_listen ...", "PATH is locked: another
 *	instance is running", "unknown user ...".
 */

#include "build_config.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#include <event2/event.h>
#include <event2/listener.h>

#include "addr.h"
#include "daemon.h"
#include "metrics_http.h"
#include "msg.h"
#include "skeleton.h"
#include "xalloc.h"

#define SKELETON_PAUSE_MS	100	/* accept() off after a failure */
#define SKELETON_REPORT_SECS	10	/* at most one warning this often */

static struct skeleton *skeleton_running;

/* skeleton_exit - a fatal error (exit(1)) leaves no pid file naming a dead process */

static void skeleton_exit(void)
{
    if (skeleton_running && skeleton_running->pid_file)
	daemon_pidfile_remove(skeleton_running->pid_file, &skeleton_running->pid_fd);
}

void    skeleton_lock(struct skeleton *sk, const struct config *cfg)
{
    const char *pid_file = config_get_str(cfg, "pid_file");
    const char *err;

    sk->pid_fd = -1;
    sk->pid_file = pid_file ? xstrdup(pid_file) : NULL;
    skeleton_running = sk;
    atexit(skeleton_exit);
    /* what can fail, fails before the fork: the exit status and the
       message reach whoever started the daemon */
    if (sk->pid_file && (err = daemon_pidfile_lock(sk->pid_file, &sk->pid_fd)) != NULL)
	msg_fatal("%s", err);
    sk->locked = 1;
}

void    skeleton_start(struct skeleton *sk, const struct daemon_opts *opts,
		               const struct config *cfg)
{
    const char *user = config_get_str(cfg, "user");
    const char *metrics = config_get_str(cfg, "metrics_listen");
    const char *err;

    if (!sk->locked)
	skeleton_lock(sk, cfg);
    if (metrics && (err = metrics_http_bind(metrics)) != NULL)
	msg_fatal("%s", err);
    if (!opts->foreground)
	daemon_detach(config_get_duration(cfg, "start_timeout"), skeleton_exit);
    if (metrics && (err = metrics_http_start(metrics)) != NULL)
	msg_fatal("%s", err);
    if (sk->detached)
	sk->detached(sk->context);
    if (sk->pid_file && (err = daemon_pidfile_record(sk->pid_file, sk->pid_fd)) != NULL)
	msg_fatal("%s", err);
    if (user && (err = daemon_drop_privileges(user)) != NULL)
	msg_fatal("%s", err);
    daemon_set_running();		/* what is read from now on is a reload's */
}

void    skeleton_ready(int on)
{
    static int said = 0;

    metrics_http_serving(on);
    if (on)
	daemon_detached();		/* the detaching parent exits 0 now */
    if (on && said == 0)
	daemon_notify("READY=1");
    else if (!on && said == 1)
	daemon_notify("STOPPING=1");
    said = on ? 1 : (said ? 2 : 0);
}

void    skeleton_stop(struct skeleton *sk)
{
    metrics_http_stop();			/* no scrape while the daemon frees */
    if (sk->pid_file)
	daemon_pidfile_remove(sk->pid_file, &sk->pid_fd);
    free(sk->pid_file);
    sk->pid_file = NULL;
    skeleton_running = NULL;
}

/* The listeners of all threads share one report. */

static struct {
    pthread_mutex_t lock;
    long long last_report;		/* daemon_mono_sec(); -1: never */
    unsigned long since_report;
    unsigned long total;
}       skeleton_pauses = {PTHREAD_MUTEX_INITIALIZER, -1, 0, 0};

unsigned long skeleton_accept_pauses(void)
{
    unsigned long total;

    pthread_mutex_lock(&skeleton_pauses.lock);
    total = skeleton_pauses.total;
    pthread_mutex_unlock(&skeleton_pauses.lock);
    return (total);
}

int     skeleton_accept_exhausted(int err)
{
    return (err == EMFILE || err == ENFILE || err == ENOBUFS || err == ENOMEM);
}

void    skeleton_accept_failed(int listen_fd, int err)
{
    char    where[ADDR_TEXT_MAX] = "?";
    union addr_sockaddr sa;
    socklen_t len = sizeof(sa);
    unsigned long count = 0;
    struct rlimit rl;
    long long now = daemon_mono_sec();

    pthread_mutex_lock(&skeleton_pauses.lock);
    skeleton_pauses.total++;
    skeleton_pauses.since_report++;
    if (skeleton_pauses.last_report < 0
	|| now - skeleton_pauses.last_report >= SKELETON_REPORT_SECS) {
	count = skeleton_pauses.since_report;
	skeleton_pauses.since_report = 0;
	skeleton_pauses.last_report = now;
    }
    pthread_mutex_unlock(&skeleton_pauses.lock);
    if (count == 0)
	return;
    if (getsockname(listen_fd, &sa.sa, &len) == 0)
	addr_format(&sa.sa, where, sizeof(where));
    if (getrlimit(RLIMIT_NOFILE, &rl) < 0)
	rl.rlim_cur = 0;
    msg_warn("accept on %s: %s (open-files limit %llu): new connections wait in the "
	     "backlog; %lu pause(s) of %dms since the last report", where, strerror(err),
	     (unsigned long long) rl.rlim_cur, count, SKELETON_PAUSE_MS);
}

static void skeleton_resume(evutil_socket_t fd, short what, void *context)
{
    evconnlistener_enable(context);
}

static void skeleton_accept_error(struct evconnlistener *lev, void *context)
{
    int     err = EVUTIL_SOCKET_ERROR();
    struct timeval pause = {0, SKELETON_PAUSE_MS * 1000};

    evconnlistener_disable(lev);
    if (event_base_once(evconnlistener_get_base(lev), -1, EV_TIMEOUT, skeleton_resume, lev,
			&pause) < 0) {
	msg_warn("accept: %s, and no timer to pause with", strerror(err));
	evconnlistener_enable(lev);
	return;
    }
    skeleton_accept_failed(evconnlistener_get_fd(lev), err);
}

void    skeleton_listener_guard(struct evconnlistener *lev)
{
    evconnlistener_set_error_cb(lev, skeleton_accept_error);
}
