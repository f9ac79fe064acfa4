/*
 * NAME
 *	store_url 3
 * SUMMARY
 *	parse and print "store" URLs without their secrets
 * SYNOPSIS
 *	#include "store.h"
 *
 *	const char *store_url_parse(text, &url)
 *	const char *store_url_parse_file(text, &url)
 *	const char *store_url_password_file(&url, path)
 *	const char *store_url_read_password(path, buf, size)
 * DESCRIPTION
 *	store_url_parse() parses the whole "store" value when the
 *	configuration is loaded (so -t finds every error the daemon would
 *	otherwise die on or silently misread):
 * .IP \fBmemory\fR
 * .IP \fBredis://\fR[[\fIUSER\fR]\fB:\fIPASSWORD\fB@\fR]\fIHOST\fR[\fB:\fIPORT\fR][\fB/\fIDB\fR]
 *	The credentials end at the last "@", so a password may contain
 *	"@", ":" and "/" as written (no %-decoding). HOST may be an IPv6
 *	address in brackets. PORT is 1-65535 (default 6379), DB 0-15
 *	(Redis' default "databases 16"; default 0).
 * .IP \fBredis+unix://\fIPATH\fR[\fB?db=\fIDB\fR]
 *	PATH must fit a UNIX socket address (sun_path: 107 bytes on
 *	Linux): hiredis cuts a longer one short without a word and would
 *	connect, and send AUTH, to whatever listens at the shorter path.
 * .PP
 *	url.text is the URL with the password replaced by "***": the only
 *	form that may be printed (logs, errors, -t). Parse errors never
 *	quote any part of the URL, since a misplaced password could be in
 *	any part.
 *
 *	store_url_parse_file() is store_url_parse() for a store whose
 *	password is in a file (store_password_file, e.g. a Kubernetes or
 *	Compose secret): the URL then carries no password ("USER:@HOST"
 *	names an ACL user). store_url_password_file() then reads the file
 *	into url.password, and url.text ends in "(password from PATH)".
 *	store_url_read_password() reads such a file: its first line
 *	without the line end ("\n" or "\r\n"); an empty file, a second
 *	line, a NUL byte or more than STORE_PASSWORD_MAX bytes is an
 *	error. The file is read once, at (re)load, while still root; its
 *	content is never printed.
 * DIAGNOSTICS
 *	NULL, or a static error text.
 */

#include "build_config.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <arpa/inet.h>
#include <sys/un.h>
#include <unistd.h>

#include "addr.h"
#include "config.h"
#include "store.h"

/*
 * store_url_credentials - [USER]:PASSWORD before the "@". With a
 * password file, only "USER:" (an ACL user name) may be written there:
 * two passwords would leave the reader guessing which one is used.
 */
static const char *store_url_credentials(struct store_url *url, const char *text, size_t len,
					         int password_file)
{
    const char *colon = memchr(text, ':', len);

    if (colon == NULL)
	return ("redis:// credentials must be written as [USER]:PASSWORD@HOST");
    if ((size_t) (colon - text) >= sizeof(url->user)
	|| len - (colon - text) - 1 >= sizeof(url->password))
	return ("redis:// user name or password too long");
    if (password_file && colon + 1 != text + len)
	return ("the store URL has a password and store_password_file is set: "
		"give the password once (write USER:@HOST for an ACL user)");
    if (password_file && colon == text)
	return ("redis:// credentials \":@\" without a user name: "
		"with store_password_file, write redis://HOST or redis://USER:@HOST");
    if (colon + 1 == text + len && !password_file)
	return ("redis:// password is empty");
    memcpy(url->user, text, colon - text);
    memcpy(url->password, colon + 1, len - (colon - text) - 1);
    return (NULL);
}

/*
 * store_url_hostname - a DNS name (labels of letters, digits, '-' and '_',
 * 1-63 bytes, a trailing dot allowed) or an IPv4 address (which is also
 * one). -t thus refuses a host that no lookup could find, without
 * looking anything up (DNS may not be up yet).
 */
static int store_url_hostname(const char *host, size_t len)
{
    size_t  label = 0;

    if (len > 254 || (len == 254 && host[253] != '.'))
	return (0);
    for (size_t i = 0; i < len; i++) {
	unsigned char c = host[i];

	if (c == '.') {
	    if (label == 0)
		return (0);
	    label = 0;
	} else if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9')
		   || c == '-' || c == '_') {
	    if (++label > 63)
		return (0);
	} else
	    return (0);
    }
    return (1);
}

