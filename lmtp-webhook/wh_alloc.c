/*
 * NAME
 *	wh_alloc 3
 * SUMMARY
 *	memory allocation for code shared by the plugin and the spool tool
 * SYNOPSIS
 *	#include "wh_alloc.h"
 * DESCRIPTION
 *	malloc(), realloc(), strdup() and strndup() that never return
 *	NULL.
 * DIAGNOSTICS
 *	Out of memory: a message on stderr, then abort().
 */

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "wh_alloc.h"

static void *wh_check(void *ptr)
{
    if (ptr == NULL) {
	fputs("lmtp-webhook: out of memory\n", stderr);
	abort();
    }
    return (ptr);
}

void   *wh_malloc(size_t size)
{
    return (wh_check(malloc(size ? size : 1)));
}

void   *wh_realloc(void *ptr, size_t size)
{
    return (wh_check(realloc(ptr, size ? size : 1)));
}

char   *wh_strdup(const char *s)
{
    return (wh_check(strdup(s)));
}

char   *wh_strndup(const char *s, size_t n)
{
    return (wh_check(strndup(s, n)));
}
