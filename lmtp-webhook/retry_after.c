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
 *	the schedule). A date's fields are read here once its form is one
 *	of the three; a date no calendar has (31 Feb) is no value, and
 *	RFC 850's two-digit year is the most recent year with those
 *	digits not more than 50 years ahead (RFC 9110 5.6.7).
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

/* retry_after_num - n digits at s */

static int retry_after_num(const char *s, int n)
{
    int     v = 0;

    while (n-- > 0)
	v = v * 10 + (*s == ' ' ? 0 : *s - '0'), s++;
    return (v);
}

/*
 * retry_after_date - the time an HTTP-date of a matched form names, or
 * -1 for a date no calendar has (31 Feb, hour 24). The fields are read
 * here, not by curl_getdate(), which rolled 31 Feb into March and read
 * RFC 850's two-digit years 71-99 as 1971-1999, where RFC 9110 5.6.7
 * wants the most recent year with those digits that is not more than
 * 50 years ahead.
 */
static long long retry_after_date(const char *buf, int form, long long now)
{
    static const char months[] = "JanFebMarAprMayJunJulAugSepOctNovDec";
    static const int mdays[] = {31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    const char *d = buf, *mon, *t;
    int     day, year, leap;
    struct tm tm = {0}, nowtm;
    time_t  now_t = (time_t) now;

    if (form == 0)				/* "Sun, 06 Nov 1994 08:49:37 GMT" */
	day = retry_after_num(d + 5, 2), mon = d + 8, year = retry_after_num(d + 12, 4),
	    t = d + 17;
    else if (form == 1) {			/* "Sunday, 06-Nov-94 08:49:37 GMT" */
	d = strchr(buf, ',') + 2;
	day = retry_after_num(d, 2), mon = d + 3, t = d + 10;
	gmtime_r(&now_t, &nowtm);
	year = (nowtm.tm_year + 1900) / 100 * 100 + retry_after_num(d + 7, 2);
	if (year > nowtm.tm_year + 1900 + 50)
	    year -= 100;
    } else					/* "Sun Nov  6 08:49:37 1994" */
	mon = d + 4, day = retry_after_num(d + 8, 2), t = d + 11,
	    year = retry_after_num(d + 20, 4);
    tm.tm_mon = (int) ((strstr(months, (char[]) {mon[0], mon[1], mon[2], 0}) - months) / 3);
    leap = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;
    if (day < 1 || day > mdays[tm.tm_mon] || (tm.tm_mon == 1 && day == 29 && !leap))
	return (-1);
    tm.tm_mday = day;
    tm.tm_year = year - 1900;
    tm.tm_hour = retry_after_num(t, 2);
    tm.tm_min = retry_after_num(t + 3, 2);
    tm.tm_sec = retry_after_num(t + 6, 2);
    if (tm.tm_hour > 23 || tm.tm_min > 59 || tm.tm_sec > 60)
	return (-1);
    return ((long long) timegm(&tm));
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
    static const char *const forms[] = {
	"a, 99 b 9999 99:99:99 GMT",		/* IMF-fixdate */
	"A, 99-b-99 99:99:99 GMT",		/* obsolete RFC 850 */
	"a b _9 99:99:99 9999",			/* asctime */
    };
    char    buf[64];
    size_t  len;
    long long when;
    int     form;

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
    for (form = 0; form < 3 && !retry_after_form(buf, forms[form]); form++)
	 /* void */ ;
    if (form == 3 || (when = retry_after_date(buf, form, now)) < 0 || when <= now)
	return (0);
    return (when - now);
}
