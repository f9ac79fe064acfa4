/*
 * NAME
 *	route 3
 * SUMMARY
 *	recipient patterns and webhook URL templates
 * SYNOPSIS
 *	#include "route.h"
 *
 *	const char *route_parse(value, &route)
 *	char	*route_setting_name(n, buf, size)
 *	unsigned route_next(names, count)
 *	const char *route_unread(name, next, buf, size)
 *	int	route_match(&route, address, &url, &workspace)
 *	int	route_could_match(value, address)
 *	void	route_free(&route)
 *	size_t	route_detail_cut(localpart, delimiters)
 *	size_t	route_detail_before(localpart, delimiters, end)
 *	char	*route_url_redact(url)
 * DESCRIPTION
 *	route_parse() reads an lmtp_webhook_route setting, "PATTERN URL
 *	[OPTION...]":
 *	PATTERN is an address in which each '*' captures one or more
 *	letters, digits, '-' or '_' (never '.', '@' or anything a URL
 *	gives meaning to: a capture lands in the URL's host name, and
 *	"bills@evil.com#.planapulse.app" must not route anywhere). What
 *	follows a '*' must be a character it cannot capture, so matching
 *	is linear and never ambiguous;
 *	URL is http:// or https:// (the scheme in any case, kept lowered)
 *	with {1}..{9} standing for captures.
 *	OPTIONs: secret_file=/ABSOLUTE/PATH, once or twice (the route's
 *	secrets: events are signed with each; none means the global
 *	secret of lmtp-webhook-spool.conf), raw_message=yes|no (the
 *	message as it arrived, in base64, in the event). Anything else,
 *	a relative path, a third secret_file, the same one twice or
 *	raw_message twice is an error. The URL must be one libcurl
 *	(curl_url(), the parser it posts with) reads, each {N} a
 *	capture: a port past 65535 or 0, a host name it refuses
 *	("bad_host!"), an IPv6 address without brackets was spooled, and
 *	each attempt failed, for days.
 *
 *	route_setting_name() is the name of the n-th route setting (1:
 *	lmtp_webhook_route, then lmtp_webhook_route2, ...), written into
 *	buf. The plugin reads them in that order up to the first that is
 *	not set (or empty): route_next() is that number, given the names
 *	of the settings that are set (doveconf's, for check-routes).
 *	route_unread() says why a setting so named is never read when
 *	reading stops at next: NULL when it is read, or is no numbered
 *	route setting; else the reason, in buf (lmtp_webhook_route3 with
 *	no route2, lmtp_webhook_route1, a leading zero). The plugin and
 *	lmtp-webhook-spool check-routes both judge by it: check-routes
 *	approved routes the plugin never read.
 *
 *	route_match() compares an address case-insensitively; on a match
 *	it returns 1 with the URL expanded and the first capture (the
 *	payload's workspace, lower case; NULL without captures), both
 *	malloc()ed. 0 means no match.
 *
 *	route_could_match() says whether a setting that route_parse()
 *	refused may be meant for address: its pattern (the first word)
 *	matches it, or is no pattern one can read (1: it may be). A
 *	recipient it may be meant for is tempfailed; the others go on to
 *	the next route (one route's mistyped URL stopped all the mail of
 *	the host, alice@ and postmaster@ included).
 *
 *	route_detail_cut() is where an address's detail starts, as
 *	Dovecot finds it for recipient_delimiter (the first of the
 *	delimiter characters in the local part: bills+tag is bills):
 *	the length of the local part without it, or 0 when there is no
 *	detail (or no delimiter, or nothing before it).
 *	route_detail_before() is the last delimiter before end (the
 *	length of the local part cut there), or 0: from the local part's
 *	length down, each call cuts one part of the detail more
 *	(in+acme+ref42: in+acme, then in).
 *
 *	route_url_redact() is the URL as logs may show it (malloc()ed):
 *	a user and password (https://user:pass@host/; with a ':', up to
 *	the last '@', even past a '/', '?' or '#') become "***@" and
 *	a query (?token=...) "?***", where receivers that do not check
 *	signatures keep their secret; the fragment, never sent, goes.
 * DIAGNOSTICS
 *	route_parse() returns NULL, or a static message.
 */

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <curl/curl.h>

