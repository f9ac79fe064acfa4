/*
 * NAME
 *	policyd-ratelimit 8
 * SUMMARY
 *	Postfix policy service for rate limits
 * SYNOPSIS
 *	policyd-ratelimit [-c config_file] [-t] [-f] [-v] [-V]
 * DESCRIPTION
 *	Loads the configuration (policyd-ratelimit.conf(5)), listens on
 *	every "listen" address and answers Postfix policy requests on
 *	libevent, keeping GCRA state in memory or in Redis.
 *
 *	SIGHUP reloads the configuration and override_file; connections
 *	stay open and the next request uses the new limits. A broken new
 *	configuration is refused (errors logged) and the old one stays.
 *	SIGTERM and SIGINT exit.
 * DIAGNOSTICS
 *	Configuration errors as "file:line: message"; -t prints them all
 *	and exits 1, or exits 0 for a good configuration.
 */

#include "build_config.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "addr.h"
#include "conn.h"
#include "daemon.h"
#include "metrics.h"
#include "metrics_http.h"
#include "msg.h"
#include "xalloc.h"

#ifndef SYSCONFDIR
#define SYSCONFDIR "/etc"
#endif

static const struct config_spec policyd_specs[] = {
    {"listen", CONFIG_LIST, "inet:127.0.0.1:10031", 0},
    {"store", CONFIG_STRING, "memory", 0},
    {"on_store_error", CONFIG_STRING, "open", 0},
    {"deadline", CONFIG_DURATION, "100ms", 0},
    {"defer_reply", CONFIG_STRING,
    "450 4.7.1 Rate limit {limit} exceeded for {key}; retry in {retry_after}s", 0},
    {"reject_reply", CONFIG_STRING, "550 5.7.1 Rate limit {limit} exceeded for {key}", 0},
    {"store_error_reply", CONFIG_STRING,
    "451 4.3.0 Rate limit service unavailable; try again later", 0},
    {"idle_timeout", CONFIG_DURATION, "1000s", 0},
    {"max_connections", CONFIG_INT, "10000", 0},
    {"override_file", CONFIG_STRING, NULL, 0},
    {"pid_file", CONFIG_STRING, NULL, 0},
    {"user", CONFIG_STRING, NULL, 0},
    {"syslog", CONFIG_BOOL, "no", 0},
    {"metrics_listen", CONFIG_STRING, NULL, 0},
    {"limit", CONFIG_DIRECTIVE, NULL, CONFIG_REPEAT},
    {"override", CONFIG_DIRECTIVE, NULL, CONFIG_REPEAT},
    {"exempt", CONFIG_DIRECTIVE, NULL, CONFIG_REPEAT},
    {0},
};

static const struct config_spec override_specs[] = {
    {"override", CONFIG_DIRECTIVE, NULL, CONFIG_REPEAT},
    {"exempt", CONFIG_DIRECTIVE, NULL, CONFIG_REPEAT},
    {0},
};

static const char *policyd_config_path;

static void policyd_check_reply(struct config *cfg, const char *name, char first)
{
    const struct config_entry *entry = config_lookup(cfg, name);
    const char *text = config_get_str(cfg, name);

    if (text[0] != first || text[1] < '0' || text[1] > '9' || text[2] < '0'
	|| text[2] > '9' || text[3] != ' ')
	config_add_error(cfg, entry ? entry->line : 0,
			 "%s must start with a %cXX SMTP code and a space", name, first);
    /* a mistyped placeholder would reach every client as written */
    for (const char *cp = strchr(text, '{'); cp; cp = strchr(cp + 1, '{')) {
	static const char *const known[] = {"{limit}", "{key}", "{retry_after}", "{rate}",
	"{count}", 0};
	int     i;

	for (i = 0; known[i] && strncmp(cp, known[i], strlen(known[i])) != 0; i++)
	     /* void */ ;
	if (known[i] == 0 || strcmp(name, "store_error_reply") == 0) {
	    config_add_error(cfg, entry ? entry->line : 0, "%s: unknown placeholder at "
			     "\"%.20s\" (%s)", name, cp, known[i] ? "store_error_reply "
			     "is sent as written" : "use {limit}, {key}, {retry_after}, "
			     "{rate}, {count}");
	    break;
	}
    }
}

