/*
 * NAME
 *	proxyv2-shim 8
 * SUMMARY
 *	strict PROXY protocol termination in front of mail daemons
 * SYNOPSIS
 *	proxyv2-shim [-c config_file] [-t] [-f] [-v] [-V]
 * DESCRIPTION
 *	Reads proxyv2-shim.conf(5), opens every listener, and serves
 *	them from "workers" threads, each with its own libevent loop and
 *	its own SO_REUSEPORT socket per listener (see session(3) for what
 *	happens to a connection). The open-files limit is raised to its
 *	hard limit: each session holds two sockets and two pipes.
 *
 *	SIGTERM and SIGINT exit. Listener changes need a restart.
 * DIAGNOSTICS
 *	Configuration errors as "file:line: message"; -t prints them all
 *	and exits 1, or exits 0 for a good configuration.
 */

#include "build_config.h"

#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "daemon.h"
#include "metrics_http.h"
#include "msg.h"
#include "shim.h"
#include "xalloc.h"

#ifndef SYSCONFDIR
#define SYSCONFDIR "/etc"
#endif

static const struct config_spec shim_specs[] = {
    {"listener", CONFIG_DIRECTIVE, NULL, CONFIG_REPEAT},
    {"header_timeout", CONFIG_DURATION, "3s", 0},
    {"connect_timeout", CONFIG_DURATION, "5s", 0},
    {"idle_timeout", CONFIG_DURATION, "10m", 0},
    {"max_connections", CONFIG_INT, "10000", 0},
    {"max_header_size", CONFIG_SIZE, "536", 0},
    {"xclient_helo", CONFIG_STRING, "proxyv2-shim", 0},
    {"xclient_name_lookup", CONFIG_BOOL, "yes", 0},
    {"dns_servers", CONFIG_LIST, NULL, 0},
    {"dns_timeout", CONFIG_DURATION, "2s", 0},
    {"log_rejects_per_second", CONFIG_INT, "10", 0},
    {"workers", CONFIG_INT, "0", 0},
    {"metrics_listen", CONFIG_STRING, NULL, 0},
    {"pid_file", CONFIG_STRING, NULL, 0},
    {"user", CONFIG_STRING, NULL, 0},
    {"syslog", CONFIG_BOOL, "no", 0},
    {0},
};

/* shim_load - configuration and listener lines; errors counted in cfg */

static void shim_load(struct server *srv, const char *path)
{
    const struct config_entry *e = NULL;
    long long max_header;
    const char *err;

    srv->cfg = config_read(path, shim_specs);
    if (srv->cfg->error_count)
	return;
    while ((e = config_next(srv->cfg, e, "listener")) != NULL) {
	srv->listeners = xrealloc(srv->listeners, (srv->nlisteners + 1) * sizeof(*srv->listeners));
	if ((err = listener_parse(e->value, &srv->listeners[srv->nlisteners])) != NULL)
	    config_add_error(srv->cfg, e->line, "listener: %s", err);
	else
	    srv->listeners[srv->nlisteners++].srv = srv;
    }
    if (srv->nlisteners == 0 && srv->cfg->error_count == 0)
	config_add_error(srv->cfg, 0, "no listener configured");
    max_header = config_get_size(srv->cfg, "max_header_size");
    if (max_header < 16 + 216 || max_header > PROXY_HEADER_BUF)
	config_add_error(srv->cfg, config_lookup(srv->cfg, "max_header_size")->line,
			 "max_header_size must be between 232 and 65551 bytes");
    srv->v2_max = (size_t) max_header;
    srv->header_timeout_ms = (int) config_get_duration(srv->cfg, "header_timeout");
    srv->connect_timeout_ms = (int) config_get_duration(srv->cfg, "connect_timeout");
    srv->idle_timeout_ms = (int) config_get_duration(srv->cfg, "idle_timeout");
    srv->max_connections = (int) config_get_int(srv->cfg, "max_connections");
    srv->reject_log_rate = (int) config_get_int(srv->cfg, "log_rejects_per_second");
    srv->rejects = xcalloc(1, sizeof(*srv->rejects));
    pthread_mutex_init(&srv->rejects->lock, NULL);
    srv->xclient_helo = config_get_str(srv->cfg, "xclient_helo");
}

/* shim_dns - resolver for XCLIENT NAME, when an xclient listener needs it */