/*
 * store_url_numeric - a name whose last label is a number (digits, or
 * 0x and hex digits) that is no dotted quad: "127.000.000.001",
 * "0177.0.0.1", "127.1", "2130706433", "0x7f.1". No DNS name ends in a
 * number, and readers disagree on these (libevent read 0177 as decimal
 * 177, inet_aton() and curl as octal 127; the check against the
 * daemon's own sockets compares dotted quads): refused (helper-122: the
 * daemon connected to itself past -t).
 */
static int store_url_numeric(const char *host, size_t len)
{
    const char *last = host, *dot;
    char    copy[256];
    struct in_addr a4;
    size_t  n, whole = len;

    if (len > 0 && host[len - 1] == '.')
	len--;				/* "127.0.0.1.": refused below */
    for (dot = host; (dot = memchr(dot, '.', len - (dot - host))) != NULL; dot++)
	last = dot + 1;
    n = len - (last - host);
    if (n > 2 && last[0] == '0' && (last[1] == 'x' || last[1] == 'X')) {
	if (strspn(last + 2, "0123456789abcdefABCDEF") < n - 2)
	    return (0);			/* "0xcafe-1": a name */
    } else if (n == 0 || strspn(last, "0123456789") < n) {
	return (0);			/* a label with letters: a name */
    }
    if (whole >= sizeof(copy))
	return (1);
    memcpy(copy, host, whole);
    copy[whole] = 0;
    return (inet_pton(AF_INET, copy, &a4) != 1);
}

/* store_url_hostport - HOST[:PORT] or [IPV6][:PORT] into host, *portp */

static const char *store_url_hostport(char *host, size_t hsize, int *portp, int defport,
				              const char *text, size_t len)
{
    const char *port = NULL, *end = text + len;
    int     bracket = len > 0 && text[0] == '[';
    size_t  hlen;

    if (bracket) {		/* [IPv6]:PORT */
	const char *close = memchr(text, ']', len);

	if (close == NULL || (close + 1 < end && close[1] != ':'))
	    return ("redis:// IPv6 host must be written as [ADDRESS]:PORT");
	hlen = close - text - 1;
	text++;
	if (close + 1 < end)
	    port = close + 2;
    } else {
	port = memchr(text, ':', len);
	hlen = port ? (size_t) (port - text) : len;
	if (port)
	    port++;
    }
    if (hlen == 0)
	return ("redis:// URL has no host");
    if (hlen >= hsize)
	return ("redis:// host name too long");
    for (size_t i = 0; i < hlen; i++)
	if ((unsigned char) text[i] <= ' ' || text[i] == '/' || text[i] == '?' || text[i] == ',')
	    return ("redis:// host contains a space, control character, ',' or '/'");
    if (bracket ? memchr(text, ':', hlen) == NULL : !store_url_hostname(text, hlen))
	return ("redis:// host must be a host name (letters, digits, '-', '_', dots), "
		"an IPv4 address or [an IPv6 address]");
    if (!bracket && store_url_numeric(text, hlen))
	return ("redis:// host is a number but no IPv4 address as a.b.c.d (no leading "
		"zeros, four parts): readers disagree on what it names");
    memcpy(host, text, hlen);
    host[hlen] = 0;
    *portp = defport;
    if (port && (*portp = (int) addr_port_number(port, end - port)) < 1)
	return ("redis:// port must be a number 1-65535");
    return (NULL);
}

static const char *store_url_db(struct store_url *url, const char *text)
{
    if (*text && ((url->db = (int) addr_port_number(text, strlen(text))) < 0 || url->db > 15))
	return ("redis database must be a number 0-15");
    return (NULL);
}

static const char *store_url_unix(struct store_url *url, const char *text)
{
    const char *query = strchr(text, '?');
    size_t  len = query ? (size_t) (query - text) : strlen(text);
    static char too_long[100];
    struct sockaddr_un sun;
    const char *err;

    if (*text != '/' || len < 2)
	return ("redis+unix:// needs an absolute socket path");
    /* hiredis copies sizeof(sun_path) - 1 bytes: the rest is cut off */
    if (len >= sizeof(sun.sun_path) || len >= sizeof(url->path)) {
	snprintf(too_long, sizeof(too_long), "redis+unix:// socket path longer than %zu "
		 "bytes (what a UNIX socket address holds)", sizeof(sun.sun_path) - 1);
	return (too_long);
    }
    memcpy(url->path, text, len);
    if (query) {
	if (strncmp(query, "?db=", 4) != 0 || query[4] == 0)
	    return ("redis+unix:// takes only ?db=DB");
	if ((err = store_url_db(url, query + 4)) != NULL)
	    return (err);
    }
    return (NULL);
}

