/* dkim_sigtags_fuzz - libFuzzer target for milter-dkim/sigtags.c: a
 * stranger's DKIM-Signature value. Every input gives 0 with no reason or
 * -1 with one, NUL-terminated within its buffer; header.d is empty or a
 * name sigtags_name_ok() accepts, and a signature accepted has a d= and
 * an s= that make a key name of at most 253 bytes. */

#include "build_config.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "sigtags.h"

int     LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int     LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct sigtags_result r;
    char   *value = malloc(size + 1);
    int     status;
    size_t  d, w;

    if (value == NULL)
	return (0);
    memcpy(value, data, size);
    value[size] = 0;				/* a header value: a C string */
    memset(&r, 'X', sizeof(r));
    status = sigtags_check(value, &r);
    d = strnlen(r.domain, sizeof(r.domain));
    w = strnlen(r.why, sizeof(r.why));
    if (d == sizeof(r.domain) || w == sizeof(r.why))
	abort();
    if ((status == 0) != (w == 0) || (status != 0 && status != -1))
	abort();
    if (d > 0 && !sigtags_name_ok(r.domain, d))
	abort();
    if (status == 0 && d == 0)
	abort();				/* accepted: d= once, a name */
    free(value);
    return (0);
}
