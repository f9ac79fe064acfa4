/*
 * NAME
 *	policyd-ratelimit 8
 * SUMMARY
 *	Postfix policy service for rate limits
 * SYNOPSIS
 *	policyd-ratelimit [-c config_file] [-t] [-f] [-v] [-V]
 *	policyd-ratelimit ctl [-c config_file] [-s socket] COMMAND [ARG]
 * DESCRIPTION
 *	Loads the configuration (policyd-ratelimit.conf(5)), listens on
 *	every "listen" address and answers Postfix policy requests on
 *	libevent, keeping GCRA state in memory or in Redis.
 *
 *	SIGHUP reloads the configuration and override_file; connections
 *	stay open and the next request uses the new limits, replies,
 *	deadline, on_store_error, idle_timeout (the open connections'
 *	too: conn_reload()) and max_connections. A
 *	broken new configuration is refused (errors logged) and the old
 *	one stays. listen, store, store_password_file (and the password
 *	read from it at start), pid_file, user, syslog and
 *	metrics_listen need a restart: a reload that changes them says
 *	so and keeps the running values. SIGTERM and SIGINT stop
 *	accepting, answer what was received, close the connections and
 *	exit at the end of the drain (conn_drain(), skeleton_drain(3));
 *	SIGUSR1 is logged and ignored.
 *
 *	"workers" event loops (threads) serve the listeners; see
 *	policyd_worker below for what they share.
 *
 *	max_connections must fit the open-files limit (raised to its
 *	hard limit at start, one descriptor per connection); out of
 *	descriptors anyway, accept() pauses instead of spinning
 *	(skeleton(3)).
 *
 *	GET /readyz on metrics_listen (metrics_http(3)) is not ready while
 *	the Redis store is unreachable and on_store_error = closed (every
 *	request would be deferred); with open, or the memory store, the
 *	daemon answers and is ready. The state is sampled every 250 ms.
 * DIAGNOSTICS
 *	Configuration errors as "file:line: message"; -t prints them all
 *	and exits 1, or exits 0 for a good configuration.
 */

#include "build_config.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#include "addr.h"
#include "conn.h"
#include "ctl.h"
#include "main_store.h"
#include "daemon.h"
#include "metrics.h"
#include "liveness.h"
#include "metrics_http.h"
#include "msg.h"
#include "quarantine.h"
#include "skeleton.h"
#include "store_resolve.h"
#include "xalloc.h"

#ifndef SYSCONFDIR
#define SYSCONFDIR "/etc"
#endif

static const struct config_spec policyd_specs[] = {
    {"listen", CONFIG_LIST, "inet:127.0.0.1:10031", CONFIG_RESTART},
    {"store", CONFIG_STRING, "memory", CONFIG_RESTART},
    {"store_password_file", CONFIG_STRING, NULL, CONFIG_RESTART},
    {"sentinel_password_file", CONFIG_STRING, NULL, CONFIG_RESTART},
    {"resolv_conf", CONFIG_STRING, NULL, CONFIG_RESTART},
    {"hosts_file", CONFIG_STRING, NULL, CONFIG_RESTART},
    {"on_store_error", CONFIG_STRING, "open", 0},
    {"deadline", CONFIG_DURATION, "100ms", 0},
    {"defer_reply", CONFIG_STRING,
    "450 4.7.1 Rate limit {limit} exceeded for {key}; retry in {retry_after}s", 0},
    {"reject_reply", CONFIG_STRING, "550 5.7.1 Rate limit {limit} exceeded for {key}", 0},
    {"routed_recipients", CONFIG_STRING, "reject", 0},
    {"recipient_delimiter", CONFIG_STRING, RATELIMIT_DELIMITER, 0},
    {"store_error_reply", CONFIG_STRING,
    "451 4.3.0 Rate limit service unavailable; try again later", 0},
    {"idle_timeout", CONFIG_DURATION, "1000s", 0},
    {"max_connections", CONFIG_INT, "10000", 0},
    {"workers", CONFIG_INT, "0", CONFIG_RESTART},
    {"override_file", CONFIG_STRING, NULL, 0},
    {"limit", CONFIG_DIRECTIVE, NULL, CONFIG_REPEAT},
    {"override", CONFIG_DIRECTIVE, NULL, CONFIG_REPEAT},
    {"exempt", CONFIG_DIRECTIVE, NULL, CONFIG_REPEAT},
    CTL_CONFIG_SPECS,
    DAEMON_DRAIN_SPECS,
    DAEMON_CONFIG_SPECS,
    {0},
};

