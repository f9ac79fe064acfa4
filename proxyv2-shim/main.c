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
 *	hard limit: each session holds two sockets and two pipes (six
 *	descriptors), and max_connections must fit (see
 *	daemon_config(3)). Out of descriptors anyway, accept() pauses
 *	instead of spinning (skeleton(3)).
 *
 *	SIGTERM and SIGINT stop accepting at once (the listening sockets
 *	are shut down: new clients are refused) and let the sessions open
 *	go on until they end by themselves; the daemon exits 0 when none is
 *	left, or when drain_timeout has passed (the rest are cut), or at a
 *	second SIGTERM (skeleton_drain(3)). SIGUSR1 is logged and ignored. SIGHUP
 *	rereads the configuration: each worker takes the new trusted
 *	networks, backends, timeouts and limits between two events of
 *	its loop, and the old ones are freed once every worker has let
 *	go of them. A listener's address or mode cannot change (the
 *	reload is refused); the workers, the resolver settings,
 *	metrics_listen, user, syslog and pid_file change only with a
 *	restart, and a reload that changes them says so.
 * DIAGNOSTICS
 *	Configuration errors as "file:line: message"; -t prints them all
 *	and exits 1, or exits 0 for a good configuration. A failed reload
 *	logs the errors and keeps the running configuration.
 */

#include "build_config.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/resource.h>
#include <unistd.h>

#include <event2/util.h>

#include "daemon.h"
#include "metrics.h"
#include "liveness.h"
#include "metrics_http.h"
#include "msg.h"
#include "shim.h"
#include "skeleton.h"
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
    {"unknown_clients", CONFIG_STRING, "unavailable", 0},
    {"xclient_name_lookup", CONFIG_BOOL, "yes", CONFIG_RESTART},
    {"dns_servers", CONFIG_LIST, NULL, CONFIG_RESTART},
    {"dns_timeout", CONFIG_DURATION, "2s", CONFIG_RESTART},
    {"log_rejects_per_second", CONFIG_INT, "10", 0},
    {"workers", CONFIG_INT, "0", CONFIG_RESTART},
    DAEMON_DRAIN_SPECS,
    DAEMON_CONFIG_SPECS,
    {0},
};

/*
 * Every number the daemon uses, with the range in which it means
 * something: 0 for a timeout or max_connections would refuse or drop
 * every connection, and -t must say so instead of "OK".
 */
static const struct shim_range {
    const char *name;
    int     duration;			/* else a plain integer */
    long long min;
    long long max;
    const char *range;
}       shim_ranges[] = {
    {"header_timeout", 1, 1, 60000, "between 1ms and 60s"},
    {"connect_timeout", 1, 1, 300000, "between 1ms and 5m"},
    {"idle_timeout", 1, 1000, 86400000, "between 1s and 24h"},
    {"dns_timeout", 1, 1, 60000, "between 1ms and 60s"},
    {"max_connections", 0, 1, 1000000, "between 1 and 1000000"},
    {"log_rejects_per_second", 0, 0, 1000000, "between 0 and 1000000"},
    {"workers", 0, 0, 64, "between 0 (one per CPU) and 64"},
    {0},
};


/*
 * shim_check_hostname - an EHLO argument: a host name (labels of 1 to 63
 * letters, digits, '-' or '_', no '-' at either end) or an address
 * literal as RFC 5321 writes it: [192.0.2.1] or [IPv6:2001:db8::1].
 * Postfix's reject_invalid_helo_hostname refuses anything else.
 */
