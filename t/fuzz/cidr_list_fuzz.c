/* cidr_list_fuzz - libFuzzer target for common/cidr_list.c: trusted-network
 * and exemption lists from configuration. Anything either parses or is
 * refused with an error naming the bad item; matching never crashes.
 * (addr_parse is not fuzzed: it may resolve host names.) */

#include "build_config.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "cidr_list.h"

int     LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int     LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char   *text = malloc(size + 1);
    struct cidr_list *list = cidr_list_create();
    char   *bad = NULL;
    const char *err;

    memcpy(text, data, size);
    text[size] = 0;
    err = cidr_list_parse(list, text, &bad);
    if (err != NULL && bad == NULL)
	abort();				/* an error must name the item */
    (void) cidr_list_match_str(list, text);
    (void) cidr_list_match_str(list, "192.0.2.1");
    (void) cidr_list_match_str(list, "2001:db8::1");
    free(bad);
    cidr_list_destroy(&list);
    free(text);
    return (0);
}
