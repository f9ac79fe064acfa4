/*
 * NAME
 *	proxyv2-shim 8
 * SUMMARY
 *	strict PROXY protocol termination in front of mail daemons
 * SYNOPSIS
 *	proxyv2-shim [-c config_file] [-t] [-f] [-v] [-V]
 * DESCRIPTION
 *	Reads proxyv2-shim.conf(5), opens every listener, and serves
 *	them from one libevent loop (see session(3) for what happens to
 *	a connection). The open-files limit is raised to its hard limit:
 *	each session holds two sockets and two pipes.
 *
 *	SIGTERM and SIGINT exit. Listener changes need a restart.
 * DIAGNOSTICS
 *	Configuration errors as "file:line: message"; -t prints them all
 *	and exits 1, or exits 0 for a good configuration.
 */

#include "build_config.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "daemon.h"
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

static void shim_signal(evutil_socket_t sig, short what, void *context)
{
    struct server *srv = context;

    msg_info("terminating on signal %d", (int) sig);
    event_base_loopbreak(srv->base);
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

static void shim_listen(struct server *srv)
{
    for (int i = 0; i < srv->nlisteners; i++) {
	struct shim_listener *lst = &srv->listeners[i];
	int     fd = addr_listen(&lst->listen, 4096, 1);

	if (fd < 0)
	    msg_fatal("listener %s: %m", lst->spec);
	lst->evl = evconnlistener_new(srv->base, session_accept, lst,
				      LEV_OPT_CLOSE_ON_FREE | LEV_OPT_CLOSE_ON_EXEC, -1, fd);
	if (lst->evl == NULL)
	    msg_fatal("listener %s: cannot watch the socket", lst->spec);
	msg_info("listening: %s", lst->spec);
    }
}

static void shim_run(struct server *srv, const struct daemon_opts *opts)
{
    static const int signals[] = {SIGTERM, SIGINT};
    const char *pidfile = config_get_str(srv->cfg, "pid_file");
    const char *user = config_get_str(srv->cfg, "user");
    struct event *sig[2], *tick;
    struct timeval second = {1, 0};
    const char *err;
    int     pidfd = -1;

    shim_raise_nofile();
    srv->base = event_base_new();
    srv->dns = shim_dns(srv);
    shim_listen(srv);
    if (!opts->foreground)
	daemon_detach();
    if (pidfile && (err = daemon_pidfile_write(pidfile, &pidfd)) != NULL)
	msg_fatal("%s", err);
    /* Transparent mode needs CAP_NET_ADMIN after this; see the man page. */
    if (user && (err = daemon_drop_privileges(user)) != NULL)
	msg_fatal("%s", err);
    signal(SIGPIPE, SIG_IGN);
    for (int i = 0; i < 2; i++) {
	sig[i] = evsignal_new(srv->base, signals[i], shim_signal, srv);
	evsignal_add(sig[i], NULL);
    }
    tick = event_new(srv->base, -1, EV_PERSIST, shim_tick, srv);
    event_add(tick, &second);
    msg_info("started: %d listeners", srv->nlisteners);
    event_base_dispatch(srv->base);
    event_free(tick);
    for (int i = 0; i < 2; i++)
	event_free(sig[i]);
    for (int i = 0; i < srv->nlisteners; i++)
	listener_free(&srv->listeners[i]);
    if (srv->dns)
	evdns_base_free(srv->dns, 1);
    event_base_free(srv->base);
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
    config_free(&srv.cfg);
    return (status);
}