static int shim_check_hostname(const char *name)
{
    size_t  len = strlen(name), label = 0, digits = 0;
    unsigned char bin[16];
    char    literal[64];

    if (len == 0 || len > 255)
	return (0);
    if (name[0] == '[') {
	if (len < 3 || name[len - 1] != ']' || len - 2 >= sizeof(literal))
	    return (0);
	memcpy(literal, name + 1, len - 2);
	literal[len - 2] = 0;
	if (strncasecmp(literal, "IPv6:", 5) == 0)
	    return (inet_pton(AF_INET6, literal + 5, bin) == 1);
	return (inet_pton(AF_INET, literal, bin) == 1);
    }
    for (size_t i = 0; i <= len; i++) {
	if (name[i] == '.' || name[i] == 0) {
	    /* an all-digit last label: an address without its brackets
	     * (1.2.3.4), which Postfix's valid_hostname() refuses */
	    if (label == 0 || label > 63 || name[i - 1] == '-' || (name[i] == 0 && digits == label))
		return (0);
	    label = digits = 0;
	} else if (isalnum((unsigned char) name[i]) || name[i] == '_'
		   || (name[i] == '-' && label > 0)) {
	    digits += isdigit((unsigned char) name[i]) != 0;
	    label++;
	} else
	    return (0);
    }
    return (1);
}

/* shim_same_socket - would A and B (a wildcard counts) be one socket? */

static int shim_same_socket(const struct addr *a, const struct addr *b)
{
    if (a->family != b->family || a->family == AF_UNIX
	|| addr_port(&a->u.sa) != addr_port(&b->u.sa))
	return (0);
    if (a->family == AF_INET)
	return (a->u.in.sin_addr.s_addr == htonl(INADDR_ANY)
		|| b->u.in.sin_addr.s_addr == htonl(INADDR_ANY)
		|| a->u.in.sin_addr.s_addr == b->u.in.sin_addr.s_addr);
    return (IN6_IS_ADDR_UNSPECIFIED(&a->u.in6.sin6_addr)
	    || IN6_IS_ADDR_UNSPECIFIED(&b->u.in6.sin6_addr)
	    || IN6_ARE_ADDR_EQUAL(&a->u.in6.sin6_addr, &b->u.in6.sin6_addr));
}

/*
 * shim_check_listeners - two listeners on one address cannot both work
 * (one worker: bind fails at start; several: SO_REUSEPORT splits the
 * connections between them); a backend that is a listener loops.
 */
static void shim_check_listeners(struct server *srv)
{
    char    text[ADDR_TEXT_MAX];

    for (int i = 0; i < srv->nlisteners; i++) {
	const struct shim_listener *a = &srv->listeners[i];

	if (a->dead_trusted)			/* said at start, by -t and by a reload */
	    msg_warn("%s:%d: listener: %s", srv->cfg->path, a->line, a->dead_trusted);
	if (a->wide_trusted)
	    msg_warn("%s:%d: listener: %s", srv->cfg->path, a->line, a->wide_trusted);
	for (int j = 0; j < i; j++)
	    if (shim_same_socket(&a->listen, &srv->listeners[j].listen))
		config_add_error(srv->cfg, a->line, "listener %s overlaps the listener at "
				 "line %d: one address and port, one listener",
				 addr_format(&a->listen.u.sa, text, sizeof(text)),
				 srv->listeners[j].line);
	for (int j = 0; j < srv->nlisteners; j++)
	    if (addr_reaches(&a->backend, &srv->listeners[j].listen))
		config_add_error(srv->cfg, a->line, "backend %s is the listener at line %d: "
				 "connections would loop",
				 addr_format(&a->backend.u.sa, text, sizeof(text)),
				 srv->listeners[j].line);
    }
}

static int shim_worker_count(const struct server *);

/* shim_check_metrics - metrics_listen is not a listener's address */

static void shim_check_metrics(struct server *srv)
{
    for (int i = 0; i < srv->nlisteners; i++)	/* one at a time: pairs are above */
	daemon_config_addresses(srv->cfg, &(struct daemon_address) {.name = "listener",
				.spec = srv->listeners[i].spec, .line = srv->listeners[i].line,
				.addr = &srv->listeners[i].listen}, 1);
}

