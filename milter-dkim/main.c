/*
 * NAME
 *	milter-dkim 8
 * SUMMARY
 *	DKIM signing and verifying milter
 * SYNOPSIS
 *	milter-dkim [-c config_file] [-t [--dns]] [-f] [-v] [-V]
 * DESCRIPTION
 *	Loads milter-dkim.conf(5) with its KeyTable, SigningTable,
 *	sender_binding and keys, then serves the milter protocol on
 *	"socket" with mengine(3) (our own protocol code, one thread per
 *	session; libmilter is not used).
 *
 *	Signals: the main thread blocks SIGHUP, SIGTERM, SIGINT and SIGUSR1
 *	(daemon_parse_args() holds them before anything loads: a SIGHUP
 *	during start-up is a reload once started, not death), runs mengine_run()
 *	in a second thread and
 *	waits for the signals itself with sigwait(); Linux delivers a
 *	process signal to the main thread when it is waiting for it, so
 *	SIGHUP reloads (the new set is installed only if all of it
 *	loads) and SIGTERM/SIGINT stop: no new session is accepted, a
 *	session inside a message finishes it and is closed once answered,
 *	one between messages is closed at once, and the daemon exits 0 when
 *	none is left or when drain_timeout has passed (then the rest are
 *	cut; a second SIGTERM cuts at once: skeleton_drain(3)). SIGUSR1 is
 *	logged and ignored. A reload applies everything but socket,
 *	socket_umask, pid_file, user, syslog and metrics_listen, and says
 *	which of those changed and need a restart.
 *
 *	-t --dns also looks up every KeyTable key in DNS and says, per
 *	row, whether it is published and matching (dnscheck(3)); the exit
 *	status is 1 unless all are.
 * DIAGNOSTICS
 *	Configuration, table and key errors as "file:line: message".
 */

#include "build_config.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "addr.h"
#include "daemon.h"
#include "dnscheck.h"
#include "mengine.h"
#include "milter.h"
#include "metrics.h"
#include "metrics_http.h"
#include "msg.h"
#include "policy.h"
#include "skeleton.h"

#ifndef SYSCONFDIR
#define SYSCONFDIR "/etc"
#endif

struct milter_dkim_run {
    int     listen_fd;
    int     status;
    _Atomic int done;			/* mengine_run() returned */
};

static void *milter_dkim_run(void *arg)
{
    struct milter_dkim_run *run = arg;

    run->status = mengine_run(run->listen_fd, &milter_desc);
    atomic_store(&run->done, 1);
    kill(getpid(), SIGTERM);			/* wake the main thread */
    return (NULL);
}

static void milter_dkim_reload(const char *path)
{
    struct dkim_policy *p = policy_load(path);

    if (p == NULL) {
	metrics_config_reload(0);
	msg_error("reload of %s failed; keeping the previous keys and tables", path);
	return;
    }
    metrics_config_reload(1);
    (void) daemon_config_reload(p->cfg);
    policy_install(p);
    msg_info("configuration reloaded: %d keys, %d SigningTable entries",
	     p->tables.key_count, p->tables.sign_count);
}

/*
 * milter_dkim_stop - a stop signal: the first lets the sessions inside a
 * message finish it (drain_timeout of the configuration in force), the
 * next cuts them (skeleton_drain(3))
 */
static void milter_dkim_stop(int sig)
{
    struct dkim_policy *p = policy_acquire();
    long long drain_ms = p ? skeleton_drain_ms(p->cfg) : 0;

    policy_release(&p);
    if (skeleton_stopping(sig, drain_ms) == SKELETON_DRAIN)
	mengine_drain(drain_ms);
    else
	mengine_stop();
}

/*
 * milter_threads_check - each milter session is a thread: under a pids
 * limit below max_sessions, sessions past it waited in the listen
 * backlog, 10 s and more, while /readyz said 200 and the log said little
 * (helper-121, --pids-limit 8). Said at the start.
 */
static void milter_threads_check(int max_sessions)
{
    long    room = daemon_threads_max();

    if (room >= 0 && room < (long) max_sessions + 8)
	msg_warn("this process may start about %ld more threads (its cgroup's pids limit, "
		 "RLIMIT_NPROC), fewer than max_sessions (%d) and its own: each milter "
		 "session is a thread, and one past the limit waits in the listen backlog "
		 "until another ends (Postfix tempfails it after milter_command_timeout); "
		 "raise the pids limit or lower max_sessions", room, max_sessions);
}