#include "route.h"
#include "wh_alloc.h"

static int route_capture_char(int c)
{
    return (isalnum(c) || c == '-' || c == '_');
}

/* route_option - one OPTION word (len bytes at word) */

static const char *route_option(const char *word, size_t len, struct webhook_route *route)
{
    static const char secret[] = "secret_file=", raw[] = "raw_message=";

    if (len > sizeof(secret) - 1 && strncmp(word, secret, sizeof(secret) - 1) == 0) {
	word += sizeof(secret) - 1;
	len -= sizeof(secret) - 1;
	if (*word != '/')
	    return ("secret_file must be an absolute path");
	for (size_t i = 0; i < len; i++)	/* kept in the spool's JSON */
	    if ((unsigned char) word[i] < 33 || (unsigned char) word[i] > 126)
		return ("secret_file: printable ASCII only");
	if (route->secret_count == ROUTE_MAX_SECRETS)
	    return ("at most two secret_file per route (the current and the next)");
	if (route->secret_count == 1 && strlen(route->secret_files[0]) == len
	    && strncmp(route->secret_files[0], word, len) == 0)
	    return ("the same secret_file given twice");
	route->secret_files[route->secret_count++] = wh_strndup(word, len);
	return (NULL);
    }
    if (len >= sizeof(raw) - 1 && strncmp(word, raw, sizeof(raw) - 1) == 0) {
	/* which one counts would be a guess: "yes no" was "no" */
	if (route->raw_given++)
	    return ("raw_message given twice");
	if (len == 15 && strncmp(word, "raw_message=yes", len) == 0)
	    route->raw_message = 1;
	else if (len == 14 && strncmp(word, "raw_message=no", len) == 0)
	    route->raw_message = 0;
	else
	    return ("raw_message must be yes or no");
	return (NULL);
    }
    return ("unknown option after the URL (secret_file=, raw_message=)");
}

/*
 * route_secret_captures - each {N} of a secret_file= path names a capture:
 * "secret_file=/etc/dovecot/webhook/{1}.secret" gives each workspace of
 * a wildcard route its own secret (helper-120: every guide's one route
 * for bills@*.planapulse.app signed all workspaces with one secret, and
 * one workspace's copy forged events for all). A capture is letters,
 * digits, '-' and '_' only, so a path stays in its directory.
 */
static const char *route_secret_captures(const struct webhook_route *route, int stars)
{
    for (int i = 0; i < route->secret_count; i++)
	for (const char *p = route->secret_files[i]; (p = strchr(p, '{')) != NULL; p++)
	    if (!(p[1] >= '1' && p[1] <= '9' && p[2] == '}') || p[1] - '0' > stars)
		return ("secret_file: {N} must name a capture of the pattern ({1}..{9})");
    return (NULL);
}

/* route_options - the words after the URL */

static const char *route_options(const char *p, struct webhook_route *route)
{
    const char *err;
    size_t  len;

    for (;;) {
	while (*p == ' ' || *p == '\t')
	    p++;
	if (*p == 0)
	    return (NULL);
	len = strcspn(p, " \t");
	if ((err = route_option(p, len, route)) != NULL)
	    return (err);
	p += len;
    }
}

/* route_pattern_error - a pattern of len bytes that matching cannot take, or NULL */

