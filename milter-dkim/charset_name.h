#ifndef MXKIT_CHARSET_NAME_H
#define MXKIT_CHARSET_NAME_H

/* charset_name - the name iconv(3) opens for a charset name as Python reads it */

#include <stddef.h>

#define CHARSET_NAME_SIZE 64

const char *charset_name(const char *name, size_t len, char *buf);
int     charset_python_reads(const char *name, size_t len);

#endif
