/*
 * NAME
 *	retry_after 3
 * SUMMARY
 *	a Retry-After header value, read as RFC 9110 writes it
 * SYNOPSIS
 *	#include "retry_after.h"
 *
 *	long long retry_after_parse(value, now)
 * DESCRIPTION
 *	retry_after_parse() is the wait in seconds a Retry-After field
 *	value asks for (RFC 9110 10.2.3): delay-seconds (1*DIGIT), or an
 *	HTTP-date in one of its three forms (IMF-fixdate "Sun, 06 Nov 1994
 *	08:49:37 GMT", the obsolete RFC 850 "Sunday, 06-Nov-94 08:49:37
 *	GMT" and asctime "Sun Nov  6 08:49:37 1994"), less now. White space
 *	(SP, HTAB) around the value is the field's, not the value's.
 *	Anything else is no value at all: "120abc", "120.5", "+120",
 *	"120, 60", "1e3", "3600;x" (libcurl's parser read the number they
 *	start with, and the event waited that long instead of following
 *	the schedule). A date is read by curl_getdate() only once its
 *	form is one of the three.
 *
 *	delay-seconds too large for any integer is LLONG_MAX (RFC 9111
 *	1.2.2: the greatest value one can represent); the caller cuts
 *	every wait to its own maximum.
 * DIAGNOSTICS
 *	0 for no value, an invalid one, 0 seconds or a date not after
 *	now: the schedule applies.
 */

#include "build_config.h"

#include <limits.h>
#include <string.h>
#include <time.h>

#include <curl/curl.h>

#include "retry_after.h"

/*
 * retry_after_form - does s match pat, where '9' is a digit, '_' a
 * digit or SP (asctime's day), 'a' a day-name, 'A' a long day-name, 'b'
 * a month, anything else itself? Names as RFC 9110 spells them (they
 * are case-sensitive there; so is this).
 */
static int retry_after_form(const char *s, const char *pat)
{
    static const char *const days[] = {"Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"};
    static const char *const long_days[] = {"Monday", "Tuesday", "Wednesday", "Thursday",
    "Friday", "Saturday", "Sunday"};
    static const char months[] = "JanFebMarAprMayJunJulAugSepOctNovDec";
    size_t  len;
    int     i;

    for (; *pat; pat++) {
	switch (*pat) {
	case '9':
	    if (*s < '0' || *s > '9')
		return (0);
	    s++;
	    break;
	case '_':
	    if ((*s < '0' || *s > '9') && *s != ' ')
		return (0);
	    s++;
	    break;
	case 'a':
	case 'A':
	    for (i = 0; i < 7; i++) {
		len = strlen(*pat == 'a' ? days[i] : long_days[i]);
		if (strncmp(s, *pat == 'a' ? days[i] : long_days[i], len) == 0)
		    break;
	    }
	    if (i == 7)
		return (0);
	    s += len;
	    break;
	case 'b':
	    for (i = 0; i < 12 && (strlen(s) < 3 || strncmp(s, months + 3 * i, 3) != 0); i++)
		 /* void */ ;
	    if (i == 12)
		return (0);
	    s += 3;
	    break;
	default:
	    if (*s++ != *pat)
		return (0);
	}
    }
    return (*s == 0);
}

/* retry_after_seconds - 1*DIGIT, saturating at LLONG_MAX */

static long long retry_after_seconds(const char *s, size_t len)
{
    long long n = 0;

    for (size_t i = 0; i < len; i++) {
	if (n > (LLONG_MAX - (s[i] - '0')) / 10)
	    return (LLONG_MAX);
	n = n * 10 + (s[i] - '0');
    }
    return (n);
}

long long retry_after_parse(const char *value, long long now)
{
    char    buf[64];
    size_t  len;
    time_t  when;

    if (value == NULL)
	return (0);
    value += strspn(value, " \t");
    for (len = strlen(value); len > 0 && (value[len - 1] == ' ' || value[len - 1] == '\t'); len--)
	 /* void */ ;
    if (len > 0 && strspn(value, "0123456789") >= len)
	return (retry_after_seconds(value, len));
    if (len >= sizeof(buf))			/* longer than any date */
	return (0);
    memcpy(buf, value, len);
    buf[len] = 0;
    if (!retry_after_form(buf, "a, 99 b 9999 99:99:99 GMT")
	&& !retry_after_form(buf, "A, 99-b-99 99:99:99 GMT")
	&& !retry_after_form(buf, "a b _9 99:99:99 9999"))
	return (0);
    if ((when = curl_getdate(buf, NULL)) == -1 || (long long) when <= now)
	return (0);
    return ((long long) when - now);
}
