#ifndef MXKIT_LENIENT_H
#define MXKIT_LENIENT_H

/* lenient - the domains a lenient reader finds in a From: value. */

#define LENIENT_NAME_SIZE 254		/* a name, its NUL */
#define LENIENT_AT_MAX	64		/* '@' looked at in one value */

int     lenient_domains(const char *value, char (*names)[LENIENT_NAME_SIZE], int max);
char   *lenient_decode(const char *value);
int     lenient_display_address(const char *value);

#endif
