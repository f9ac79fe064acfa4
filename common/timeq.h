#ifndef MXKIT_TIMEQ_H
#define MXKIT_TIMEQ_H

/* timeq - names ordered by a time (a binary min-heap); see timeq.c */

#include <stddef.h>

struct timeq_entry {
    long long when;
    char   *name;
};

struct timeq {
    struct timeq_entry *heap;
    size_t  used, size;
};

struct timeq *timeq_create(void);
void    timeq_add(struct timeq *q, long long when, const char *name);
int     timeq_first(const struct timeq *q, long long *when);
char   *timeq_pop(struct timeq *q, long long *when);
void    timeq_clear(struct timeq *q);
void    timeq_free(struct timeq **q);

#endif