static const struct config_spec override_specs[] = {
    {"override", CONFIG_DIRECTIVE, NULL, CONFIG_REPEAT},
    {"exempt", CONFIG_DIRECTIVE, NULL, CONFIG_REPEAT},
    {0},
};

static const char *policyd_config_path;

/* Descriptors: one per connection, and these for everything else. */
#define POLICYD_FD_RESERVE	32
#define POLICYD_FD_PER_WORKER	16	/* more: listeners, Redis, Sentinel, loop */

/* policyd_worker_count - "workers", 0 meaning one per CPU; 1 to 64 */

static int policyd_worker_count(const struct config *cfg)
{
    long long n = config_get_int(cfg, "workers");

    if (n == 0)
	n = sysconf(_SC_NPROCESSORS_ONLN);
    return (n < 1 ? 1 : n > 64 ? 64 : (int) n);
}

/*
 * policyd_check_listen - every address parses, as policyd_open() will
 * parse it (a bad one was "configuration OK" for -t, and the daemon
 * then bound the ones before it and died), and they can all be bound
 * at once.
 */
static void policyd_check_listen(struct config *cfg)
{
    const char *ctl_path = config_get_str(cfg, "control_socket");
    struct daemon_address *addrs;
    struct addr addr;
    const char *err;
    char  **list;
    int     n;

    list = config_split_list(config_get_str(cfg, "listen"), &n);
    if (n == 0)				/* it started, listening on nothing */
	config_add_error(cfg, config_line(cfg, "listen"), "listen: no address given");
    addrs = xcalloc(n + 1, sizeof(*addrs));
    for (int i = 0; i < n; i++) {
	addrs[i] = (struct daemon_address) {.name = "listen", .spec = list[i],
	    .line = config_line(cfg, "listen")};
	if ((err = addr_parse(list[i], &addr)) != NULL)
	    config_add_error(cfg, addrs[i].line, "listen %s: %s", list[i], err);
	else if (addr.family == AF_UNIX && ctl_path && strcmp(addr.u.un.sun_path, ctl_path) == 0)
	    config_add_error(cfg, addrs[i].line, "listen %s: the same path as control_socket; "
			     "only one can listen there", list[i]);
	else if (addr.family == AF_UNIX && geteuid() == 0 && config_get_str(cfg, "user") == NULL)
	    /* not an error: root may be the client (tests, a root proxy) */
	    msg_warn("listen %s: no user is set, so the socket stays root's with the "
		     "umask's mode and Postfix's smtpd (user postfix) cannot connect: set "
		     "user (the socket becomes its and its group's, mode 0660)", list[i]);
    }
    daemon_config_addresses(cfg, addrs, n);
    free(addrs);
    config_list_free(&list);
}

static void policyd_check_reply(struct config *cfg, const char *name, char first)
{
    const char *text = config_get_str(cfg, name);

    if (text[0] != first || text[1] < '0' || text[1] > '9' || text[2] < '0'
	|| text[2] > '9' || text[3] != ' ')
	config_add_error(cfg, config_line(cfg, name),
			 "%s must start with a %cXX SMTP code and a space", name, first);
    /* a mistyped placeholder would reach every client as written */
    for (const char *cp = strchr(text, '{'); cp; cp = strchr(cp + 1, '{')) {
	static const char *const known[] = {"{limit}", "{key}", "{retry_after}", "{rate}",
	"{count}", 0};
	int     i;

	for (i = 0; known[i] && strncmp(cp, known[i], strlen(known[i])) != 0; i++)
	     /* void */ ;
	if (known[i] == 0 || strcmp(name, "store_error_reply") == 0) {
	    config_add_error(cfg, config_line(cfg, name), "%s: unknown placeholder at "
			     "\"%.20s\" (%s)", name, cp, known[i] ? "store_error_reply "
			     "is sent as written" : "use {limit}, {key}, {retry_after}, "
			     "{rate}, {count}");
	    break;
	}
    }
}