static const char *route_pattern_error(const char *pat, size_t len, int *stars_r)
{
    int     stars = 0;

    if (memchr(pat, '@', len) == NULL)
	return ("pattern must be an address (local@domain)");
    for (const char *p = pat; p < pat + len; p++)
	if (*p == '*' && ++stars > ROUTE_MAX_CAPTURES)
	    return ("more than 9 '*' in pattern");
	else if (*p == '*' && p + 1 < pat + len
		 && (p[1] == '*' || route_capture_char((unsigned char) p[1])))
	    return ("'*' must be followed by a character it cannot capture"
		    " (such as '.', '@' or '+'), or end the pattern");
    *stars_r = stars;
    return (NULL);
}

/*
 * route_url_error - the URL (len bytes, its {N} checked) as libcurl will
 * read it when it posts, each {N} a capture ("x"): NULL, or why it
 * never can be posted. A port past 65535, a host name with a '!', an
 * IPv6 address without brackets passed, and each attempt then failed
 * ("URL using bad/illegal format") until dead-lettered days later.
 * Never quotes the URL: it may hold a password.
 */
static const char *route_url_error(const char *url, size_t len)
{
    static char why[160];
    const char *auth = strstr(url, "://") + 3, *end;
    char   *sample = wh_malloc(len + 1), *o = sample, *port = NULL;
    CURLU  *h = curl_url();
    CURLUcode rc = CURLUE_OUT_OF_MEMORY;

    for (const char *p = url; p < url + len; p++)
	if (*p == '{') {
	    *o++ = 'x';
	    p += 2;
	} else {
	    *o++ = *p;
	}
    *o = 0;
    if (h != NULL && (rc = curl_url_set(h, CURLUPART_URL, sample, 0)) == CURLUE_OK
	&& curl_url_get(h, CURLUPART_PORT, &port, 0) == CURLUE_OK && strcmp(port, "0") == 0)
	rc = CURLUE_BAD_PORT_NUMBER;
    curl_free(port);
    curl_url_cleanup(h);
    free(sample);
    if (rc == CURLUE_OK)
	return (NULL);
    /* "http://::1:8080/": curl says "bad port"; the host has two ':' */
    end = auth + strcspn(auth, "/?#");
    for (const char *p = auth; p < end; p++)
	if (*p == '@')
	    auth = p + 1;
    for (const char *p = auth; p < end && *p != '['; p++)
	if (*p == ':' && memchr(p + 1, ':', (size_t) (end - p - 1)) != NULL)
	    return ("URL: an IPv6 address must be in brackets (http://[::1]:8080/)");
    snprintf(why, sizeof(why), "URL cannot be posted: %s", rc == CURLUE_BAD_PORT_NUMBER
	     ? "port must be from 1 to 65535" : curl_url_strerror(rc));
    return (why);
}

const char *route_parse(const char *value, struct webhook_route *route)
{
    const char *sp, *url, *url_end, *p, *err;
    int     stars = 0;

    memset(route, 0, sizeof(*route));
    while (*value == ' ' || *value == '\t')
	value++;
    if ((sp = strpbrk(value, " \t")) == NULL)
	return ("expected \"PATTERN URL\"");
    for (url = sp; *url == ' ' || *url == '\t'; url++)
	;
    if (sp == value || *url == 0)
	return ("expected \"PATTERN URL\"");
    url_end = url + strcspn(url, " \t");
    if ((err = route_pattern_error(value, (size_t) (sp - value), &stars)) != NULL)
	return (err);
    /* a scheme's case does not matter (RFC 3986 3.1): HTTP:// was refused,
       and the recipient tempfailed (helper-115) */
    if (strncasecmp(url, "https://", 8) != 0 && strncasecmp(url, "http://", 7) != 0)
	return ("URL must start with http:// or https://");
    for (p = url; (p = memchr(p, '{', url_end - p)) != NULL; p++)
	if (!(p[1] >= '1' && p[1] <= '9' && p[2] == '}') || p[1] - '0' > stars)
	    return ("URL: {N} must name a capture of the pattern ({1}..{9})");
    if ((err = route_url_error(url, (size_t) (url_end - url))) != NULL)
	return (err);
    if ((err = route_options(url_end, route)) != NULL
	|| (err = route_secret_captures(route, stars)) != NULL) {
	route_free(route);
	return (err);
    }
    route->pattern = wh_strndup(value, sp - value);
    for (char *q = route->pattern; *q; q++)
	*q = tolower((unsigned char) *q);
    route->url = wh_strndup(url, url_end - url);
    for (char *cp = route->url; *cp != ':'; cp++)	/* the scheme, lowered */
	if (*cp >= 'A' && *cp <= 'Z')
	    *cp += 'a' - 'A';
    return (NULL);
}

