/*
 * NAME
 *	xalloc 3
 * SUMMARY
 *	memory allocation wrappers
 * SYNOPSIS
 *	#include "xalloc.h"
 *
 *	void	*xmalloc(size)
 *	char	*xasprintf(fmt, ...)
 *
 *	char	*xdirname(path)
 * DESCRIPTION
 *	Like the C library functions, but a failed allocation is fatal:
 *	a daemon that cannot allocate a few bytes cannot make a safe
 *	decision about mail, so it exits and lets its supervisor (and
 *	Postfix's tempfail handling) take over.
 *
 *	xdirname() is the directory part of an absolute path ("/" for
 *	"/x"), allocated: the parent that must exist before a file or a
 *	directory is made there.
 * DIAGNOSTICS
 *	Fatal: out of memory.
 */

#include "build_config.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "msg.h"
#include "xalloc.h"

void   *xmalloc(size_t size)
{
    void   *ptr = malloc(size ? size : 1);

    if (ptr == NULL)
	msg_fatal("out of memory allocating %zu bytes", size);
    return (ptr);
}

void   *xcalloc(size_t count, size_t size)
{
    void   *ptr = calloc(count ? count : 1, size ? size : 1);

    if (ptr == NULL)
	msg_fatal("out of memory allocating %zu x %zu bytes", count, size);
    return (ptr);
}

void   *xrealloc(void *old, size_t size)
{
    void   *ptr = realloc(old, size ? size : 1);

    if (ptr == NULL)
	msg_fatal("out of memory reallocating %zu bytes", size);
    return (ptr);
}

char   *xstrdup(const char *text)
{
    return (xstrndup(text, strlen(text)));
}

char   *xstrndup(const char *text, size_t len)
{
    char   *copy = xmalloc(len + 1);

    memcpy(copy, text, len);
    copy[len] = 0;
    return (copy);
}

char   *xasprintf(const char *fmt, ...)
{
    va_list ap;
    char   *result;
    int     len;

    va_start(ap, fmt);
    len = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (len < 0)
	msg_panic("xasprintf: bad format \"%s\"", fmt);
    result = xmalloc(len + 1);
    va_start(ap, fmt);
    vsnprintf(result, len + 1, fmt, ap);
    va_end(ap);
    return (result);
}

char   *xdirname(const char *path)
{
    const char *slash = strrchr(path, '/');

    if (slash == NULL)
	return (xstrdup("."));
    return (slash == path ? xstrdup("/") : xstrndup(path, slash - path));
}