/*
 * shim_check_transparent - transparent mode binds each backend connection
 * to the client's address (IP_TRANSPARENT), which needs CAP_NET_ADMIN
 * for as long as the daemon runs; "user" gives every capability up at
 * the start: -t said OK and every session then failed.
 */
static void shim_check_transparent(struct server *srv)
{
    const char *user = config_get_str(srv->cfg, "user");

    for (int i = 0; user != NULL && i < srv->nlisteners; i++)
	if (srv->listeners[i].mode == SHIM_TRANSPARENT)
	    config_add_error(srv->cfg, srv->listeners[i].line, "mode=transparent needs "
			     "CAP_NET_ADMIN in every session, which user = %s gives up: "
			     "run this listener as root, or use mode=xclient or proxy-v2",
			     user);
}

/* shim_check - every value main() and the workers will use, now */

static void shim_check(struct server *srv)
{
    const char *servers = config_get_str(srv->cfg, "dns_servers");
    const char *unknown = config_get_str(srv->cfg, "unknown_clients");
    const char *helo = config_get_str(srv->cfg, "xclient_helo");
    char  **list;
    int     n;

    for (const struct shim_range *r = shim_ranges; r->name; r++) {
	long long v = r->duration ? config_get_duration(srv->cfg, r->name)
	    : config_get_int(srv->cfg, r->name);

	if (v < r->min || v > r->max)
	    config_add_error(srv->cfg, config_line(srv->cfg, r->name), "%s must be %s",
			     r->name, r->range);
    }
    list = config_split_list(servers ? servers : "", &n);
    for (int i = 0; i < n; i++) {
	union addr_sockaddr sa;
	int     len = sizeof(sa);

	/* the form evdns_base_nameserver_ip_add() takes */
	if (evutil_parse_sockaddr_port(list[i], &sa.sa, &len) != 0)
	    config_add_error(srv->cfg, config_line(srv->cfg, "dns_servers"),
			     "dns_servers: \"%s\" is not an address[:port]", list[i]);
    }
    config_list_free(&list);
    if (strcmp(unknown, "unavailable") == 0)
	srv->unknown_clients = SHIM_UNKNOWN_UNAVAILABLE;
    else if (strcmp(unknown, "refuse") == 0)
	srv->unknown_clients = SHIM_UNKNOWN_REFUSE;
    else
	config_add_error(srv->cfg, config_line(srv->cfg, "unknown_clients"),
			 "unknown_clients must be unavailable or refuse");
    if (!shim_check_hostname(helo))
	config_add_error(srv->cfg, config_line(srv->cfg, "xclient_helo"),
			 "xclient_helo must be a host name or an [address]");
    shim_check_listeners(srv);
    shim_check_metrics(srv);
    shim_check_transparent(srv);
    daemon_config_check(srv->cfg);
    if (srv->max_connections >= 1 && srv->cfg->error_count == 0)
	srv->max_connections = (int) daemon_config_connections(srv->cfg, "max_connections",
							SHIM_FDS_PER_SESSION, SHIM_FD_RESERVE
			       + shim_worker_count(srv) * (srv->nlisteners + 4));
}

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
	else {
	    srv->listeners[srv->nlisteners].line = e->line;
	    srv->listeners[srv->nlisteners++].srv = srv;
	}
    }
    if (srv->nlisteners == 0 && srv->cfg->error_count == 0)
	config_add_error(srv->cfg, 0, "no listener configured");
    max_header = config_get_size(srv->cfg, "max_header_size");
    if (max_header < 16 + 216 || max_header > PROXY_HEADER_BUF)
	config_add_error(srv->cfg, config_line(srv->cfg, "max_header_size"),
			 "max_header_size must be between 232 and 65551 bytes");
    srv->v2_max = (size_t) max_header;
    srv->header_timeout_ms = (int) config_get_duration(srv->cfg, "header_timeout");
    srv->connect_timeout_ms = (int) config_get_duration(srv->cfg, "connect_timeout");
    srv->dns_timeout_ms = (int) config_get_duration(srv->cfg, "dns_timeout");
    srv->idle_timeout_ms = (int) config_get_duration(srv->cfg, "idle_timeout");
    srv->max_connections = (int) config_get_int(srv->cfg, "max_connections");
    srv->reject_log_rate = (int) config_get_int(srv->cfg, "log_rejects_per_second");
    srv->rejects = xcalloc(1, sizeof(*srv->rejects));
    pthread_mutex_init(&srv->rejects->lock, NULL);
    srv->xclient_helo = config_get_str(srv->cfg, "xclient_helo");
    shim_check(srv);
}