/* policyd_check_range - a number the daemon could not run with is an error */

static void policyd_check_range(struct config *cfg, const char *name, long long value,
				        long long min, long long max, const char *unit)
{
    if (value < min || value > max)
	config_add_error(cfg, config_line(cfg, name), "%s must be %lld%s to %lld%s",
			 name, min, unit, max, unit);
}

/* The configuration in force while a reload reads the next one. */
static const struct policy_config *policyd_running;

static int policyd_same(const char *a, const char *b)
{
    return (a && b ? strcmp(a, b) == 0 : a == b);
}

/*
 * policyd_password_changed - a reload that keeps the password files: did
 * the password in one change? It takes effect only at restart, and a
 * rotated secret that looks applied is worse than one that says it is
 * not (before, the reload said nothing). A file the daemon's user may
 * not read (root's 0600 with "user", as recommended) tells nothing: no
 * warning, the man page says so. One that is gone, or no longer a
 * file, is said: the running password is kept, but the next start
 * refuses the configuration, as -t does (the reload took it without a
 * word). Nothing of either password is logged.
 */
static void policyd_password_one(const char *name, const char *file, const char *running)
{
    char    buf[STORE_PASSWORD_MAX + 1];
    const char *err;

    if (file == NULL)
	return;
    if ((err = store_url_read_password(file, buf, sizeof(buf))) == NULL) {
	if (strcmp(buf, running) != 0)
	    msg_warn("%s: the password in it changed; it takes effect at restart (the "
		     "running one is kept)", name);
    } else if (access(file, R_OK) == 0 || errno != EACCES) {
	msg_warn("%s: %s: the running password is kept, but a start would refuse this "
		 "configuration (-t says so too)", name, err);
    }
    explicit_bzero(buf, sizeof(buf));
}

static void policyd_password_changed(const char *file, const char *sfile)
{
    const struct store_url *run = &policyd_running->store;

    policyd_password_one("store_password_file", file, run->password);
    policyd_password_one("sentinel_password_file", sfile, run->sentinel_password);
}

/*
 * policyd_check_store - the store URL, and the password file it may
 * take its password from. Errors never quote the URL or the file's
 * content (either may hold a password). The store changes only with a
 * restart, so a reload that keeps both keeps the password read at
 * start: after "user" took effect the file may no longer be readable.
 */
static void policyd_check_store(struct config *cfg, struct store_url *url)
{
    const char *file = config_get_str(cfg, "store_password_file");
    const char *sfile = config_get_str(cfg, "sentinel_password_file");
    const char *text = config_get_str(cfg, "store");
    const char *err;

    if (policyd_running && (file || sfile)
	&& policyd_same(file, config_get_str(policyd_running->cfg, "store_password_file"))
	&& policyd_same(sfile, config_get_str(policyd_running->cfg, "sentinel_password_file"))
	&& policyd_same(text, config_get_str(policyd_running->cfg, "store"))) {
	*url = policyd_running->store;
	policyd_password_changed(file, sfile);
	return;
    }
    if ((err = file ? store_url_parse_file(text, url) : store_url_parse(text, url)) != NULL)
	config_add_error(cfg, config_line(cfg, "store"), "store: %s", err);
    else if (file && (err = store_url_password_file(url, file)) != NULL)
	config_add_error(cfg, config_line(cfg, "store_password_file"),
			 "store_password_file: %s", err);
    if (sfile && err == NULL && !url->sentinel)
	config_add_error(cfg, config_line(cfg, "sentinel_password_file"),
			 "sentinel_password_file is set, but the store is not redis-sentinel://");
    else if (sfile && err == NULL && (err = store_url_read_password(sfile,
		  url->sentinel_password, sizeof(url->sentinel_password))) != NULL)
	config_add_error(cfg, config_line(cfg, "sentinel_password_file"),
			 "sentinel_password_file: %s", err);
    policyd_check_resolver(cfg, url);
}

