/* retry_after_fuzz - libFuzzer target for
 * lmtp-webhook/retry_after.c: a receiver's Retry-After value. Every
 * input gives 0 (the schedule) or a positive wait; digits alone (with
 * white space around) give exactly their number of seconds, and
 * anything else with a digit-free tail is no number. */

#include "build_config.h"

#include <ctype.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "retry_after.h"

int     LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int     LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const long long now = 1700000000;
    char   *value = malloc(size + 1);
    long long at;
    size_t  len;

    if (value == NULL)
	return (0);
    memcpy(value, data, size);
    value[size] = 0;
    at = retry_after_parse(value, now);
    len = strlen(value);			/* a header value ends at a NUL */
    if (at < 0)
	abort();
    if (len > 0 && len < 6 && strspn(value, "0123456789") == len && at != atoll(value))
	abort();
    /* digits, then anything but white space: no number ("120abc") */
    if (len > 0 && isdigit((unsigned char) value[0])
	&& value[strspn(value, "0123456789")] != 0
	&& strspn(value + strspn(value, "0123456789"), " \t") < len - strspn(value, "0123456789")
	&& at != 0)
	abort();
    free(value);
    return (0);
}
