/* dkim_from_domains_fuzz - libFuzzer target for milter-dkim/lenient.c:
 * the domains a lenient reader finds in an unreadable From: value (a
 * stranger's header). Every input gives a count from -1 to the maximum,
 * each name is lower case, non-empty, NUL-terminated within its slot
 * and stored once; lenient_decode() grows the value at most threefold
 * (a charset's byte is at most three of UTF-8; iconv(3) stops there:
 * before the charset conversion it never grew, which a Shift_JIS
 * half-width katakana run broke in CI);
 * lenient_display_address() says 0 or 1 (and reads no byte past the value).
 * A mailbox the strict reader (rfc5322(3)) reads, RFC 6532 UTF-8 included,
 * names a domain the lenient reader finds too (one name of LDH labels,
 * U-labels as A-labels both ways): the two readings never disagree. */

#include "build_config.h"

#include <ctype.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "lenient.h"
#include "rfc5322.h"

#define MAX_NAMES 8

int     LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* strict_among - the strict reading's domain (two LDH labels or more) is in names */

static void strict_among(const char *value, char (*names)[LENIENT_NAME_SIZE], int n)
{
    char    mailbox[1024];
    const char *domain;
    int     i;

    if (rfc5322_mailbox(value, mailbox, sizeof(mailbox)) != NULL)
	return;
    domain = strrchr(mailbox, '@') + 1;
    if (strchr(domain, '.') == NULL || strspn(domain, "abcdefghijklmnopqrstuvwxyz"
					      "0123456789-_.") != strlen(domain))
	return;
    for (i = 0; i < n && strcmp(names[i], domain) != 0; i++)
	 /* void */ ;
    if (i == n)
	abort();
}

int     LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char    names[MAX_NAMES][LENIENT_NAME_SIZE];
    char   *value = malloc(size + 1), *decoded;
    int     n;

    if (value == NULL)
	return (0);
    memcpy(value, data, size);
    value[size] = 0;				/* a header value: a C string */
    memset(names, 'X', sizeof(names));
    n = lenient_domains(value, names, MAX_NAMES);
    if (n < -1 || n > MAX_NAMES)
	abort();
    for (int i = 0; i < n; i++) {
	size_t  len = strnlen(names[i], LENIENT_NAME_SIZE);

	if (len == 0 || len == LENIENT_NAME_SIZE)
	    abort();
	for (size_t j = 0; j < len; j++)
	    if (isupper((unsigned char) names[i][j]))
		abort();
	for (int k = 0; k < i; k++)
	    if (strcmp(names[i], names[k]) == 0)
		abort();
    }
    if (n >= 0)
	strict_among(value, names, n);
    n = lenient_display_address(value);	/* any value, not only a mailbox */
    if (n != 0 && n != 1)
	abort();
    decoded = lenient_decode(value);
    if (decoded == NULL || strlen(decoded) > 3 * strlen(value))
	abort();
    free(decoded);
    free(value);
    return (0);
}
