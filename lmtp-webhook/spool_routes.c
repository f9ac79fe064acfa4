/*
 * NAME
 *	spool_routes 3
 * SUMMARY
 *	lmtp-webhook-spool check-routes: the routes as Dovecot will read them
 * SYNOPSIS
 *	#include "spool_tool.h"
 *
 *	int	tool_check_routes(dovecot_conf)
 * DESCRIPTION
 *	tool_check_routes() runs "doveconf -P -n" (-c dovecot_conf unless
 *	NULL) and checks each lmtp_webhook_route, route2, ... of every
 *	plugin {} block it prints, before Dovecot reads them.
 *
 *	Dovecot expands %-variables in plugin settings before the plugin
 *	sees them, so a URL's percent-encoding ("pa%3Ass" for "pa:ss")
 *	either stops every lmtp process (a Fatal line quoting the whole
 *	URL, password and token) or silently becomes another URL ("%40s"
 *	is the service's name, padded). A single '%' is an error here
 *	("%%" is the way to write one); the route is named, never quoted:
 *	what follows the '%' is most often a password. What is left, its
 *	"%%" made '%', is read by route_parse() as the plugin will.
 *	doveconf prints the settings unexpanded, and with -P the URL's
 *	user and password, which it would hide. A route the plugin never
 *	reads (lmtp_webhook_route3 with no route2, lmtp_webhook_route1) is
 *	an error, judged by route_unread(), the plugin's own rule: it was
 *	called OK, and the plugin tempfailed its recipients. A route's
 *	secret_file= readable by every user is said (a warning).
 * DIAGNOSTICS
 *	One line per error on stderr; 0 when every route is good, 1 when
 *	one is not or doveconf fails.
 */

#include "build_config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <openssl/crypto.h>

#include "msg.h"
#include "route.h"
#include "sign.h"
#include "spool_tool.h"
#include "xalloc.h"

/* spool_routes_open - doveconf -P -n [-c conf], its output to read */

static FILE *spool_routes_open(const char *conf, pid_t *pid)
{
    char   *args[] = {"doveconf", "-P", "-n", conf ? "-c" : NULL, (char *) conf, NULL};
    int     fds[2];
    FILE   *fp;
    if (pipe(fds) < 0 || (*pid = fork()) < 0)
	msg_fatal("doveconf: %m");
    if (*pid == 0) {
	(void) dup2(fds[1], 1);
	close(fds[0]);
	close(fds[1]);
	execvp(args[0], args);
	msg_fatal("exec doveconf: %m");
    }
    close(fds[1]);
    if ((fp = fdopen(fds[0], "r")) == NULL)
	msg_fatal("fdopen: %m");
    return (fp);
}

/*
 * spool_routes_one - one route's value: 0, or -1 with the error logged.
 * Neither message quotes the value (a password, a token).
 */
static int spool_routes_one(const char *name, const char *value)
{
    char   *plain = xmalloc(strlen(value) + 1), *o = plain;
    struct webhook_route route;
    const char *err;
    struct stat st;

    for (const char *p = value; *p; p++) {
	if (*p == '%' && p[1] == '%') {
	    *o++ = *p++;
	    continue;
	}
	if (*p == '%') {
	    msg_error("%s: a single '%%' (byte %ld of the value): Dovecot expands it "
		      "before the plugin reads the route; write each '%%' of the URL "
		      "(percent-encoding) as '%%%%'", name, (long) (p - value) + 1);
	    free(plain);
	    return (-1);
	}
	*o++ = *p;
    }
    *o = 0;
    err = route_parse(plain, &route);
    free(plain);
    if (err != NULL) {
	msg_error("%s: %s", name, err);
	return (-1);
    }
    for (int i = 0; i < route.secret_count; i++) {	/* said, as for secret_file */
	struct webhook_key key;
	const char *weak;

	if (stat(route.secret_files[i], &st) == 0 && (st.st_mode & S_IROTH))
	    msg_warn("%s: secret_file %s is readable by every user (mode %04o): chmod o-r "
		     "(0640, group vmail)", name, route.secret_files[i],
		     (unsigned) (st.st_mode & 07777));
	if (sign_key_load(route.secret_files[i], &key) == NULL
	    && (weak = sign_key_weak(&key)) != NULL)
	    msg_warn("%s: secret_file %s: %s", name, route.secret_files[i], weak);
	OPENSSL_cleanse(&key, sizeof(key));
    }
    route_free(&route);
    return (0);
}

/*
 * spool_routes_file - a route given as "<path": Dovecot reads the file
 * (its last newline dropped) and expands what it reads, so that is what
 * is checked. NULL, logged, when the file cannot be read.
 */