/* shim_free - what shim_load() made */

static void shim_free(struct server *srv)
{
    for (int i = 0; i < srv->nlisteners; i++)
	listener_free(&srv->listeners[i]);
    free(srv->listeners);
    free(srv->rejects);
    config_free(&srv->cfg);
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

/*
 * shim_tick - report rejected connections the rate limit kept quiet; and
 * an open-files limit lowered under the daemon (prlimit) is seen within
 * a second even with no client coming, so that the next is left in the
 * backlog rather than accepted and dropped (helper-118)
 */
static void shim_tick(evutil_socket_t fd, short what, void *context)
{
    struct server *srv = context;

    session_flush_rejects(srv);
    if (!srv->draining && !session_files_room(1))
	session_files_hold(srv);
}

/*
 * Workers: one event loop per thread, each with its own listening socket
 * per listener (SO_REUSEPORT), its own resolver and its own sessions, so
 * they share nothing but the read-only configuration and the count of
 * open sessions that max_connections limits. The main thread
 * only waits for signals.
 */
struct shim_worker {
    pthread_t thread;
    struct server srv;
    int    *fds;			/* listening socket per listener */
    int     control[2];		/* main thread -> worker: a command */
    int     index;
};

/*
 * A reload in progress: the main thread publishes the new server, sends
 * every worker SHIM_CMD_RELOAD, and waits until all of them have
 * copied it before freeing what they used before.
 */
#define SHIM_CMD_STOP	'x'
#define SHIM_CMD_RELOAD	'r'
#define SHIM_CMD_DRAIN	'd'

static struct {
    pthread_mutex_t lock;
    pthread_cond_t done;
    const struct server *next;
    int     applied;
}       shim_reload_state = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, NULL, 0};

/* shim_apply - in a worker: take the reloaded settings */

static void shim_apply(struct server *srv, const struct server *next)
{
    for (int i = 0; i < srv->nlisteners; i++) {
	struct shim_listener *lst = &srv->listeners[i];
	const struct shim_listener *new = &next->listeners[i];

	lst->spec = new->spec;
	lst->backend = new->backend;
	lst->trusted = new->trusted;
	lst->header_timeout_ms = new->header_timeout_ms;
	lst->mark = new->mark;
    }
    srv->cfg = next->cfg;
    srv->header_timeout_ms = next->header_timeout_ms;
    srv->connect_timeout_ms = next->connect_timeout_ms;
    srv->idle_timeout_ms = next->idle_timeout_ms;
    srv->max_connections = next->max_connections;	/* one count: session.c */
    srv->v2_max = next->v2_max;
    srv->xclient_helo = next->xclient_helo;
    srv->unknown_clients = next->unknown_clients;
    srv->reject_log_rate = next->reject_log_rate;
}

/*
 * shim_drain_worker - a stop's drain: accept no more (the socket is shut
 * down, so the kernel refuses new clients rather than queueing them);
 * the sessions open go on until they end or shim_run() stops the loop.
 */
static void shim_drain_worker(struct server *srv)
{
    srv->draining = 1;
    for (int i = 0; i < srv->nlisteners; i++) {
	evconnlistener_disable(srv->listeners[i].evl);
	(void) shutdown(evconnlistener_get_fd(srv->listeners[i].evl), SHUT_RDWR);
    }
    session_files_unpark_all(srv, "stopping while it waited for descriptors");
}

