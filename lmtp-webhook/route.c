/*
 * NAME
 *	route 3
 * SUMMARY
 *	recipient patterns and webhook URL templates
 * SYNOPSIS
 *	#include "route.h"
 *
 *	const char *route_parse(value, &route)
 *	int	route_match(&route, address, &url, &workspace)
 *	void	route_free(&route)
 *	size_t	route_detail_cut(localpart, delimiters)
 *	char	*route_url_redact(url)
 * DESCRIPTION
 *	route_parse() reads an lmtp_webhook_route setting, "PATTERN URL":
 *	PATTERN is an address in which each '*' captures one or more
 *	letters, digits, '-' or '_' (never '.', '@' or anything a URL
 *	gives meaning to: a capture lands in the URL's host name, and
 *	"bills@evil.com#.planapulse.app" must not route anywhere). What
 *	follows a '*' must be a character it cannot capture, so matching
 *	is linear and never ambiguous;
 *	URL is http:// or https:// with {1}..{9} standing for captures.
 *
 *	route_match() compares an address case-insensitively; on a match
 *	it returns 1 with the URL expanded and the first capture (the
 *	payload's workspace, lower case; NULL without captures), both
 *	malloc()ed. 0 means no match.
 *
 *	route_detail_cut() is where an address's detail starts, as
 *	Dovecot finds it for recipient_delimiter (the first of the
 *	delimiter characters in the local part: bills+tag is bills):
 *	the length of the local part without it, or 0 when there is no
 *	detail (or no delimiter, or nothing before it).
 *
 *	route_url_redact() is the URL as logs may show it (malloc()ed):
 *	a user and password (https://user:pass@host/) become "***@" and
 *	a query (?token=...) "?***", where receivers that do not check
 *	signatures keep their secret; the fragment, never sent, goes.
 * DIAGNOSTICS
 *	route_parse() returns NULL, or a static message.
 */

#include <ctype.h>
#include <stdlib.h>
#include <string.h>

#include "route.h"
#include "wh_alloc.h"

static int route_capture_char(int c)
{
    return (isalnum(c) || c == '-' || c == '_');
}

const char *route_parse(const char *value, struct webhook_route *route)
{
    const char *sp, *url, *p;
    int     stars = 0;

    memset(route, 0, sizeof(*route));
    while (*value == ' ' || *value == '\t')
	value++;
    if ((sp = strpbrk(value, " \t")) == NULL)
	return ("expected \"PATTERN URL\"");
    for (url = sp; *url == ' ' || *url == '\t'; url++)
	;
    if (sp == value || *url == 0 || strpbrk(url, " \t") != NULL)
	return ("expected \"PATTERN URL\"");
    if (memchr(value, '@', sp - value) == NULL)
	return ("pattern must be an address (local@domain)");
    for (p = value; p < sp; p++)
	if (*p == '*' && ++stars > ROUTE_MAX_CAPTURES)
	    return ("more than 9 '*' in pattern");
	else if (*p == '*' && p + 1 < sp
		 && (p[1] == '*' || route_capture_char((unsigned char) p[1])))
	    return ("'*' must be followed by a character it cannot capture"
		    " (such as '.', '@' or '+'), or end the pattern");
    if (strncmp(url, "https://", 8) != 0 && strncmp(url, "http://", 7) != 0)
	return ("URL must start with http:// or https://");
    for (p = url; (p = strchr(p, '{')) != NULL; p++)
	if (!(p[1] >= '1' && p[1] <= '9' && p[2] == '}') || p[1] - '0' > stars)
	    return ("URL: {N} must name a capture of the pattern ({1}..{9})");
    route->pattern = wh_strndup(value, sp - value);
    for (char *q = route->pattern; *q; q++)
	*q = tolower((unsigned char) *q);
    route->url = wh_strdup(url);
    return (NULL);
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

int     route_match(const struct webhook_route *route, const char *address,
		            char **url_r, char **workspace_r)
{
    const char *cap[2 * ROUTE_MAX_CAPTURES] = {0};
    size_t  len = 0, cap_len;
    char   *url, *out;
    const char *p;

    if (!route_glob(route->pattern, address, cap))
	return (0);
    for (p = route->url; *p; p++, len++)
	if (*p == '{') {
	    len += cap[2 * (p[1] - '1') + 1] - cap[2 * (p[1] - '1')];
	    p += 2;
	}
    url = out = wh_malloc(len + 1);
    for (p = route->url; *p; p++)
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
    *url_r = url;
    *workspace_r = cap[0] ? route_lower(cap[0], cap[1]) : NULL;
    return (1);
}

void    route_free(struct webhook_route *route)
{
    free(route->pattern);
    free(route->url);
    route->pattern = route->url = NULL;
}

size_t  route_detail_cut(const char *localpart, const char *delimiters)
{
    size_t  len;

    if (delimiters == NULL || *delimiters == 0)
	return (0);
    len = strcspn(localpart, delimiters);
    return (localpart[len] == 0 ? 0 : len);
}

char   *route_url_redact(const char *url)
{
    const char *auth = strstr(url, "://"), *host, *end, *query;
    size_t  len = strlen(url);
    char   *out = wh_malloc(len + 8), *o = out;

    auth = auth ? auth + 3 : url;
    end = auth + strcspn(auth, "/?#");
    host = auth;
    for (const char *p = auth; p < end; p++)
	if (*p == '@')
	    host = p + 1;
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