char   *route_setting_name(unsigned int n, char *buf, size_t size)
{
    if (n <= 1)
	snprintf(buf, size, "%s", ROUTE_SETTING);
    else
	snprintf(buf, size, "%s%u", ROUTE_SETTING, n);
    return (buf);
}

unsigned int route_next(const char *const *names, size_t count)
{
    char    want[sizeof(ROUTE_SETTING) + 12];
    unsigned int n;
    size_t  i;

    for (n = 1;; n++) {
	route_setting_name(n, want, sizeof(want));
	for (i = 0; i < count && strcmp(names[i], want) != 0; i++)
	    ;
	if (i == count)
	    return (n);
    }
}

const char *route_unread(const char *name, unsigned int next, char *buf, size_t size)
{
    const char *num = name + sizeof(ROUTE_SETTING) - 1;
    char    unset[sizeof(ROUTE_SETTING) + 12];
    unsigned long n;

    if (strncmp(name, ROUTE_SETTING, sizeof(ROUTE_SETTING) - 1) != 0 || *num == '\0'
	|| num[strspn(num, "0123456789")] != '\0')
	return (NULL);				/* lmtp_webhook_route, or no route */
    n = strtoul(num, NULL, 10);
    if (*num != '0' && n >= 2 && n < next)
	return (NULL);				/* read */
    snprintf(buf, size, "%s is never read: routes are lmtp_webhook_route, "
	     "lmtp_webhook_route2, lmtp_webhook_route3, ... numbered without a gap (%s%s)",
	     name, *num == '0' || n < 2 ? "no 1 and no leading zero" :
	     route_setting_name(next, unset, sizeof(unset)), *num == '0' || n < 2 ? ""
	     : " is not set");
    return (buf);
}

/*
 * route_glob - linear: route_parse() made sure that what follows a '*'
 * cannot be part of a capture, so each capture simply ends where the
 * capture characters end. Captures are stored as [start, end).
 */
static int route_glob(const char *pat, const char *str, const char **cap)
{
    int     ncap = 0;

    while (*pat) {
	if (*pat == '*') {
	    cap[2 * ncap] = str;
	    while (route_capture_char((unsigned char) *str))
		str++;
	    if (str == cap[2 * ncap])
		return (0);
	    cap[2 * ncap++ + 1] = str;
	} else if (tolower((unsigned char) *str) != *pat || *str == 0) {
	    return (0);
	} else {
	    str++;
	}
	pat++;
    }
    return (*str == 0);
}

static char *route_lower(const char *start, const char *end)
{
    char   *s = wh_strndup(start, end - start);

    for (char *q = s; *q; q++)
	*q = tolower((unsigned char) *q);
    return (s);
}

/* route_expand - text with each {N} replaced by capture N, lower case (malloc()ed) */

static char *route_expand(const char *text, const char *const *cap)
{
    size_t  len = 0, cap_len;
    char   *result, *out;
    const char *p;

    for (p = text; *p; p++, len++)
	if (*p == '{') {
	    len += cap[2 * (p[1] - '1') + 1] - cap[2 * (p[1] - '1')];
	    p += 2;
	}
    result = out = wh_malloc(len + 1);
    for (p = text; *p; p++)
	if (*p == '{') {
	    int     i = p[1] - '1';

	    cap_len = cap[2 * i + 1] - cap[2 * i];
	    for (size_t k = 0; k < cap_len; k++)
		*out++ = tolower((unsigned char) cap[2 * i][k]);
	    p += 2;
	} else {
	    *out++ = *p;
	}
    *out = 0;
    return (result);
}