static const char *store_url_redis(struct store_url *url, const char *text, int password_file)
{
    const char *at = strrchr(text, '@'), *slash;
    const char *err;

    if (at && (err = store_url_credentials(url, text, at - text, password_file)) != NULL)
	return (err);
    if (at)
	text = at + 1;
    slash = strchr(text, '/');
    if ((err = store_url_hostport(url->host, sizeof(url->host), &url->port, 6379, text,
				  slash ? (size_t) (slash - text) : strlen(text))) != NULL)
	return (err);
    if (slash && (err = store_url_db(url, slash + 1)) != NULL)
	return (err);
    return (NULL);
}

/* store_url_master - a Sentinel master name, as sentinel.conf takes it */

static const char *store_url_master(struct store_url *url, const char *text, size_t len)
{
    if (len == 0)
	return ("redis-sentinel:// needs /MASTERNAME after the Sentinels");
    if (len >= sizeof(url->master))
	return ("redis-sentinel:// master name too long");
    if (strspn(text, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-") < len)
	return ("redis-sentinel:// master name may have only letters, digits, '.', '_', '-'");
    memcpy(url->master, text, len);
    return (NULL);
}

/*
 * store_url_sentinel - [[USER]:PASSWORD@]HOST[:PORT][,HOST[:PORT]...]/
 * MASTERNAME[/DB]: the credentials are the Redis master's (Sentinel's
 * own password is sentinel_password_file).
 */
static const char *store_url_sentinel(struct store_url *url, const char *text,
				              int password_file)
{
    const char *at = strrchr(text, '@'), *slash, *comma, *name;
    const char *err;

    if (at && (err = store_url_credentials(url, text, at - text, password_file)) != NULL)
	return (err);
    if (at)
	text = at + 1;
    if ((slash = strchr(text, '/')) == NULL)
	return ("redis-sentinel:// needs /MASTERNAME after the Sentinels");
    for (const char *cp = text;; cp = comma + 1) {
	struct store_host *h = url->sentinels + url->nsentinels;

	if ((comma = memchr(cp, ',', slash - cp)) == NULL)
	    comma = slash;
	if (url->nsentinels == STORE_SENTINELS_MAX)
	    return ("redis-sentinel:// takes at most 16 Sentinels");
	if ((err = store_url_hostport(h->host, sizeof(h->host), &h->port, 26379, cp,
				      comma - cp)) != NULL)
	    return (err);
	url->nsentinels++;
	if (comma == slash)
	    break;
    }
    name = slash + 1;
    slash = strchr(name, '/');
    if ((err = store_url_master(url, name, slash ? (size_t) (slash - name) : strlen(name))) != NULL)
	return (err);
    if (slash && (err = store_url_db(url, slash + 1)) != NULL)
	return (err);
    url->sentinel = 1;
    return (NULL);
}

static void store_url_format_sentinel(struct store_url *url)
{
    size_t  len;

    snprintf(url->text, sizeof(url->text), "redis-sentinel://%s%s", url->user,
	     url->password[0] ? ":***@" : url->user[0] ? "@" : "");
    for (int i = 0; i < url->nsentinels; i++) {
	const struct store_host *h = url->sentinels + i;

	len = strlen(url->text);
	snprintf(url->text + len, sizeof(url->text) - len, "%s%s%s%s:%d", i ? "," : "",
		 strchr(h->host, ':') ? "[" : "", h->host, strchr(h->host, ':') ? "]" : "",
		 h->port);
    }
    len = strlen(url->text);
    snprintf(url->text + len, sizeof(url->text) - len, "/%s/%d", url->master, url->db);
}

/* store_url_format - the printable form: the password is "***" */

static void store_url_format(struct store_url *url)
{
    size_t  len;

    if (url->path[0])
	snprintf(url->text, sizeof(url->text), "redis+unix://%s?db=%d", url->path, url->db);
    else
	snprintf(url->text, sizeof(url->text), "redis://%s%s%s%s%s:%d/%d", url->user,
		 url->password[0] ? ":***@" : url->user[0] ? "@" : "",
		 strchr(url->host, ':') ? "[" : "", url->host,
		 strchr(url->host, ':') ? "]" : "", url->port, url->db);
    if (url->sentinel)
	store_url_format_sentinel(url);
    len = strlen(url->text);
    if (url->password_file[0])
	snprintf(url->text + len, sizeof(url->text) - len, " (password from %s)",
		 url->password_file);
}

static const char *store_url_parse_text(const char *text, struct store_url *url,
					        int password_file)
{
    const char *err;

    memset(url, 0, sizeof(*url));
    if (strcmp(text, "memory") == 0) {
	url->redis = 0;
	snprintf(url->text, sizeof(url->text), "memory");
	return (NULL);
    }
    url->redis = 1;
    if (text[0] == '"' || text[0] == '\'')	/* the scheme error would mislead */
	err = ADDR_QUOTED;
    else if (strncmp(text, "redis+unix://", 13) == 0)
	err = store_url_unix(url, text + 13);
    else if (strncmp(text, "redis://", 8) == 0)
	err = store_url_redis(url, text + 8, password_file);
    else if (strncmp(text, "redis-sentinel://", 17) == 0)
	err = store_url_sentinel(url, text + 17, password_file);
    else
	err = "store must be memory, redis://[[USER]:PASSWORD@]HOST[:PORT][/DB], "
	    "redis+unix:///PATH[?db=DB] or redis-sentinel://HOST[:PORT][,...]/MASTERNAME[/DB]";
    if (err)					/* keep no half-parsed secret */
	memset(url, 0, sizeof(*url));
    else
	store_url_format(url);
    return (err);
}

const char *store_url_parse(const char *text, struct store_url *url)
{
    return (store_url_parse_text(text, url, 0));
}

/*
 * store_url_read_password - the first line of path, without its line
 * end; errors name the file, never its content.
 */
const char *store_url_read_password(const char *path, char *buf, size_t size)
{
    static char err[STORE_URL_ERROR_MAX];
    char    data[STORE_PASSWORD_MAX + 3];
    const char *result;
    ssize_t len;
    const char *why;
    int     fd;

    if ((fd = config_open_regular(path, &why)) < 0) {
	snprintf(err, sizeof(err), "cannot open %.300s: %s", path, why);
	return (err);
    }
    len = read(fd, data, sizeof(data));		/* more than a password may be */
    if (len < 0)
	snprintf(err, sizeof(err), "cannot read %.300s: %s", path, strerror(errno));
    close(fd);
    if (len < 0)
	return (err);
    if (len > 0 && data[len - 1] == '\n')	/* the line end editors and echo add */
	len--;
    if (len > 0 && data[len - 1] == '\r')
	len--;
    result = err;
    if (len == 0)
	snprintf(err, sizeof(err), "%.300s is empty", path);
    else if ((size_t) len >= size || len > STORE_PASSWORD_MAX)
	snprintf(err, sizeof(err), "%.300s: the password is longer than %d bytes", path,
		 STORE_PASSWORD_MAX);
    else if (memchr(data, '\n', len) || memchr(data, '\r', len) || memchr(data, 0, len))
	snprintf(err, sizeof(err), "%.300s: more than one line, or a NUL byte: "
		 "the file must hold the password alone", path);
    else {
	memcpy(buf, data, len);
	buf[len] = 0;
	result = NULL;
    }
    explicit_bzero(data, sizeof(data));
    return (result);
}

/*
 * store_url_parse_file - the store URL of a store whose password is in
 * a file (store_password_file: Kubernetes and Compose secrets); the URL
 * must not have one of its own. store_url_password_file() reads it.
 */
const char *store_url_parse_file(const char *text, struct store_url *url)
{
    const char *err;

    if ((err = store_url_parse_text(text, url, 1)) != NULL)
	return (err);
    if (!url->redis) {
	memset(url, 0, sizeof(*url));
	return ("store_password_file is set, but the store is memory");
    }
    return (NULL);
}

const char *store_url_password_file(struct store_url *url, const char *path)
{
    const char *err;

    if (strlen(path) >= sizeof(url->password_file))
	return ("path too long");
    if ((err = store_url_read_password(path, url->password, sizeof(url->password))) != NULL)
	return (err);
    snprintf(url->password_file, sizeof(url->password_file), "%s", path);
    store_url_format(url);
    return (NULL);
}