static void shim_control(evutil_socket_t fd, short what, void *context)
{
    struct server *srv = context;
    char    cmd;

    if (read(fd, &cmd, 1) != 1 || cmd == SHIM_CMD_STOP) {
	event_base_loopbreak(srv->base);
	return;
    }
    if (cmd == SHIM_CMD_DRAIN) {
	shim_drain_worker(srv);
	return;
    }
    pthread_mutex_lock(&shim_reload_state.lock);
    shim_apply(srv, shim_reload_state.next);
    shim_reload_state.applied++;
    pthread_cond_signal(&shim_reload_state.done);
    pthread_mutex_unlock(&shim_reload_state.lock);
}

/* shim_open - the listening sockets of one worker, before privileges go */

static void shim_open(struct shim_worker *w, const struct server *tmpl, int nworkers,
		              int first)
{
    w->fds = xcalloc(tmpl->nlisteners, sizeof(int));
    for (int i = 0; i < tmpl->nlisteners; i++) {
	const struct shim_listener *lst = &tmpl->listeners[i];

	w->fds[i] = nworkers > 1 ? addr_listen_shared(&lst->listen, 4096, first)
	    : addr_listen(&lst->listen, 4096, 1);
	if (w->fds[i] < 0)
	    msg_fatal("listener %s: %m", lst->spec);
    }
    if (pipe2(w->control, O_CLOEXEC) < 0)
	msg_fatal("pipe: %m");
}

static void *shim_worker_run(void *context)
{
    struct shim_worker *w = context;
    struct server *srv = &w->srv;
    struct timeval second = {1, 0};
    struct event *control, *tick;
    struct liveness *live;

    srv->base = event_base_new();
    srv->dns = shim_dns(srv);
    for (int i = 0; i < srv->nlisteners; i++) {
	struct shim_listener *lst = &srv->listeners[i];

	lst->srv = srv;
	/* backlog 0: already listening; -1 would listen() again with 128 */
	lst->evl = evconnlistener_new(srv->base, session_accept, lst,
				      LEV_OPT_CLOSE_ON_FREE | LEV_OPT_CLOSE_ON_EXEC, 0, w->fds[i]);
	if (lst->evl == NULL)
	    msg_fatal("listener %s: cannot watch the socket", lst->spec);
	skeleton_listener_guard(lst->evl);
    }
    control = event_new(srv->base, w->control[0], EV_READ | EV_PERSIST, shim_control, srv);
    event_add(control, NULL);
    tick = event_new(srv->base, -1, EV_PERSIST, shim_tick, srv);
    event_add(tick, &second);
    live = liveness_worker(srv->base, w->index);
    event_base_dispatch(srv->base);
    liveness_unwatch(&live);
    for (int i = 0; i < srv->nlisteners; i++)
	evconnlistener_free(srv->listeners[i].evl);
    event_free(control);
    event_free(tick);
    session_files_unpark_all(srv, "stopping while it waited for descriptors");
    if (srv->files_hold)
	event_free(srv->files_hold);
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
	w[i].index = i;
	w[i].srv = *tmpl;
	w[i].srv.listeners = xcalloc(tmpl->nlisteners, sizeof(struct shim_listener));
	memcpy(w[i].srv.listeners, tmpl->listeners,
	       tmpl->nlisteners * sizeof(struct shim_listener));
	shim_open(&w[i], tmpl, n, i == 0);
    }
    return (w);
}

/*
 * shim_workers_running - the workers a running daemon has: "workers"
 * needs a restart, so a reload's descriptor budget is reckoned with
 * these (helper-130: workers = 64 in a reload, not applied, made its
 * check fail and the reload's other settings were dropped).
 */
static int shim_workers_running;