static int milter_dkim_serve(const char *config_path, struct dkim_policy *p,
			             const struct daemon_opts *opts)
{
    const char *socket_spec = config_get_str(p->cfg, "socket");
    struct milter_dkim_run run = {-1, 0, 0};
    const char *err;
    int     sig, rc;
    struct skeleton sk = {0};
    pthread_t thread;
    sigset_t set;
    mode_t  old_mask;

    skeleton_lock(&sk, p->cfg);			/* a second start stops here */
    if (p->socket_local) {			/* policy_load() checked socket */
	if (addr_unix_stale(p->socket_path) < 0)	/* a stale one; nothing else */
	    msg_fatal("cannot listen on %s: %s", socket_spec, errno == EADDRINUSE
		      ? "a process answers on it (milter-dkim started twice?); left alone"
		      : errno == EEXIST ? "it exists and is no socket" : strerror(errno));
	milter_local_socket = 1;
    }
    daemon_signal_block(&set);			/* before the port answers */
    old_mask = umask(p->socket_umask);		/* who may connect to a UNIX socket */
    if ((run.listen_fd = mengine_open(socket_spec, &err)) < 0)
	msg_fatal("cannot listen on %s: %s: %m", socket_spec, err);
    umask(old_mask);
    /* made by root for "user": its, or Postfix in its group cannot connect */
    if (p->socket_local
	&& (err = daemon_socket_give(p->socket_path, config_get_str(p->cfg, "user"), 0)))
	msg_fatal("%s", err);
    mengine_max_sessions = p->max_sessions;
    milter_threads_check(p->max_sessions);
    milter_metrics_init();
    skeleton_start(&sk, opts, p->cfg);
    policy_install(p);
    if ((rc = pthread_create(&thread, NULL, milter_dkim_run, &run)) != 0)
	msg_fatal("cannot start the milter thread: %s", strerror(rc));
    skeleton_ready(1);			/* keys loaded, socket bound */
    msg_info("started on %s: %d keys, %d SigningTable entries", socket_spec,
	     p->tables.key_count, p->tables.sign_count);
    while (!atomic_load(&run.done)) {	/* its end sends us a SIGTERM */
	switch (daemon_signal_action(sig = daemon_signal_wait(&set))) {
	case DAEMON_RELOAD:
	    milter_dkim_reload(config_path);
	    break;
	case DAEMON_STOP:
	    if (!atomic_load(&run.done))
		milter_dkim_stop(sig);
	    break;
	default:
	    msg_info("signal %d: nothing to flush", sig);
	    break;
	}
    }
    pthread_join(thread, NULL);
    policy_install(NULL);
    skeleton_stop(&sk);
    return (run.status == 0 ? 0 : 1);
}

/*
 * milter_dkim_check_user - load the configuration again as "user"
 * (daemon_as_user()): every reload (SIGHUP) runs after privileges are
 * dropped, so a key, table or configuration file only root can read
 * started fine and then failed every reload (a rotated key never took
 * effect). Refused by -t and at start instead, with the errors the user
 * would get.
 */
static const char *milter_dkim_load_as_user(void *context)
{
    struct dkim_policy *as_user = policy_load((const char *) context);

    if (as_user == NULL)
	return ("the configuration does not load (above)");
    policy_release(&as_user);
    return (NULL);
}

static int milter_dkim_check_user(const char *path, const struct dkim_policy *p)
{
    const char *user = config_get_str(p->cfg, "user"), *err;

    if (user == NULL || geteuid() != 0)
	return (0);				/* loaded as the user already */
    if ((err = daemon_as_user(user, milter_dkim_load_as_user, (void *) path)) == NULL)
	return (0);
    msg_error("%s: as user %s, which every reload (SIGHUP) runs as, %s; make it readable by %s",
	      path, user, err, user);
    return (-1);
}

/* milter_dkim_dns_flag - take "--dns" out of argv (getopt knows no long options) */

static int milter_dkim_dns_flag(int *argc, char **argv)
{
    int     found = 0, out = 1;

    for (int i = 1; i < *argc; i++) {
	if (strcmp(argv[i], "--") == 0) {
	    while (i < *argc)
		argv[out++] = argv[i++];
	    break;
	}
	if (strcmp(argv[i], "--dns") == 0)
	    found = 1;
	else
	    argv[out++] = argv[i];
    }
    argv[*argc = out] = NULL;
    return (found);
}

int     main(int argc, char **argv)
{
    struct daemon_opts opts;
    struct dkim_policy *p;
    int     dns = milter_dkim_dns_flag(&argc, argv);

    msg_init(argv[0], MSG_STDERR);
    daemon_parse_args(argc, argv, SYSCONFDIR "/mxkit/milter-dkim.conf", &opts);
    if (dns && !opts.check_only)
	msg_fatal("--dns goes with -t (check the configuration and DNS, then exit)");

    (void) daemon_nofile_raise();		/* a descriptor per session */
    if ((p = policy_load(opts.config_path)) == NULL)
	return (1);
    if (milter_dkim_check_user(opts.config_path, p) < 0) {
	policy_release(&p);
	return (1);
    }
    if (opts.check_only) {
	int     status = 0;

	printf("%s: configuration OK: %d keys, %d SigningTable entries\n", opts.config_path,
	       p->tables.key_count, p->tables.sign_count);
	if (dns && config_get_str(p->cfg, "key_table"))
	    status = dnscheck_tables(p->cfg, &p->tables,
				   tables_strip_prefix(config_get_str(p->cfg, "key_table")));
	policy_release(&p);
	return (status);
    }
    daemon_log_init(argv[0], &opts, p->cfg);
    daemon_config_running(p->cfg);
    return (milter_dkim_serve(opts.config_path, p, &opts));
}
