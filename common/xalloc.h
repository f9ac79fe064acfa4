#ifndef MXKIT_XALLOC_H
#define MXKIT_XALLOC_H

/* xalloc - allocation that panics instead of returning NULL. */

#include <stddef.h>

void   *xmalloc(size_t size);
void   *xcalloc(size_t count, size_t size);
void   *xrealloc(void *ptr, size_t size);
char   *xstrdup(const char *text);
char   *xstrndup(const char *text, size_t len);
char   *xdirname(const char *path);
char   *xasprintf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

#endif
