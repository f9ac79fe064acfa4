/*
 * charsetq - charset_name(3) for each line of standard input: "1 NAME"
 * (Python reads it; NAME is the name iconv(3) opens, "-" when glibc
 * lacks the codec) or "0 -" (no charset for Python). For
 * t/integration/charset_name_test.py, which asks Python the same.
 */

#include "build_config.h"

#include <stdio.h>
#include <string.h>

#include "charset_name.h"

int     main(void)
{
    char    line[4096], buf[CHARSET_NAME_SIZE];

    while (fgets(line, sizeof(line), stdin) != NULL) {
	size_t  n = strcspn(line, "\n");
	const char *name = charset_name(line, n, buf);

	printf("%d %s\n", charset_python_reads(line, n), name ? name : "-");
    }
    return (0);
}