static struct evdns_base *shim_dns(struct server *srv)
{
    const char *servers = config_get_str(srv->cfg, "dns_servers");
    struct evdns_base *dns;
    char    timeout[32];
    char  **list;
    int     n, need = 0;

    for (int i = 0; i < srv->nlisteners; i++)
	need |= srv->listeners[i].mode == SHIM_XCLIENT;
    if (!need || !config_get_bool(srv->cfg, "xclient_name_lookup"))
	return (NULL);
    if ((dns = evdns_base_new(srv->base, 0)) == NULL)
	msg_fatal("cannot create a DNS resolver");
    if (servers && *servers) {
	list = config_split_list(servers, &n);
	for (int i = 0; i < n; i++)
	    if (evdns_base_nameserver_ip_add(dns, list[i]) != 0)
		msg_fatal("dns_servers: bad server \"%s\"", list[i]);
	config_list_free(&list);
    } else if (evdns_base_resolv_conf_parse(dns, DNS_OPTIONS_ALL, "/etc/resolv.conf") != 0) {
	msg_warn("/etc/resolv.conf unusable; client names will be [TEMPUNAVAIL]");
    }
    snprintf(timeout, sizeof(timeout), "%.3f",
	     config_get_duration(srv->cfg, "dns_timeout") / 1000.0);
    evdns_base_set_option(dns, "timeout", timeout);
    evdns_base_set_option(dns, "attempts", "1");
    return (dns);
}

/* shim_tick - report rejected connections the rate limit kept quiet */

static void shim_tick(evutil_socket_t fd, short what, void *context)
{
    session_flush_rejects(context);
}

static void shim_raise_nofile(void)
{
    struct rlimit rl;

    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
	rl.rlim_cur = rl.rlim_max;
	(void) setrlimit(RLIMIT_NOFILE, &rl);
    }
}

/*
 * Workers: one event loop per thread, each with its own listening socket
 * per listener (SO_REUSEPORT), its own resolver and its own sessions, so
 * they share nothing but the read-only configuration. The main thread
 * only waits for signals.
 */
struct shim_worker {
    pthread_t thread;
    struct server srv;
    int    *fds;			/* listening socket per listener */
    int     stop[2];			/* main thread -> worker: exit */
};

static void shim_stop(evutil_socket_t fd, short what, void *context)
{
    event_base_loopbreak(context);
}

/* shim_open - the listening sockets of one worker, before privileges go */

static void shim_open(struct shim_worker *w, const struct server *tmpl, int nworkers)
{
    w->fds = xcalloc(tmpl->nlisteners, sizeof(int));
    for (int i = 0; i < tmpl->nlisteners; i++) {
	const struct shim_listener *lst = &tmpl->listeners[i];

	w->fds[i] = nworkers > 1 ? addr_listen_shared(&lst->listen, 4096)
	    : addr_listen(&lst->listen, 4096, 1);
	if (w->fds[i] < 0)
	    msg_fatal("listener %s: %m", lst->spec);
    }
    if (pipe2(w->stop, O_CLOEXEC) < 0)
	msg_fatal("pipe: %m");
}

static void *shim_worker_run(void *context)
{
    struct shim_worker *w = context;
    struct server *srv = &w->srv;
    struct timeval second = {1, 0};
    struct event *stop, *tick;

    srv->base = event_base_new();
    srv->dns = shim_dns(srv);
    for (int i = 0; i < srv->nlisteners; i++) {
	struct shim_listener *lst = &srv->listeners[i];

	lst->srv = srv;
	lst->evl = evconnlistener_new(srv->base, session_accept, lst,
				      LEV_OPT_CLOSE_ON_FREE | LEV_OPT_CLOSE_ON_EXEC, -1, w->fds[i]);
	if (lst->evl == NULL)
	    msg_fatal("listener %s: cannot watch the socket", lst->spec);
    }
    stop = event_new(srv->base, w->stop[0], EV_READ, shim_stop, srv->base);
    event_add(stop, NULL);
    tick = event_new(srv->base, -1, EV_PERSIST, shim_tick, srv);
    event_add(tick, &second);
    event_base_dispatch(srv->base);
    for (int i = 0; i < srv->nlisteners; i++)
	evconnlistener_free(srv->listeners[i].evl);
    event_free(stop);
    event_free(tick);
    if (srv->dns)
	evdns_base_free(srv->dns, 1);
    event_base_free(srv->base);
    return (NULL);
}

/* shim_workers - each worker gets a copy of the server and listeners */