/*
 * policyd_check_values - every value the daemon uses, parsed and checked
 * here, so that -t finds whatever the daemon would die on or misread.
 * The store URL's errors never quote it (it may hold a password).
 */

static void policyd_check_values(struct policy_config *pc)
{
    struct config *cfg = pc->cfg;
    const char *mode = config_get_str(cfg, "on_store_error");

    if (strcmp(mode, "open") != 0 && strcmp(mode, "closed") != 0)
	config_add_error(cfg, config_line(cfg, "on_store_error"),
			 "on_store_error must be open or closed");
    policyd_check_store(cfg, &pc->store);
    policyd_check_reply(cfg, "defer_reply", '4');
    policyd_check_reply(cfg, "reject_reply", '5');
    policyd_check_reply(cfg, "store_error_reply", '4');
    pc->routed_reject = strcmp(config_get_str(cfg, "routed_recipients"), "reject") == 0;
    if (!pc->routed_reject && strcmp(config_get_str(cfg, "routed_recipients"), "count") != 0)
	config_add_error(cfg, config_line(cfg, "routed_recipients"),
			 "routed_recipients must be reject or count");
    pc->deadline_ms = config_get_duration(cfg, "deadline");
    policyd_check_range(cfg, "deadline", pc->deadline_ms, 1, 60000, "ms");
    pc->idle_timeout_ms = config_get_duration(cfg, "idle_timeout");
    policyd_check_range(cfg, "idle_timeout", pc->idle_timeout_ms, 1000, 86400000LL, "ms");
    pc->max_connections = config_get_int(cfg, "max_connections");
    policyd_check_range(cfg, "max_connections", pc->max_connections, 1, 1000000, "");
    policyd_check_range(cfg, "workers", config_get_int(cfg, "workers"), 0, 64,
			" (0: one per CPU)");
    if (pc->max_connections >= 1)		/* and what fits the descriptors */
	pc->max_connections = daemon_config_connections(cfg, "max_connections", 1,
				   POLICYD_FD_RESERVE + (policyd_worker_count(cfg) - 1)
					   * POLICYD_FD_PER_WORKER);
    daemon_config_check(cfg);
    ctl_config_check(cfg, policyd_running == NULL);
    policyd_check_listen(cfg);
    policyd_check_loop(cfg, &pc->store);
    pc->syslog = config_get_bool(cfg, "syslog");
    pc->fail_open = strcmp(mode, "open") == 0;
    pc->defer_reply = config_get_str(cfg, "defer_reply");
    pc->reject_reply = config_get_str(cfg, "reject_reply");
    pc->store_error_reply = config_get_str(cfg, "store_error_reply");
}

/* policyd_load - configuration, limits and override_file; NULL on errors */

static struct policy_config *policyd_load(const char *path)
{
    struct policy_config *pc = xcalloc(1, sizeof(*pc));
    struct config *ocfg;
    const char *ofile;

    pc->refcount = 1;
    pc->cfg = config_read(path, policyd_specs);
    if (pc->cfg->error_count == 0) {
	policyd_check_values(pc);
	ratelimit_load(&pc->limits, pc->cfg);
	if ((ofile = config_get_str(pc->cfg, "override_file")) != NULL) {
	    ocfg = config_read(ofile, override_specs);
	    if (ocfg->error_count == 0)
		ratelimit_load_overrides(&pc->limits, ocfg);
	    config_merge_errors(pc->cfg, ocfg);
	    config_free(&ocfg);
	}
	policyd_check_reloadable(pc->cfg, path);
	/* a CIDR list sorts itself at its first match: before threads share it */
	for (int i = 0; i < pc->limits.exempt_count; i++)
	    if (pc->limits.exempt[i].cidrs)
		(void) cidr_list_match_str(pc->limits.exempt[i].cidrs, "::");
    }
    if (pc->cfg->error_count) {
	config_print_errors(pc->cfg);
	policy_config_release(&pc);
	return (NULL);
    }
    return (pc);
}