static char *spool_routes_file(const char *name, const char *path)
{
    FILE   *fp = fopen(path + strspn(path, " \t"), "r");
    char   *text = NULL;
    size_t  size = 0;
    ssize_t len;

    if (fp == NULL) {
	msg_error("%s: cannot read the file it names: %m", name);
	return (NULL);
    }
    len = getdelim(&text, &size, 0, fp);	/* the whole file */
    fclose(fp);
    if (len < 0) {
	free(text);
	return (xstrdup(""));
    }
    if (len > 0 && text[len - 1] == '\n')
	text[--len] = 0;
    return (text);
}

/* spool_routes_check - one setting: the value, or the file it names */

static int spool_routes_check(const char *name, const char *value)
{
    char   *text;
    int     rc;

    if (*value != '<')
	return (spool_routes_one(name, value));
    if ((text = spool_routes_file(name, value + 1)) == NULL)
	return (-1);
    rc = spool_routes_one(name, text);
    explicit_bzero(text, strlen(text));		/* a password, a token */
    free(text);
    return (rc);
}

/* spool_routes_setting - "NAME = VALUE" of a route, else 0 */

static int spool_routes_setting(char *line, char **name, char **value)
{
    char   *eq;

    line += strspn(line, " \t");
    if (strncmp(line, "lmtp_webhook_route", 18) != 0 || (eq = strstr(line, " = ")) == NULL)
	return (0);
    *eq = 0;
    if (strspn(line + 18, "0123456789") != strlen(line + 18))
	return (0);
    *name = line;
    *value = eq + 3;
    (*value)[strcspn(*value, "\n")] = 0;
    return (1);
}

static void spool_routes_free(char **names, char **values, int count)
{
    for (int i = 0; i < count; i++) {
	explicit_bzero(values[i], strlen(values[i]));	/* a password, a token */
	free(values[i]);
	free(names[i]);
    }
    free(names);
    free(values);
}

/*
 * spool_routes_read - the route settings of every plugin {} block doveconf
 * prints (taken together: a protocol lmtp {} block's add to the global
 * one), names and values in *names and *values; their count, or -1 when
 * doveconf fails. An empty value is a route not set, as for the plugin.
 */
static int spool_routes_read(const char *conf, char ***names, char ***values)
{
    char   *line = NULL, *name, *value;
    size_t  size = 0;
    int     depth = 0, plugin_depth = 0, count = 0, status;
    pid_t   pid;
    FILE   *fp = spool_routes_open(conf, &pid);

    *names = *values = NULL;
    while (getline(&line, &size, fp) > 0) {
	size_t  len = strcspn(line, "\n");

	if (len > 0 && line[len - 1] == '{') {
	    depth++;
	    if (plugin_depth == 0 && strncmp(line + strspn(line, " \t"), "plugin {", 8) == 0)
		plugin_depth = depth;
	} else if (strcspn(line + strspn(line, " \t"), "\n") == 1
		   && line[strspn(line, " \t")] == '}') {
	    if (depth-- == plugin_depth)
		plugin_depth = 0;
	} else if (plugin_depth > 0 && spool_routes_setting(line, &name, &value) && *value) {
	    *names = xrealloc(*names, (count + 1) * sizeof(char *));
	    *values = xrealloc(*values, (count + 1) * sizeof(char *));
	    (*names)[count] = xstrdup(name);
	    (*values)[count++] = xstrdup(value);
	}
    }
    free(line);
    fclose(fp);
    if (waitpid(pid, &status, 0) < 0 || !WIFEXITED(status) || WEXITSTATUS(status) != 0) {
	spool_routes_free(*names, *values, count);
	*names = *values = NULL;
	count = -1;
    }
    return (count);
}

int     tool_check_routes(const char *conf)
{
    char  **names, **values, why[512];
    int     count, bad = 0;
    unsigned int next;

    /*
     * doveconf skips an !include_try file it cannot read, in silence: the
     * root-only file routes are best kept in would go unchecked, and
     * "OK" said of routes never seen.
     */
    if (geteuid() != 0) {
	msg_error("check-routes must run as root: doveconf skips the files it cannot "
		  "read (the root-only file the routes are best kept in)");
	return (1);
    }
    if ((count = spool_routes_read(conf, &names, &values)) >= 0) {
	/* read up to the first not set, as the plugin reads them */
	next = route_next((const char *const *) names, (size_t) count);
	for (int i = 0; i < count; i++)
	    if (route_unread(names[i], next, why, sizeof(why)) != NULL) {
		msg_error("%s", why);
		bad++;
	    } else {
		bad += spool_routes_check(names[i], values[i]) < 0;
	    }
    }
    spool_routes_free(names, values, count);
    if (count < 0) {
	msg_error("doveconf failed: the routes were not checked");
	return (1);
    }
    if (bad == 0)
	printf("%d route(s) OK\n", count);
    return (bad > 0);
}
