/*
 * NAME
 *	store_url 3
 * SUMMARY
 *	parse and print "store" URLs without their secrets
 * SYNOPSIS
 *	#include "store.h"
 *
 *	const char *store_url_parse(text, &url)
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
 * .PP
 *	url.text is the URL with the password replaced by "***": the only
 *	form that may be printed (logs, errors, -t). Parse errors never
 *	quote any part of the URL, since a misplaced password could be in
 *	any part.
 * DIAGNOSTICS
 *	NULL, or a static error text.
 */

#include "build_config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "store.h"

/* store_url_number - all digits, min..max; -1 otherwise */

static long store_url_number(const char *text, size_t len, long min, long max)
{
    long    value = 0;

    if (len == 0 || len > 6)
	return (-1);
    for (size_t i = 0; i < len; i++) {
	if (text[i] < '0' || text[i] > '9')
	    return (-1);
	value = value * 10 + (text[i] - '0');
    }
    return (value < min || value > max ? -1 : value);
}

static const char *store_url_credentials(struct store_url *url, const char *text, size_t len)
{
    const char *colon = memchr(text, ':', len);

    if (colon == NULL)
	return ("redis:// credentials must be written as [USER]:PASSWORD@HOST");
    if ((size_t) (colon - text) >= sizeof(url->user)
	|| len - (colon - text) - 1 >= sizeof(url->password))
	return ("redis:// user name or password too long");
    if (colon + 1 == text + len)
	return ("redis:// password is empty");
    memcpy(url->user, text, colon - text);
    memcpy(url->password, colon + 1, len - (colon - text) - 1);
    return (NULL);
}

static const char *store_url_hostport(struct store_url *url, const char *text, size_t len)
{
    const char *port = NULL, *end = text + len;
    size_t  hlen;

    if (len > 0 && text[0] == '[') {		/* [IPv6]:PORT */
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
    if (hlen >= sizeof(url->host))
	return ("redis:// host name too long");
    for (size_t i = 0; i < hlen; i++)
	if ((unsigned char) text[i] <= ' ' || text[i] == '/' || text[i] == '?')
	    return ("redis:// host contains a space, control character or '/'");
    memcpy(url->host, text, hlen);
    url->port = 6379;
    if (port && (url->port = (int) store_url_number(port, end - port, 1, 65535)) < 0)
	return ("redis:// port must be a number 1-65535");
    return (NULL);
}

static const char *store_url_db(struct store_url *url, const char *text)
{
    if (*text && (url->db = (int) store_url_number(text, strlen(text), 0, 15)) < 0)
	return ("redis database must be a number 0-15");
    return (NULL);
}

static const char *store_url_unix(struct store_url *url, const char *text)
{
    const char *query = strchr(text, '?');
    size_t  len = query ? (size_t) (query - text) : strlen(text);
    const char *err;

    if (*text != '/' || len < 2)
	return ("redis+unix:// needs an absolute socket path");
    if (len >= sizeof(url->path))
	return ("redis+unix:// socket path too long");
    memcpy(url->path, text, len);
    if (query) {
	if (strncmp(query, "?db=", 4) != 0 || query[4] == 0)
	    return ("redis+unix:// takes only ?db=DB");
	if ((err = store_url_db(url, query + 4)) != NULL)
	    return (err);
    }
    snprintf(url->text, sizeof(url->text), "redis+unix://%s?db=%d", url->path, url->db);
    return (NULL);
}

static const char *store_url_redis(struct store_url *url, const char *text)
{
    const char *at = strrchr(text, '@'), *slash;
    const char *err;

    if (at && (err = store_url_credentials(url, text, at - text)) != NULL)
	return (err);
    if (at)
	text = at + 1;
    slash = strchr(text, '/');
    if ((err = store_url_hostport(url, text, slash ? (size_t) (slash - text)
				  : strlen(text))) != NULL)
	return (err);
    if (slash && (err = store_url_db(url, slash + 1)) != NULL)
	return (err);
    snprintf(url->text, sizeof(url->text), "redis://%s%s%s%s%s:%d/%d", url->user,
	     url->password[0] ? ":***@" : "", strchr(url->host, ':') ? "[" : "",
	     url->host, strchr(url->host, ':') ? "]" : "", url->port, url->db);
    return (NULL);
}

const char *store_url_parse(const char *text, struct store_url *url)
{
    const char *err;

    memset(url, 0, sizeof(*url));
    if (strcmp(text, "memory") == 0) {
	url->redis = 0;
	snprintf(url->text, sizeof(url->text), "memory");
	return (NULL);
    }
    url->redis = 1;
    if (strncmp(text, "redis+unix://", 13) == 0)
	err = store_url_unix(url, text + 13);
    else if (strncmp(text, "redis://", 8) == 0)
	err = store_url_redis(url, text + 8);
    else
	err = "store must be memory, redis://[[USER]:PASSWORD@]HOST[:PORT][/DB] "
	    "or redis+unix:///PATH[?db=DB]";
    if (err)					/* keep no half-parsed secret */
	memset(url, 0, sizeof(*url));
    return (err);
}