/*
 * Workers (workers = N): N event loops, each in a thread of its own with
 * its own listening socket per TCP listener (SO_REUSEPORT, as
 * proxyv2-shim: the kernel spreads the connections), its own connections
 * and its own Redis connection (and Sentinel watch). A unix listener is
 * one socket on which every loop accepts. They share the configuration
 * (reference counted), the count that max_connections limits, and one
 * memory store (store_memory(3): a mutex, so limits stay exact). Worker
 * 0 is the main thread; it alone handles signals, the control socket,
 * readiness, notify commands and the 10 s summary, which adds up every
 * worker's store errors.
 */
struct policyd_worker {
    pthread_t thread;
    struct server srv;
    int    *fds;			/* a listening socket per listener */
    struct evconnlistener **listeners;
    int     control[2];			/* worker 0 -> this one: a command */
    struct policy_config *next;		/* a reload's, under policyd_lock */
};

#define POLICYD_CMD_STOP	'x'
#define POLICYD_CMD_RELOAD	'r'
#define POLICYD_CMD_DRAIN	'd'

static struct policyd_worker *policyd_workers;	/* [0] is the main thread */
static int policyd_nworkers;
static pthread_mutex_t policyd_lock = PTHREAD_MUTEX_INITIALIZER;
static long long policyd_errors;		/* under policyd_lock */
static char policyd_last_error[200];		/* under policyd_lock */
static _Atomic int policyd_connections;

/* policyd_workers_reload - hand the new configuration to every worker */

static void policyd_workers_reload(struct policy_config *pc)
{
    for (int i = 1; i < policyd_nworkers; i++) {
	struct policyd_worker *w = policyd_workers + i;

	pthread_mutex_lock(&policyd_lock);
	policy_config_release(&w->next);	/* one it has not taken yet */
	pc->refcount++;
	w->next = pc;
	pthread_mutex_unlock(&policyd_lock);
	if (write(w->control[1], (char[]) {POLICYD_CMD_RELOAD}, 1) != 1)
	    msg_warn("cannot reach worker %d: %m", i);
    }
}

static int policyd_nlisteners;

/*
 * policyd_drain_worker - a stop's drain in one worker: accept no more
 * (the socket is shut down: the kernel refuses new clients), answer what
 * was received, close the connections (conn_drain())
 */
static void policyd_drain_worker(struct policyd_worker *w, struct server *srv)
{
    for (int i = 0; i < policyd_nlisteners; i++) {
	evconnlistener_disable(w->listeners[i]);
	(void) shutdown(evconnlistener_get_fd(w->listeners[i]), SHUT_RDWR);
    }
    conn_drain(srv);
}

/* policyd_control - in a worker: stop, drain, or take the reloaded configuration */

static void policyd_control(evutil_socket_t fd, short what, void *context)
{
    struct policyd_worker *w = context;
    struct policy_config *next;
    char    cmd;

    if (read(fd, &cmd, 1) != 1 || cmd == POLICYD_CMD_STOP) {
	event_base_loopbreak(w->srv.base);
	return;
    }
    if (cmd == POLICYD_CMD_DRAIN) {
	policyd_drain_worker(w, &w->srv);
	return;
    }
    pthread_mutex_lock(&policyd_lock);
    next = w->next;
    w->next = NULL;
    pthread_mutex_unlock(&policyd_lock);
    if (next) {
	long long idle_ms = w->srv.pc->idle_timeout_ms;

	policy_config_release(&w->srv.pc);
	w->srv.pc = next;
	conn_reload(&w->srv, idle_ms);
    }
}

static void policyd_reload(struct server *srv)
{
    struct policy_config *pc;
    long long idle_ms = srv->pc->idle_timeout_ms;

    policyd_running = srv->pc;
    pc = policyd_load(policyd_config_path);
    policyd_running = NULL;

    if (pc == NULL) {
	metrics_config_reload(0);
	msg_error("reload of %s failed; keeping the previous configuration",
		  policyd_config_path);
	return;
    }
    metrics_config_reload(1);
    (void) daemon_config_reload(pc->cfg);
    policy_config_release(&srv->pc);
    srv->pc = pc;
    conn_reload(srv, idle_ms);
    policyd_workers_reload(pc);
    msg_info("configuration reloaded: %d limits", pc->limits.limit_count);
}