static struct shim_worker *shim_workers(const struct server *tmpl, int n)
{
    struct shim_worker *w = xcalloc(n, sizeof(*w));

    for (int i = 0; i < n; i++) {
	w[i].srv = *tmpl;
	w[i].srv.listeners = xcalloc(tmpl->nlisteners, sizeof(struct shim_listener));
	memcpy(w[i].srv.listeners, tmpl->listeners,
	       tmpl->nlisteners * sizeof(struct shim_listener));
	w[i].srv.max_connections = (tmpl->max_connections + n - 1) / n;
	shim_open(&w[i], tmpl, n);
    }
    return (w);
}

static int shim_worker_count(const struct server *srv)
{
    long    n = config_get_int(srv->cfg, "workers");

    if (n <= 0)
	n = sysconf(_SC_NPROCESSORS_ONLN);
    return (n < 1 ? 1 : n > 64 ? 64 : (int) n);
}

static void shim_run(struct server *srv, const struct daemon_opts *opts)
{
    const char *pidfile = config_get_str(srv->cfg, "pid_file");
    const char *user = config_get_str(srv->cfg, "user");
    const char *metrics = config_get_str(srv->cfg, "metrics_listen");
    int     nworkers = shim_worker_count(srv), pidfd = -1, sig;
    struct shim_worker *w;
    const char *err;
    sigset_t set;

    shim_raise_nofile();
    /* Matching sorts a CIDR list lazily: sort before threads share it. */
    for (int i = 0; i < srv->nlisteners; i++)
	(void) cidr_list_match_str(srv->listeners[i].trusted, "::");
    (void) proxy_crc32c(0, "", 0);		/* and fill the CRC table */
    session_metrics_init();
    w = shim_workers(srv, nworkers);
    if (!opts->foreground)
	daemon_detach();
    if (metrics && (err = metrics_http_start(metrics)) != NULL)
	msg_fatal("%s", err);
    if (pidfile && (err = daemon_pidfile_write(pidfile, &pidfd)) != NULL)
	msg_fatal("%s", err);
    /* Transparent mode needs CAP_NET_ADMIN after this; see the man page. */
    if (user && (err = daemon_drop_privileges(user)) != NULL)
	msg_fatal("%s", err);
    signal(SIGPIPE, SIG_IGN);
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    pthread_sigmask(SIG_BLOCK, &set, NULL);	/* inherited by the workers */
    for (int i = 0; i < nworkers; i++)
	if (pthread_create(&w[i].thread, NULL, shim_worker_run, &w[i]) != 0)
	    msg_fatal("cannot start worker thread");
    for (int i = 0; i < srv->nlisteners; i++)
	msg_info("listening: %s", srv->listeners[i].spec);
    msg_info("started: %d listeners, %d workers", srv->nlisteners, nworkers);
    sigwait(&set, &sig);
    msg_info("terminating on signal %d", sig);
    for (int i = 0; i < nworkers; i++)
	if (write(w[i].stop[1], "x", 1) < 0)
	    msg_warn("cannot stop worker %d: %m", i);
    for (int i = 0; i < nworkers; i++) {
	pthread_join(w[i].thread, NULL);
	close(w[i].stop[0]);
	close(w[i].stop[1]);
	free(w[i].srv.listeners);
	free(w[i].fds);
    }
    free(w);
    if (pidfile)
	daemon_pidfile_remove(pidfile, &pidfd);
}

int     main(int argc, char **argv)
{
    struct daemon_opts opts;
    struct server srv;
    int     status = 0;

    msg_init(argv[0], MSG_STDERR);
    daemon_parse_args(argc, argv, SYSCONFDIR "/mxkit/proxyv2-shim.conf", &opts);
    memset(&srv, 0, sizeof(srv));
    shim_load(&srv, opts.config_path);
    if (srv.cfg->error_count) {
	config_print_errors(srv.cfg);
	status = 1;
    } else if (opts.check_only) {
	printf("%s: configuration OK: %d listeners\n", opts.config_path, srv.nlisteners);
    } else {
	if (!opts.foreground || config_get_bool(srv.cfg, "syslog"))
	    msg_init(argv[0], (opts.foreground ? MSG_STDERR : 0) | MSG_SYSLOG);
	shim_run(&srv, &opts);
    }
    for (int i = 0; i < srv.nlisteners; i++)
	listener_free(&srv.listeners[i]);
    free(srv.listeners);
    free(srv.rejects);
    config_free(&srv.cfg);
    return (status);
}