static int shim_worker_count(const struct server *srv)
{
    long    n = config_get_int(srv->cfg, "workers");

    if (shim_workers_running > 0)
	return (shim_workers_running);

    if (n == 0)				/* shim_check(): 0..64 */
	n = sysconf(_SC_NPROCESSORS_ONLN);
    return (n < 1 ? 1 : n > 64 ? 64 : (int) n);
}

/* shim_reload_conflict - what keeps NEXT from replacing SRV in place */

static const char *shim_reload_conflict(const struct server *srv, const struct server *next)
{
    char    old_addr[128], new_addr[128];

    if (next->nlisteners != srv->nlisteners)
	return ("listeners added or removed");
    for (int i = 0; i < srv->nlisteners; i++) {
	addr_format(&srv->listeners[i].listen.u.sa, old_addr, sizeof(old_addr));
	addr_format(&next->listeners[i].listen.u.sa, new_addr, sizeof(new_addr));
	if (strcmp(old_addr, new_addr) != 0)
	    return ("a listener's address changed");
	if (srv->listeners[i].mode != next->listeners[i].mode)
	    return ("a listener's mode changed");
    }
    return (NULL);
}

/* shim_reload_swap - the template takes NEXT, NEXT the template's old */

static void shim_reload_swap(struct server *srv, struct server *next)
{
    struct server old = *srv;
    struct shim_rejects *unused = next->rejects;

    *srv = *next;
    srv->rejects = old.rejects;		/* the workers share this one */
    for (int i = 0; i < srv->nlisteners; i++)
	srv->listeners[i].srv = srv;
    *next = old;
    next->rejects = unused;
}

/*
 * shim_reload - SIGHUP: read the configuration again; hand the new one
 * to every worker, and free the old one once all of them took it.
 */
static void shim_reload(struct server *srv, const char *path, struct shim_worker *w, int n)
{
    struct server next;
    const char *why = NULL;

    memset(&next, 0, sizeof(next));
    shim_load(&next, path);
    if (next.cfg->error_count == 0 && (why = shim_reload_conflict(srv, &next)) != NULL)
	config_add_error(next.cfg, 0, "%s: that needs a restart", why);
    if (next.cfg->error_count) {
	config_print_errors(next.cfg);
	msg_error("reload of %s failed; keeping the previous configuration", path);
	metrics_config_reload(0);
    } else {
	(void) daemon_config_reload(next.cfg);
	for (int i = 0; i < next.nlisteners; i++)	/* sorted before sharing */
	    (void) cidr_list_match_str(next.listeners[i].trusted, "::");
	pthread_mutex_lock(&shim_reload_state.lock);
	shim_reload_state.next = &next;
	shim_reload_state.applied = 0;
	for (int i = 0; i < n; i++)
	    if (write(w[i].control[1], (char[]) {SHIM_CMD_RELOAD}, 1) != 1)
		msg_fatal("cannot reach worker %d: %m", i);
	while (shim_reload_state.applied < n)
	    pthread_cond_wait(&shim_reload_state.done, &shim_reload_state.lock);
	shim_reload_state.next = NULL;
	pthread_mutex_unlock(&shim_reload_state.lock);
	shim_reload_swap(srv, &next);	/* next now holds the old */
	metrics_config_reload(1);
	msg_info("configuration reloaded: %d listeners", srv->nlisteners);
    }
    shim_free(&next);
}

/* shim_workers_tell - one command to every worker */

static void shim_workers_tell(struct shim_worker *w, int n, char cmd)
{
    for (int i = 0; i < n; i++)
	if (write(w[i].control[1], &cmd, 1) < 0)
	    msg_warn("cannot reach worker %d: %m", i);
}

/*
 * shim_drain - a stop signal: the workers stop accepting, and the relayed
 * sessions go on until none is left, drain_timeout passes, or a second
 * stop signal comes (skeleton_drain(3)); then the caller stops the loops.
 */