static int policyd_line(struct config *cfg, const char *name)
{
    const struct config_entry *entry = config_lookup(cfg, name);

    return (entry ? entry->line : 0);
}

/* policyd_check_range - a number the daemon could not run with is an error */

static void policyd_check_range(struct config *cfg, const char *name, long long value,
				        long long min, long long max, const char *unit)
{
    if (value < min || value > max)
	config_add_error(cfg, policyd_line(cfg, name), "%s must be %lld%s to %lld%s",
			 name, min, unit, max, unit);
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
    const char *err;

    if (strcmp(mode, "open") != 0 && strcmp(mode, "closed") != 0)
	config_add_error(cfg, policyd_line(cfg, "on_store_error"),
			 "on_store_error must be open or closed");
    if ((err = store_url_parse(config_get_str(cfg, "store"), &pc->store)) != NULL)
	config_add_error(cfg, policyd_line(cfg, "store"), "store: %s", err);
    policyd_check_reply(cfg, "defer_reply", '4');
    policyd_check_reply(cfg, "reject_reply", '5');
    policyd_check_reply(cfg, "store_error_reply", '4');
    pc->deadline_ms = config_get_duration(cfg, "deadline");
    policyd_check_range(cfg, "deadline", pc->deadline_ms, 1, 60000, "ms");
    pc->idle_timeout_ms = config_get_duration(cfg, "idle_timeout");
    policyd_check_range(cfg, "idle_timeout", pc->idle_timeout_ms, 1000, 86400000LL, "ms");
    pc->max_connections = config_get_int(cfg, "max_connections");
    policyd_check_range(cfg, "max_connections", pc->max_connections, 1, 1000000, "");
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
    }
    if (pc->cfg->error_count) {
	config_print_errors(pc->cfg);
	policy_config_release(&pc);
	return (NULL);
    }
    return (pc);
}

static void policyd_reload(struct server *srv)
{
    struct policy_config *pc = policyd_load(policyd_config_path);

    if (pc == NULL) {
	metrics_config_reload(0);
	msg_error("reload of %s failed; keeping the previous configuration",
		  policyd_config_path);
	return;
    }
    metrics_config_reload(1);
    if (strcmp(config_get_str(pc->cfg, "store"), config_get_str(srv->pc->cfg, "store")) != 0
    || strcmp(config_get_str(pc->cfg, "listen"), config_get_str(srv->pc->cfg, "listen")) != 0)
	msg_warn("store and listen changes take effect only after a restart");
    policy_config_release(&srv->pc);
    srv->pc = pc;
    msg_info("configuration reloaded: %d limits", pc->limits.limit_count);
}

static void policyd_signal(evutil_socket_t sig, short what, void *context)
{
    struct server *srv = context;

    if (sig == SIGHUP) {
	policyd_reload(srv);
	return;
    }
    msg_info("terminating on signal %d", (int) sig);
    event_base_loopbreak(srv->base);
}

static void policyd_report(evutil_socket_t fd, short what, void *context)
{
    struct server *srv = context;

    if (srv->store_errors)
	msg_warn("store %s: %lld requests answered by on_store_error = %s in the last 10s"
		 " (last error: %s)", srv->store->kind, srv->store_errors,
		 srv->pc->fail_open ? "open" : "closed",
		 srv->store->error[0] ? srv->store->error : "unknown");
    srv->store_errors = 0;
    srv->store->error[0] = 0;
}

