/* retry_after_test - unit tests for lmtp-webhook/retry_after.c: what RFC
 * 9110 calls a Retry-After value (delay-seconds, the three HTTP-date
 * forms) is a wait; everything else, libcurl's lenient readings
 * included, is none (0: the schedule). */

#include "build_config.h"

#include <limits.h>
#include <stddef.h>

#include "retry_after.h"
#include "tap.h"

/* Sun, 06 Nov 1994 08:49:37 GMT, less 600 s */
#define NOW	(784111777LL - 600)

static const struct {
    const char *value;
    long long want;
}       cases[] = {
    {"120", 120},
    {" 120", 120},			/* OWS: the field's, not the value's */
    {"\t120 \t", 120},
    {"0120", 120},
    {"0", 0},
    {"9223372036854775807", LLONG_MAX},
    {"9223372036854775808", LLONG_MAX},	/* past any integer: the greatest */
    {"99999999999999999999999999", LLONG_MAX},
    {"Sun, 06 Nov 1994 08:49:37 GMT", 600},	/* IMF-fixdate */
    {"Sunday, 06-Nov-94 08:49:37 GMT", 600},	/* RFC 850 */
    {"Sun Nov  6 08:49:37 1994", 600},	/* asctime */
    {"Sun, 06 Nov 1994 08:39:37 GMT", 0},	/* now: no wait */
    {"Sun, 06 Nov 1994 08:29:37 GMT", 0},	/* past */
    {"Sun, 31 Feb 1994 08:49:37 GMT", 0},	/* no such day: no value */
    {"Sun, 06 Nov 1994 24:00:00 GMT", 0},	/* no such hour */
    {"Sun, 06 Nov 1994 08:60:00 GMT", 0},
    {"Sun, 06 Nov 1994 08:49:60 GMT", 623},	/* a leap second */
    {"Tue, 29 Feb 2000 00:00:00 GMT", 951782400LL - NOW},	/* 2000: a leap year */
    {"Tue, 29 Feb 2100 00:00:00 GMT", 0},	/* 2100: not one */
    {"Monday, 06-Nov-95 08:49:37 GMT", 815647777LL - NOW},	/* 1995: ahead */
    {"Sunday, 06-Nov-44 08:49:37 GMT", 0},	/* 2044 is more than 50 years ahead: 1944 */
    {"120abc", 0},
    {"120.5", 0},
    {"+120", 0},
    {"-5", 0},
    {"120, 60", 0},
    {"120 130", 0},
    {"1e3", 0},
    {"0x100", 0},
    {"3600;x", 0},
    {"99999999999999999999x", 0},
    {"", 0},
    {" ", 0},
    {"soon, please", 0},
    {"Sun, 06 Nov 1994 08:49:37 GMT;x", 0},
    {"Sun, 06 Nov 1994 08:49:37 UTC", 0},
    {"Sun, 6 Nov 1994 08:49:37 GMT", 0},
    {"sun, 06 nov 1994 08:49:37 gmt", 0},
    {"06 Nov 1994 08:49:37 GMT", 0},
    {"Sunday, 06-Nov-1994 08:49:37 GMT", 0},
    {"Sun Nov 6 08:49:37 1994", 0},
    {"Sun, 06 Nov 1994 08:49:37 +0000", 0},
    {"Tomorrow", 0},
};

int     main(void)
{
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
	is_int(retry_after_parse(cases[i].value, NOW), cases[i].want, "Retry-After: \"%s\"",
	       cases[i].value);
    is_int(retry_after_parse(NULL, NOW), 0, "no Retry-After");
    return (tap_done());
}