/* policyd_stop - a stop signal: drain (skeleton_drain(3)), or cut */

static void policyd_stop(struct server *srv, int sig)
{
    long long drain_ms = skeleton_drain_ms(srv->pc->cfg);

    if (skeleton_stopping(sig, drain_ms) != SKELETON_DRAIN) {
	event_base_loopbreak(srv->base);
	return;
    }
    policyd_drain_worker(policyd_workers, srv);	/* worker 0's server is srv */
    for (int i = 1; i < policyd_nworkers; i++)
	if (write(policyd_workers[i].control[1], (char[]) {POLICYD_CMD_DRAIN}, 1) != 1)
	    msg_warn("cannot reach worker %d: %m", i);
    conn_drain_watch(srv, drain_ms);
}

static void policyd_signal(evutil_socket_t fd, short what, void *context)
{
    struct server *srv = context;
    int     sig;

    while ((sig = daemon_signal_next()) != 0) {
	switch (daemon_signal_action(sig)) {
	case DAEMON_RELOAD:
	    policyd_reload(srv);
	    break;
	case DAEMON_STOP:
	    policyd_stop(srv, sig);
	    return;
	default:
	    msg_info("signal %d: nothing to flush", sig);
	    break;
	}
    }
}

/* policyd_report_add - a worker's store errors, to the common summary */

static void policyd_report_add(evutil_socket_t fd, short what, void *context)
{
    struct server *srv = context;

    conn_warnings_flush();			/* this worker's, in its thread */
    if (srv->store_errors == 0)
	return;
    pthread_mutex_lock(&policyd_lock);
    policyd_errors += srv->store_errors;
    if (srv->store->error[0])
	snprintf(policyd_last_error, sizeof(policyd_last_error), "%s", srv->store->error);
    pthread_mutex_unlock(&policyd_lock);
    srv->store_errors = 0;
    srv->store->error[0] = 0;
}

static void policyd_report(evutil_socket_t fd, short what, void *context)
{
    struct server *srv = context;

    policyd_report_add(fd, what, context);
    pthread_mutex_lock(&policyd_lock);
    if (policyd_errors)
	msg_warn("store %s: %lld requests answered by on_store_error = %s in the last 10s"
		 " (last error: %s)", srv->store->kind, policyd_errors,
		 srv->pc->fail_open ? "open" : "closed",
		 policyd_last_error[0] ? policyd_last_error : "unknown");
    policyd_errors = 0;
    policyd_last_error[0] = 0;
    pthread_mutex_unlock(&policyd_lock);
}

/*
 * Readiness, computed in the event loop (which owns the store) and
 * read by the metrics endpoint's thread.
 */
static _Atomic(const char *) policyd_unready;

static const char *policyd_ready(void)
{
    return (atomic_load(&policyd_unready));
}

static void policyd_ready_sample(evutil_socket_t fd, short what, void *context)
{
    struct server *srv = context;

    atomic_store(&policyd_unready, srv->store == srv->local || srv->pc->fail_open
		 || store_redis_connected(srv->store) ? NULL :
		 "store unreachable and on_store_error = closed");
}

/*
 * policyd_open - every worker's listening sockets, while still root. A
 * TCP listener gets one socket per worker (SO_REUSEPORT when there are
 * several); a unix listener one socket, shared.
 */