static void shim_drain(struct server *srv, struct shim_worker *w, int n, const sigset_t *set,
		               int sig)
{
    long long drain_ms = skeleton_drain_ms(srv->cfg);
    long long until = daemon_mono_ms() + drain_ms, left;

    if (skeleton_stopping(sig, drain_ms) != SKELETON_DRAIN)
	return;
    shim_workers_tell(w, n, SHIM_CMD_DRAIN);
    while (session_open_count() > 0 && (left = until - daemon_mono_ms()) > 0) {
	if ((sig = skeleton_signal_wait_ms(set, left < 100 ? left : 100)) == 0)
	    continue;				/* look at the count again */
	if (daemon_signal_action(sig) == DAEMON_STOP) {
	    (void) skeleton_stopping(sig, drain_ms);
	    return;
	}
	msg_info("signal %d: ignored while stopping", sig);
    }
    skeleton_drained(session_open_count(), drain_ms);
}

static void shim_run(struct server *srv, const struct daemon_opts *opts)
{
    int     nworkers = shim_worker_count(srv), sig, action, rc;
    struct shim_worker *w;
    struct skeleton sk = {0};
    sigset_t set;

    /* Matching sorts a CIDR list lazily: sort before threads share it. */
    for (int i = 0; i < srv->nlisteners; i++)
	(void) cidr_list_match_str(srv->listeners[i].trusted, "::");
    (void) proxy_crc32c(0, "", 0);		/* and fill the CRC table */
    session_metrics_init();
    /* before the ports answer; inherited by the workers */
    daemon_signal_block(&set);
    skeleton_lock(&sk, srv->cfg);		/* a second start stops here */
    w = shim_workers(srv, nworkers);
    shim_workers_running = nworkers;
    /* Transparent mode needs CAP_NET_ADMIN after this; see the man page. */
    skeleton_start(&sk, opts, srv->cfg);
    for (int i = 0; i < nworkers; i++)
	if ((rc = pthread_create(&w[i].thread, NULL, shim_worker_run, &w[i])) != 0)
	    msg_fatal("cannot start worker thread: %s", strerror(rc));
    for (int i = 0; i < srv->nlisteners; i++)
	msg_info("listening: %s", srv->listeners[i].spec);
    skeleton_ready(1);			/* every listener bound */
    msg_info("started: %d listeners, %d workers", srv->nlisteners, nworkers);
    while ((action = daemon_signal_action(sig = daemon_signal_wait(&set))) != DAEMON_STOP) {
	if (action == DAEMON_RELOAD)
	    shim_reload(srv, opts->config_path, w, nworkers);
	else
	    msg_info("signal %d: nothing to flush", sig);
    }
    shim_drain(srv, w, nworkers, &set, sig);
    shim_workers_tell(w, nworkers, SHIM_CMD_STOP);
    for (int i = 0; i < nworkers; i++) {
	pthread_join(w[i].thread, NULL);
	close(w[i].control[0]);
	close(w[i].control[1]);
	free(w[i].srv.listeners);
	free(w[i].fds);
    }
    free(w);
    skeleton_stop(&sk);
}

int     main(int argc, char **argv)
{
    struct daemon_opts opts;
    struct server srv;
    int     status = 0;

    msg_init(argv[0], MSG_STDERR);
    daemon_parse_args(argc, argv, SYSCONFDIR "/mxkit/proxyv2-shim.conf", &opts);
    memset(&srv, 0, sizeof(srv));
    (void) daemon_nofile_raise();		/* before max_connections is sized */
    shim_load(&srv, opts.config_path);
    if (srv.cfg->error_count) {
	config_print_errors(srv.cfg);
	status = 1;
    } else if (opts.check_only) {
	printf("%s: configuration OK: %d listeners\n", opts.config_path, srv.nlisteners);
    } else {
	daemon_log_init(argv[0], &opts, srv.cfg);
	daemon_config_running(srv.cfg);
	shim_run(&srv, &opts);
    }
    shim_free(&srv);
    return (status);
}
