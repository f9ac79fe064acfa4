/*
 * NAME
 *	main_store 3
 * SUMMARY
 *	policyd-ratelimit's start-up checks of where its store is
 * SYNOPSIS
 *	#include "main_store.h"
 *
 *	void	policyd_check_loop(cfg, &url)
 *	void	policyd_check_resolver(cfg, &url)
 *	void	policyd_check_reloadable(cfg, path)
 * DESCRIPTION
 *	policyd_check_loop() refuses a store (or a Sentinel) that is one
 *	of the daemon's own sockets; policyd_check_resolver() checks the
 *	files store host names are looked up in, as the daemon's user;
 *	policyd_check_reloadable() the files every reload reads again.
 *	Both add their errors to cfg (config_add_error()), at the line of
 *	the setting (config_line()), for -t and the start alike.
 */

#include "build_config.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "addr.h"
#include "config.h"
#include "daemon.h"
#include "main_store.h"
#include "store_resolve.h"

/*
 * policyd_store_dest - where the store (or Sentinel i, i >= 0) would be
 * connected to, as an address: a UNIX path, an IP address, or loopback
 * for "localhost" (RFC 6761); 0 for another name (not looked up: DNS
 * may not be up, and a name's addresses may change).
 */
static int policyd_store_dest(const struct store_url *url, int i, int v6, struct addr *addr)
{
    const char *host = i < 0 ? url->host : url->sentinels[i].host;
    int     port = i < 0 ? url->port : url->sentinels[i].port;
    char    spec[ADDR_TEXT_MAX + 300];

    if (i < 0 && url->path[0])
	snprintf(spec, sizeof(spec), "unix:%s", url->path);
    else if (strcasecmp(host, "localhost") == 0 || strcasecmp(host, "localhost.") == 0)
	snprintf(spec, sizeof(spec), v6 ? "[::1]:%d" : "127.0.0.1:%d", port);
    else if (resolve_literal(host))
	snprintf(spec, sizeof(spec), strchr(host, ':') ? "[%s]:%d" : "%s:%d", host, port);
    else
	return (0);
    return (addr_parse(spec, addr) == NULL);
}

static int policyd_store_reaches(const struct store_url *url, int i, const struct addr *own)
{
    struct addr dest;

    for (int v6 = 0; v6 < 2; v6++)		/* "localhost": either */
	if (policyd_store_dest(url, i, v6, &dest) && addr_reaches(&dest, own))
	    return (1);
    return (0);
}

/*
 * policyd_check_loop - the store (or a Sentinel) must not be one of this
 * daemon's own sockets: a listener, metrics_listen or control_socket.
 * It connected to itself, sent its Redis commands as policy requests
 * and logged "malformed attribute" for each. The URL is not quoted (it
 * may hold a password); what it reaches is.
 */
void    policyd_check_loop(struct config *cfg, const struct store_url *url)
{
    const char *names[] = {"listen", "metrics_listen", "control_socket"};
    struct addr own;
    char  **list;
    int     n;

    if (!url->redis)
	return;
    for (int k = 0; k < 3; k++) {
	const char *value = config_get_str(cfg, names[k]);
	char    spec[ADDR_TEXT_MAX + 300];

	if (value == NULL)
	    continue;
	if (k == 2)				/* a path, not an address */
	    snprintf(spec, sizeof(spec), "unix:%s", value);
	list = config_split_list(k == 2 ? spec : value, &n);
	for (int j = 0; j < n; j++) {
	    if (addr_parse(list[j], &own) != NULL)
		continue;			/* said by their own checks */
	    for (int i = url->sentinel ? 0 : -1; i < (url->sentinel ? url->nsentinels : 0); i++)
		if (policyd_store_reaches(url, i, &own))
		    config_add_error(cfg, config_line(cfg, "store"), "store: %s%s is this "
				     "daemon's own %s %s: it would connect to itself and "
				     "send its Redis commands as policy requests",
				     i < 0 ? "the Redis server" : "the Sentinel ",
				     i < 0 ? "" : url->sentinels[i].host, names[k],
				     k == 2 ? value : list[j]);
	}
	config_list_free(&list);
    }
}

static const char *policyd_resolver_check(void *context)
{
    const struct store_url *url = context;

    return (resolve_check(url->resolv_conf[0] ? url->resolv_conf : NULL,
			  url->hosts_file[0] ? url->hosts_file : NULL));
}

/*
 * policyd_check_resolver - where store host names are looked up
 * (store_resolve(3)). The files must be there, readable by "user": each
 * worker reads them after privileges are dropped (a file only root
 * could read passed -t, and no store host name ever resolved). The
 * names need not resolve (DNS may come up after us: the store retries
 * every second).
 */
void    policyd_check_resolver(struct config *cfg, struct store_url *url)
{
    static const char *const keys[] = {"resolv_conf", "hosts_file"};
    char   *dest[] = {url->resolv_conf, url->hosts_file};
    const char *user = config_get_str(cfg, "user");
    const char *err;

    for (int i = 0; i < 2; i++) {
	const char *path = config_get_str(cfg, keys[i]);

	dest[i][0] = 0;
	if (path && (path[0] != '/' || strlen(path) >= sizeof(url->resolv_conf)))
	    config_add_error(cfg, config_line(cfg, keys[i]), "%s must be an absolute path "
			     "shorter than %zu bytes", keys[i], sizeof(url->resolv_conf));
	else if (path)
	    snprintf(dest[i], sizeof(url->resolv_conf), "%s", path);
    }
    if ((url->resolv_conf[0] || url->hosts_file[0])
	&& (err = daemon_as_user(user, policyd_resolver_check, url)) != NULL)
	config_add_error(cfg, config_line(cfg, strncmp(err, "hosts", 5) == 0 ? "hosts_file"
					   : "resolv_conf"), "%s%s%s%s", err,
			 user && geteuid() == 0 ? " (checked as user " : "",
			 user && geteuid() == 0 ? user : "", user && geteuid() == 0
			 ? ": the daemon reads it after dropping privileges)" : "");
}

/* policyd_readable_check - can this process open the file for reading? */

static const char *policyd_readable_check(void *path)
{
    int     fd = open(path, O_RDONLY | O_NONBLOCK | O_NOCTTY | O_CLOEXEC);

    if (fd < 0)
	return (strerror(errno));
    close(fd);
    return (NULL);
}

/*
 * policyd_check_reloadable - every reload (SIGHUP) reads the configuration
 * file and override_file again, as "user": one only root could read
 * passed -t and the start (read as root), and then every reload failed
 * (helper-80). Checked as the user, as milter-dkim checks its own.
 */
void    policyd_check_reloadable(struct config *cfg, const char *path)
{
    const char *user = config_get_str(cfg, "user");
    const char *files[] = {path, config_get_str(cfg, "override_file")};
    const char *err;

    if (user == NULL || geteuid() != 0)
	return;
    for (int i = 0; i < 2; i++)
	if (files[i] && (err = daemon_as_user(user, policyd_readable_check,
					      (void *) files[i])) != NULL)
	    config_add_error(cfg, i ? config_line(cfg, "override_file") : 0,
			     "%s%s%s (checked as user %s: every reload (SIGHUP) reads it "
			     "after dropping privileges)", i ? files[i] : "", i ? ": " : "",
			     err, user);
}