int     route_match(const struct webhook_route *route, const char *address,
		            char **url_r, char **workspace_r)
{
    const char *cap[2 * ROUTE_MAX_CAPTURES] = {0};

    if (!route_glob(route->pattern, address, cap))
	return (0);
    *url_r = route_expand(route->url, cap);
    *workspace_r = cap[0] ? route_lower(cap[0], cap[1]) : NULL;
    return (1);
}

int     route_expand_secrets(struct webhook_route *route, const char *address)
{
    const char *cap[2 * ROUTE_MAX_CAPTURES] = {0};

    if (!route_glob(route->pattern, address, cap))
	return (0);
    for (int i = 0; i < route->secret_count; i++) {
	char   *path = route_expand(route->secret_files[i], cap);

	free(route->secret_files[i]);
	route->secret_files[i] = path;
    }
    return (1);
}

int     route_could_match(const char *value, const char *address)
{
    const char *cap[2 * ROUTE_MAX_CAPTURES] = {0};
    size_t  len;
    char   *pattern;
    int     stars = 0, hit;

    while (*value == ' ' || *value == '\t')
	value++;
    len = strcspn(value, " \t");
    if (len == 0 || route_pattern_error(value, len, &stars) != NULL)
	return (1);
    pattern = wh_strndup(value, len);
    for (char *q = pattern; *q; q++)
	*q = tolower((unsigned char) *q);
    hit = route_glob(pattern, address, cap);
    free(pattern);
    return (hit);
}

void    route_free(struct webhook_route *route)
{
    free(route->pattern);
    free(route->url);
    for (int i = 0; i < route->secret_count; i++)
	free(route->secret_files[i]);
    memset(route, 0, sizeof(*route));
}

size_t  route_detail_cut(const char *localpart, const char *delimiters)
{
    size_t  len;

    if (delimiters == NULL || *delimiters == 0)
	return (0);
    len = strcspn(localpart, delimiters);
    return (localpart[len] == 0 ? 0 : len);
}

size_t  route_detail_before(const char *localpart, const char *delimiters, size_t end)
{
    if (delimiters == NULL)
	return (0);
    while (end > 1)				/* index 0: nothing before it */
	if (strchr(delimiters, localpart[--end]) != NULL)
	    return (end);
    return (0);
}

char   *route_url_redact(const char *url)
{
    const char *auth = strstr(url, "://"), *host, *end, *query, *at;
    size_t  len = strlen(url);
    char   *out = wh_malloc(len + 8), *o = out;

    auth = auth ? auth + 3 : url;
    end = auth + strcspn(auth, "/?#");
    host = auth;
    for (const char *p = auth; p < end; p++)
	if (*p == '@')
	    host = p + 1;
    /* a password with an unencoded '/', '?' or '#' (http://u:pa/ss@h/):
       to the last '@' with a ':' before it; shown from the '/' on, it
       was in the log */
    if ((at = strrchr(auth, '@')) != NULL && at >= end
	&& memchr(auth, ':', (size_t) (at - auth)) != NULL) {
	host = at + 1;
	end = host + strcspn(host, "/?#");
    }
    memcpy(o, url, (size_t) (auth - url));
    o += auth - url;
    if (host != auth) {
	memcpy(o, "***@", 4);
	o += 4;
    }
    query = end + strcspn(end, "?#");
    memcpy(o, host, (size_t) (query - host));
    o += query - host;
    if (*query == '?') {
	memcpy(o, "?***", 4);
	o += 4;
    }
    *o = 0;
    return (out);
}
