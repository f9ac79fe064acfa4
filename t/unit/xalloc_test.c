/* xalloc_test - unit tests for common/xalloc.c */

#include "build_config.h"

#include <stdlib.h>
#include <string.h>

#include "tap.h"
#include "xalloc.h"

int     main(void)
{
    char   *s = xasprintf("%s-%d", "mx", 42);
    char   *n = xstrndup("abcdef", 3);
    int    *z = xcalloc(4, sizeof(int));

    is_str(s, "mx-42", "xasprintf formats");
    is_str(n, "abc", "xstrndup truncates and terminates");
    ok(z[0] == 0 && z[3] == 0, "xcalloc zeroes");
    z = xrealloc(z, 1000 * sizeof(int));
    z[999] = 7;
    ok(z[999] == 7, "xrealloc grows");
    free(s);
    free(n);
    free(z);
    return (tap_done());
}
