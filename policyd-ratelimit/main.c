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
 *	deadline, on_store_error, idle_timeout and max_connections. A
 *	broken new configuration is refused (errors logged) and the old
 *	one stays. listen, store, store_password_file (and the password
 *	read from it at start), pid_file, user, syslog and
 *	metrics_listen need a restart: a reload that changes them says
 *	so and keeps the running values. SIGTERM and SIGINT exit;
 *	SIGUSR1 is logged and ignored.
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

#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "addr.h"
#include "conn.h"
#include "ctl.h"
#include "daemon.h"
#include "metrics.h"
#include "metrics_http.h"
#include "msg.h"
#include "quarantine.h"
#include "skeleton.h"
#include "xalloc.h"

#ifndef SYSCONFDIR
#define SYSCONFDIR "/etc"
#endif

static const struct config_spec policyd_specs[] = {
    {"listen", CONFIG_LIST, "inet:127.0.0.1:10031", CONFIG_RESTART},
    {"store", CONFIG_STRING, "memory", CONFIG_RESTART},
    {"store_password_file", CONFIG_STRING, NULL, CONFIG_RESTART},
    {"sentinel_password_file", CONFIG_STRING, NULL, CONFIG_RESTART},
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
    {"limit", CONFIG_DIRECTIVE, NULL, CONFIG_REPEAT},
    {"override", CONFIG_DIRECTIVE, NULL, CONFIG_REPEAT},
    {"exempt", CONFIG_DIRECTIVE, NULL, CONFIG_REPEAT},
    CTL_CONFIG_SPECS,
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

/* policyd_check_listen - the addresses can all be bound at once */

static void policyd_check_listen(struct config *cfg)
{
    const struct config_entry *entry = config_lookup(cfg, "listen");
    struct daemon_address *addrs;
    char  **list;
    int     n;

    list = config_split_list(config_get_str(cfg, "listen"), &n);
    addrs = xcalloc(n + 1, sizeof(*addrs));
    for (int i = 0; i < n; i++)
	addrs[i] = (struct daemon_address) {.name = "listen", .spec = list[i],
	    .line = entry ? entry->line : 0};
    daemon_config_addresses(cfg, addrs, n);
    free(addrs);
    config_list_free(&list);
}

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

/* The configuration in force while a reload reads the next one. */
static const struct policy_config *policyd_running;

static int policyd_same(const char *a, const char *b)
{
    return (a && b ? strcmp(a, b) == 0 : a == b);
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
	return;
    }
    if ((err = file ? store_url_parse_file(text, url) : store_url_parse(text, url)) != NULL)
	config_add_error(cfg, policyd_line(cfg, "store"), "store: %s", err);
    else if (file && (err = store_url_password_file(url, file)) != NULL)
	config_add_error(cfg, policyd_line(cfg, "store_password_file"),
			 "store_password_file: %s", err);
    if (sfile && err == NULL && !url->sentinel)
	config_add_error(cfg, policyd_line(cfg, "sentinel_password_file"),
			 "sentinel_password_file is set, but the store is not redis-sentinel://");
    else if (sfile && err == NULL && (err = store_url_read_password(sfile,
		  url->sentinel_password, sizeof(url->sentinel_password))) != NULL)
	config_add_error(cfg, policyd_line(cfg, "sentinel_password_file"),
			 "sentinel_password_file: %s", err);
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
	config_add_error(cfg, policyd_line(cfg, "on_store_error"),
			 "on_store_error must be open or closed");
    policyd_check_store(cfg, &pc->store);
    policyd_check_reply(cfg, "defer_reply", '4');
    policyd_check_reply(cfg, "reject_reply", '5');
    policyd_check_reply(cfg, "store_error_reply", '4');
    pc->deadline_ms = config_get_duration(cfg, "deadline");
    policyd_check_range(cfg, "deadline", pc->deadline_ms, 1, 60000, "ms");
    pc->idle_timeout_ms = config_get_duration(cfg, "idle_timeout");
    policyd_check_range(cfg, "idle_timeout", pc->idle_timeout_ms, 1000, 86400000LL, "ms");
    pc->max_connections = config_get_int(cfg, "max_connections");
    policyd_check_range(cfg, "max_connections", pc->max_connections, 1, 1000000, "");
    if (pc->max_connections >= 1)		/* and what fits the descriptors */
	pc->max_connections = daemon_config_connections(cfg, "max_connections", 1,
							POLICYD_FD_RESERVE);
    daemon_config_check(cfg);
    ctl_config_check(cfg);
    policyd_check_listen(cfg);
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
    struct policy_config *pc;

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
    msg_info("configuration reloaded: %d limits", pc->limits.limit_count);
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
	    msg_info("terminating on signal %d", sig);
	    event_base_loopbreak(srv->base);
	    return;
	default:
	    msg_info("signal %d: nothing to flush", sig);
	    break;
	}
    }
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
	/* backlog 0: already listening; -1 would listen() again with 128 */
	if (((*out)[i] = evconnlistener_new(srv->base, conn_accept, srv,
					    LEV_OPT_CLOSE_ON_FREE, 0, fd)) == NULL)
	    msg_fatal("listen %s: cannot watch the socket", list[i]);
	skeleton_listener_guard((*out)[i]);
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
    struct event *sig;
    struct skeleton sk;
    struct timeval ten = {10, 0}, quarter = {0, 250000};
    struct event *ready;
    int     nlisteners;
    struct ctl_server *ctl;

    conn_metrics_init();
    srv->base = event_base_new();
    srv->local = store_memory_create(srv->base);
    /* before the port answers: a signal sent then must not kill us */
    sig = event_new(srv->base, daemon_signal_fd(), EV_READ | EV_PERSIST, policyd_signal, srv);
    policyd_listen(srv, &listeners, &nlisteners);
    ctl = ctl_start(srv);			/* while root: chown */
    skeleton_start(&sk, opts, srv->pc->cfg);
    quarantine_notify_init(srv->base, config_get_duration(srv->pc->cfg, "notify_timeout"));
    srv->store = policyd_store(srv);
    event_add(sig, NULL);
    srv->report = event_new(srv->base, -1, EV_PERSIST, policyd_report, srv);
    event_add(srv->report, &ten);
    ready = event_new(srv->base, -1, EV_PERSIST, policyd_ready_sample, srv);
    policyd_ready_sample(-1, 0, srv);
    event_add(ready, &quarter);
    metrics_http_readiness(policyd_ready);
    metrics_http_serving(1);
    msg_info("started: %d limits, store %s", srv->pc->limits.limit_count, srv->pc->store.text);
    event_base_dispatch(srv->base);
    metrics_http_serving(0);
    event_free(ready);
    event_free(sig);
    for (int i = 0; i < nlisteners; i++)
	evconnlistener_free(listeners[i]);
    free(listeners);
    event_free(srv->report);
    if (srv->store != srv->local)
	store_destroy(&srv->store);
    store_destroy(&srv->local);
    ctl_stop(&ctl);
    quarantine_notify_shutdown();
    event_base_free(srv->base);
    skeleton_stop(&sk);
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
