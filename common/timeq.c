/*
 * NAME
 *	timeq 3
 * SUMMARY
 *	names ordered by a time
 * SYNOPSIS
 *	#include "timeq.h"
 *
 *	struct timeq *timeq_create(void)
 *	void	timeq_add(q, when, name)
 *	int	timeq_first(q, &when)
 *	char	*timeq_pop(q, &when)
 *	void	timeq_clear(q)
 *	void	timeq_free(&q)
 * DESCRIPTION
 *	A binary min-heap of (when, name): what a loop must look at again
 *	at a given time, so that it visits what is due and nothing else.
 *	timeq_add() copies the name; the same name may be added more than
 *	once (the caller tells a stale entry from the one it keeps).
 *	timeq_first() gives the earliest time (0 when empty, else 1);
 *	timeq_pop() removes the earliest entry and returns its name, for
 *	the caller to free (NULL when empty). The heap grows as needed
 *	(xalloc: out of memory is fatal, never a silent drop).
 */

#include <stdlib.h>

#include "timeq.h"
#include "xalloc.h"

struct timeq *timeq_create(void)
{
    return (xcalloc(1, sizeof(struct timeq)));
}

static void timeq_swap(struct timeq *q, size_t a, size_t b)
{
    struct timeq_entry t = q->heap[a];

    q->heap[a] = q->heap[b];
    q->heap[b] = t;
}

void    timeq_add(struct timeq *q, long long when, const char *name)
{
    size_t  i;

    if (q->used == q->size) {
	q->size = q->size ? q->size * 2 : 64;
	q->heap = xrealloc(q->heap, q->size * sizeof(*q->heap));
    }
    i = q->used++;
    q->heap[i].when = when;
    q->heap[i].name = xstrdup(name);
    while (i > 0 && q->heap[(i - 1) / 2].when > q->heap[i].when) {
	timeq_swap(q, i, (i - 1) / 2);
	i = (i - 1) / 2;
    }
}

int     timeq_first(const struct timeq *q, long long *when)
{
    if (q->used == 0)
	return (0);
    *when = q->heap[0].when;
    return (1);
}

char   *timeq_pop(struct timeq *q, long long *when)
{
    char   *name;
    size_t  i = 0, child;

    if (q->used == 0)
	return (NULL);
    name = q->heap[0].name;
    if (when)
	*when = q->heap[0].when;
    q->heap[0] = q->heap[--q->used];
    while ((child = 2 * i + 1) < q->used) {
	if (child + 1 < q->used && q->heap[child + 1].when < q->heap[child].when)
	    child++;
	if (q->heap[i].when <= q->heap[child].when)
	    break;
	timeq_swap(q, i, child);
	i = child;
    }
    return (name);
}

void    timeq_clear(struct timeq *q)
{
    for (size_t i = 0; i < q->used; i++)
	free(q->heap[i].name);
    q->used = 0;
}

void    timeq_free(struct timeq **qp)
{
    if (*qp == NULL)
	return;
    timeq_clear(*qp);
    free((*qp)->heap);
    free(*qp);
    *qp = NULL;
}