static void policyd_listen(struct server *srv, struct evconnlistener ***out, int *count)
{
    int     n;
    char  **list = config_split_list(config_get_str(srv->pc->cfg, "listen"), &n);
    struct addr addr;
    const char *err;
    int     fd;

    *out = xcalloc(n + 1, sizeof(**out));
    for (int i = 0; i < n; i++) {
	if ((err = addr_parse(list[i], &addr)) != NULL)
	    msg_fatal("listen %s: %s", list[i], err);
	if ((fd = addr_listen(&addr, 1024, 1)) < 0)
	    msg_fatal("listen %s: %m", list[i]);
	(*out)[i] = evconnlistener_new(srv->base, conn_accept, srv,
				       LEV_OPT_CLOSE_ON_FREE, -1, fd);
	msg_info("listening on %s", list[i]);
    }
    *count = n;
    config_list_free(&list);
}

static struct store *policyd_store(struct server *srv)
{
    if (!srv->pc->store.redis)
	return (srv->local);
    return (store_redis_create(srv->base, &srv->pc->store));
}

static void policyd_run(struct server *srv, const struct daemon_opts *opts)
{
    struct evconnlistener **listeners;
    struct event *sig[3];
    static const int signals[] = {SIGHUP, SIGTERM, SIGINT};
    const char *pidfile = config_get_str(srv->pc->cfg, "pid_file");
    const char *user = config_get_str(srv->pc->cfg, "user");
    const char *metrics = config_get_str(srv->pc->cfg, "metrics_listen");
    const char *err;
    struct timeval ten = {10, 0};
    int     nlisteners, pidfd = -1;

    conn_metrics_init();
    srv->base = event_base_new();
    srv->local = store_memory_create(srv->base);
    policyd_listen(srv, &listeners, &nlisteners);
    if (!opts->foreground)
	daemon_detach();
    /* after the fork (threads do not survive it), before privileges go */
    if (metrics && (err = metrics_http_start(metrics)) != NULL)
	msg_fatal("%s", err);
    if (pidfile && (err = daemon_pidfile_write(pidfile, &pidfd)) != NULL)
	msg_fatal("%s", err);
    if (user && (err = daemon_drop_privileges(user)) != NULL)
	msg_fatal("%s", err);
    srv->store = policyd_store(srv);
    signal(SIGPIPE, SIG_IGN);
    for (int i = 0; i < 3; i++) {
	sig[i] = evsignal_new(srv->base, signals[i], policyd_signal, srv);
	evsignal_add(sig[i], NULL);
    }
    srv->report = event_new(srv->base, -1, EV_PERSIST, policyd_report, srv);
    event_add(srv->report, &ten);
    msg_info("started: %d limits, store %s", srv->pc->limits.limit_count, srv->pc->store.text);
    event_base_dispatch(srv->base);
    for (int i = 0; i < 3; i++)
	event_free(sig[i]);
    for (int i = 0; i < nlisteners; i++)
	evconnlistener_free(listeners[i]);
    free(listeners);
    event_free(srv->report);
    if (srv->store != srv->local)
	store_destroy(&srv->store);
    store_destroy(&srv->local);
    event_base_free(srv->base);
    if (pidfile)
	daemon_pidfile_remove(pidfile, &pidfd);
}

int     main(int argc, char **argv)
{
    struct daemon_opts opts;
    struct server srv;

    msg_init(argv[0], MSG_STDERR);
    daemon_parse_args(argc, argv, SYSCONFDIR "/mxkit/policyd-ratelimit.conf", &opts);
    policyd_config_path = opts.config_path;
    memset(&srv, 0, sizeof(srv));
    if ((srv.pc = policyd_load(opts.config_path)) == NULL)
	return (1);
    if (opts.check_only) {
	printf("%s: configuration OK: %d limits\n", opts.config_path,
	       srv.pc->limits.limit_count);
	policy_config_release(&srv.pc);
	return (0);
    }
    if (!opts.foreground || srv.pc->syslog)
	msg_init(argv[0], (opts.foreground ? MSG_STDERR : 0) | MSG_SYSLOG);
    policyd_run(&srv, &opts);
    policy_config_release(&srv.pc);
    return (0);
}
