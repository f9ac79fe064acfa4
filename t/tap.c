/*
 * NAME
 *	tap 3
 * SUMMARY
 *	Test Anything Protocol output for unit tests
 * SYNOPSIS
 *	#include "tap.h"
 *
 *	tap_plan(count); ok(pass, "name"); is_int(got, want, "name");
 *	is_str(got, want, "name"); tap_skip(n, "reason"); diag("text");
 *	return tap_done();
 * DESCRIPTION
 *	Output that automake's tap-driver.sh counts. tap_done() returns
 *	the exit status: non-zero when a test failed or the plan was
 *	not met. A skip is reported as a skip, never as a pass.
 * DIAGNOSTICS
 *	Mismatches print "# got: ..." / "# want: ..." lines.
 */

#include "build_config.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "tap.h"

static int tap_planned = -1;
static int tap_count;
static int tap_failed;

void    tap_plan(int count)
{
    tap_planned = count;
    printf("1..%d\n", count);
    fflush(stdout);
}

static int tap_vresult(int pass, const char *fmt, va_list ap)
{
    tap_count++;
    if (!pass)
	tap_failed++;
    printf("%s %d - ", pass ? "ok" : "not ok", tap_count);
    vprintf(fmt, ap);
    printf("\n");
    fflush(stdout);
    return (pass);
}

int     tap_ok(int pass, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    tap_vresult(pass, fmt, ap);
    va_end(ap);
    return (pass);
}

int     tap_is_int(long long got, long long want, const char *fmt, ...)
{
    va_list ap;
    int     pass = (got == want);

    va_start(ap, fmt);
    tap_vresult(pass, fmt, ap);
    va_end(ap);
    if (!pass)
	printf("# got:  %lld\n# want: %lld\n", got, want);
    return (pass);
}

int     tap_is_str(const char *got, const char *want, const char *fmt, ...)
{
    va_list ap;
    int     pass = (got == want) || (got && want && strcmp(got, want) == 0);

    va_start(ap, fmt);
    tap_vresult(pass, fmt, ap);
    va_end(ap);
    if (!pass)
	printf("# got:  %s\n# want: %s\n", got ? got : "(null)", want ? want : "(null)");
    return (pass);
}

void    tap_skip(int count, const char *reason)
{
    for (int i = 0; i < count; i++)
	printf("ok %d # SKIP %s\n", ++tap_count, reason);
    fflush(stdout);
}

void    tap_diag(const char *fmt, ...)
{
    va_list ap;

    printf("# ");
    va_start(ap, fmt);
    vprintf(fmt, ap);
    va_end(ap);
    printf("\n");
    fflush(stdout);
}

int     tap_done(void)
{
    if (tap_planned < 0) {
	printf("1..%d\n", tap_count);
	tap_planned = tap_count;
    }
    if (tap_count != tap_planned)
	printf("# planned %d tests but ran %d\n", tap_planned, tap_count);
    fflush(stdout);
    return (tap_failed || tap_count != tap_planned);
}