static void policyd_open(const struct server *srv, struct policyd_worker *w, int n,
			         int *count)
{
    char  **list = config_split_list(config_get_str(srv->pc->cfg, "listen"), count);
    struct addr addr;
    const char *err;

    for (int k = 0; k < n; k++)
	w[k].fds = xcalloc(*count + 1, sizeof(int));
    for (int i = 0; i < *count; i++) {
	if ((err = addr_parse(list[i], &addr)) != NULL)
	    msg_fatal("listen %s: %s", list[i], err);
	for (int k = 0; k < n; k++) {
	    if (addr.u.sa.sa_family == AF_UNIX && k > 0)
		w[k].fds[i] = fcntl(w[0].fds[i], F_DUPFD_CLOEXEC, 0);
	    else if (addr.u.sa.sa_family == AF_UNIX || n == 1)
		w[k].fds[i] = addr_listen(&addr, 1024, 1);
	    else
		w[k].fds[i] = addr_listen_shared(&addr, 1024, k == 0);
	    if (w[k].fds[i] < 0)
		msg_fatal("listen %s: %m", list[i]);
	}
	/* made by root for "user": its and its group's, read-write */
	if (addr.u.sa.sa_family == AF_UNIX && (err = daemon_socket_give(addr.u.un.sun_path,
				    config_get_str(srv->pc->cfg, "user"), 0660)) != NULL)
	    msg_fatal("listen %s: %s", list[i], err);
	msg_info("listening on %s", list[i]);
    }
    config_list_free(&list);
}

/* policyd_listen - a worker's loop watches its sockets */

static void policyd_listen(struct policyd_worker *w, struct server *srv, int count)
{
    w->listeners = xcalloc(count + 1, sizeof(*w->listeners));
    for (int i = 0; i < count; i++) {
	/* backlog 0: already listening; -1 would listen() again with 128 */
	if ((w->listeners[i] = evconnlistener_new(srv->base, conn_accept, srv,
				 LEV_OPT_CLOSE_ON_FREE, 0, w->fds[i])) == NULL)
	    msg_fatal("listen: cannot watch the socket");
	skeleton_listener_guard(w->listeners[i]);
    }
}

static void policyd_unlisten(struct policyd_worker *w, int count)
{
    for (int i = 0; i < count; i++)
	evconnlistener_free(w->listeners[i]);
    free(w->listeners);
    free(w->fds);
}

static struct store *policyd_store(struct server *srv)
{
    if (!srv->pc->store.redis)
	return (srv->local);
    return (store_redis_create(srv->base, &srv->pc->store));
}

/* policyd_worker_run - a worker's thread: its loop until told to stop */

static void *policyd_worker_run(void *context)
{
    struct policyd_worker *w = context;
    struct server *srv = &w->srv;
    struct timeval ten = {10, 0};
    struct event *control, *report;
    struct liveness *live;
    sigset_t set;

    daemon_signal_block(&set);			/* signals are worker 0's */
    srv->store = policyd_store(srv);
    control = event_new(srv->base, w->control[0], EV_READ | EV_PERSIST, policyd_control, w);
    event_add(control, NULL);
    report = event_new(srv->base, -1, EV_PERSIST, policyd_report_add, srv);
    event_add(report, &ten);
    live = liveness_worker(srv->base, (int) (w - policyd_workers));
    event_base_dispatch(srv->base);
    liveness_unwatch(&live);
    event_free(control);
    event_free(report);
    if (srv->store != srv->local)
	store_destroy(&srv->store);
    return (NULL);
}

/* policyd_workers_start - workers 1..n-1, each a copy of worker 0 */

static void policyd_workers_start(struct server *srv, struct policyd_worker *w, int n,
				          int nlisteners)
{
    int     rc;

    for (int k = 1; k < n; k++) {
	w[k].srv = *srv;
	w[k].srv.base = event_base_new();
	w[k].srv.report = NULL;
	w[k].srv.store = NULL;
	w[k].srv.pc->refcount++;
	if (pipe2(w[k].control, O_CLOEXEC) < 0)
	    msg_fatal("pipe: %m");
	policyd_listen(w + k, &w[k].srv, nlisteners);
	if ((rc = pthread_create(&w[k].thread, NULL, policyd_worker_run, w + k)) != 0)
	    msg_fatal("cannot start worker thread: %s", strerror(rc));
    }
}

static void policyd_workers_stop(struct policyd_worker *w, int n, int nlisteners)
{
    for (int k = 1; k < n; k++)
	if (write(w[k].control[1], (char[]) {POLICYD_CMD_STOP}, 1) != 1)
	    msg_warn("cannot stop worker %d: %m", k);
    for (int k = 1; k < n; k++) {
	pthread_join(w[k].thread, NULL);
	close(w[k].control[0]);
	close(w[k].control[1]);
	policyd_unlisten(w + k, nlisteners);
	policy_config_release(&w[k].next);
	policy_config_release(&w[k].srv.pc);
	event_base_free(w[k].srv.base);
    }
    policyd_unlisten(w, nlisteners);
}

static void policyd_run(struct server *srv, const struct daemon_opts *opts)
{
    struct event *sig;
    struct skeleton sk = {0};
    struct timeval ten = {10, 0}, quarter = {0, 250000};
    struct event *ready;
    struct liveness *live;
    int     nlisteners, nworkers = policyd_worker_count(srv->pc->cfg);
    struct ctl_server *ctl;
    struct policyd_worker *w = xcalloc(nworkers, sizeof(*w));

    conn_metrics_init();
    srv->base = event_base_new();
    srv->local = store_memory_create(srv->base);	/* every worker's */
    srv->connections = &policyd_connections;
    /* before the port answers: a signal sent then must not kill us */
    sig = event_new(srv->base, daemon_signal_fd(), EV_READ | EV_PERSIST, policyd_signal, srv);
    skeleton_lock(&sk, srv->pc->cfg);		/* a second start stops here */
    policyd_open(srv, w, nworkers, &nlisteners);
    ctl = ctl_start(srv);			/* while root: chown */
    skeleton_start(&sk, opts, srv->pc->cfg);
    quarantine_notify_init(srv->base, config_get_duration(srv->pc->cfg, "notify_timeout"));
    policyd_listen(w, srv, nlisteners);	/* worker 0: srv itself */
    policyd_workers = w;
    policyd_nworkers = nworkers;
    policyd_nlisteners = nlisteners;
    policyd_workers_start(srv, w, nworkers, nlisteners);
    srv->store = policyd_store(srv);
    event_add(sig, NULL);
    srv->report = event_new(srv->base, -1, EV_PERSIST, policyd_report, srv);
    event_add(srv->report, &ten);
    ready = event_new(srv->base, -1, EV_PERSIST, policyd_ready_sample, srv);
    policyd_ready_sample(-1, 0, srv);
    event_add(ready, &quarter);
    metrics_http_readiness(policyd_ready);
    skeleton_ready(1);
    msg_info("started: %d limits, store %s, %d workers", srv->pc->limits.limit_count,
	     srv->pc->store.text, nworkers);
    live = liveness_worker(srv->base, 0);
    event_base_dispatch(srv->base);
    liveness_unwatch(&live);
    skeleton_ready(0);
    event_free(ready);
    event_free(sig);
    if (srv->drain_ev)
	event_free(srv->drain_ev);
    policyd_workers_stop(w, nworkers, nlisteners);
    event_free(srv->report);
    if (srv->store != srv->local)
	store_destroy(&srv->store);
    store_destroy(&srv->local);
    ctl_stop(&ctl);
    quarantine_notify_shutdown();
    event_base_free(srv->base);
    skeleton_stop(&sk);
    free(w);
}

int     main(int argc, char **argv)
{
    struct daemon_opts opts;
    struct server srv;

    msg_init(argv[0], MSG_STDERR);
    if (argc > 1 && strcmp(argv[1], "ctl") == 0)
	return (ctl_main(argc - 1, argv + 1, SYSCONFDIR "/mxkit/policyd-ratelimit.conf",
			 policyd_specs));
    daemon_parse_args(argc, argv, SYSCONFDIR "/mxkit/policyd-ratelimit.conf", &opts);
    policyd_config_path = opts.config_path;
    memset(&srv, 0, sizeof(srv));
    (void) daemon_nofile_raise();		/* before max_connections is sized */
    if ((srv.pc = policyd_load(opts.config_path)) == NULL)
	return (1);
    if (opts.check_only) {
	printf("%s: configuration OK: %d limits, store %s\n", opts.config_path,
	       srv.pc->limits.limit_count, srv.pc->store.text);
	policy_config_release(&srv.pc);
	return (0);
    }
    daemon_log_init(argv[0], &opts, srv.pc->cfg);
    daemon_config_running(srv.pc->cfg);
    policyd_run(&srv, &opts);
    policy_config_release(&srv.pc);
    return (0);
}
