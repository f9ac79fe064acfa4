/*
 * NAME
 *	runner_wait 3
 * SUMMARY
 *	lmtp-webhook-spool: due events put aside, and which one goes next
 * SYNOPSIS
 *	#include "runner_int.h"
 *
 *	void	runner_capped(r, id, origin, all)
 *	char	*runner_capped_next(r, any, &uncapped, &all)
 *	int	runner_capped_count(r)
 *	void	runner_capped_free(r)
 * DESCRIPTION
 *	An event found due is started at once only while none is waiting
 *	and its origin is admitted (runner_share.c); otherwise
 *	runner_capped() puts it aside, in its origin's queue (an id already
 *	waiting is not put aside twice), and the slots go to the waiting
 *	events as runner_capped_next() picks them. all (a flush pass's
 *	event: posted due or not) is kept with it and given back in *all.
 *
 *	runner_capped_next() gives back (the caller frees) the first event
 *	waiting of the admitted origin with the fewest attempts in flight
 *	(ties: the one put aside first), with *uncapped 0. When no origin
 *	is admitted: NULL unless any, else, with *uncapped 1, the first
 *	event of an origin that is not slow, or, when all are, the first of
 *	all: slots nobody else may use go to the origins at their share,
 *	the healthy first. NULL when none waits.
 *
 *	Each freed slot went to the first event put aside whose origin was
 *	admitted, in the order they were found due: the events of receivers
 *	that answer every other request at once and hang the rest were
 *	found first and admitted between their hangs, and two such
 *	receivers held every slot while a live receiver's events waited up
 *	to 28 s (helper-113). The origin with the fewest in flight is
 *	served first: one that holds slots does not take the next from one
 *	that holds none.
 *
 *	runner_capped_count() is the number of events waiting;
 *	runner_capped_free() frees them.
 */

#include "build_config.h"

#include <stdlib.h>
#include <string.h>

#include "htable.h"
#include "xalloc.h"
#include "runner_int.h"

/* one origin's events put aside, first in first out */

struct runner_wait {
    char   *origin;
    char  **ids;
    long long *seqs;			/* the order they were put aside in */
    char   *alls;			/* a flush pass's: due or not */
    int     head, n, size;
    int     at;				/* its place in r->waits */
};

void    runner_capped(struct runner *r, const char *id, const char *origin, int all)
{
    struct runner_wait *w;
    int     created;
    void  **slot;

    if (r->capped_set == NULL) {
	r->capped_set = htable_create(64);
	r->wait_by_origin = htable_create(16);
    }
    *htable_slot(r->capped_set, id, &created) = r;
    if (!created)
	return;					/* put aside already */
    slot = htable_slot(r->wait_by_origin, origin, &created);
    if ((w = *slot) == NULL) {
	*slot = w = xcalloc(1, sizeof(*w));
	w->origin = xstrdup(origin);
	if (r->nwaits == r->waits_size) {
	    r->waits_size = r->waits_size ? 2 * r->waits_size : 16;
	    r->waits = xrealloc(r->waits, r->waits_size * sizeof(*r->waits));
	}
	w->at = r->nwaits;
	r->waits[r->nwaits++] = w;
    }
    if (w->head > 0 && w->n == w->size) {
	memmove(w->ids, w->ids + w->head, (w->n - w->head) * sizeof(*w->ids));
	memmove(w->seqs, w->seqs + w->head, (w->n - w->head) * sizeof(*w->seqs));
	memmove(w->alls, w->alls + w->head, (w->n - w->head) * sizeof(*w->alls));
	w->n -= w->head;
	w->head = 0;
    }
    if (w->n == w->size) {
	w->size = w->size ? 2 * w->size : 8;
	w->ids = xrealloc(w->ids, w->size * sizeof(*w->ids));
	w->seqs = xrealloc(w->seqs, w->size * sizeof(*w->seqs));
	w->alls = xrealloc(w->alls, w->size * sizeof(*w->alls));
    }
    w->ids[w->n] = xstrdup(id);
    w->alls[w->n] = all != 0;
    w->seqs[w->n++] = r->wait_seq++;
    r->nwaiting++;
}

/* runner_wait_free - an origin's queue, emptied, out of the runner */

static void runner_wait_free(struct runner *r, struct runner_wait *w)
{
    for (int i = w->head; i < w->n; i++)
	free(w->ids[i]);
    r->waits[w->at] = r->waits[--r->nwaits];
    r->waits[w->at]->at = w->at;
    htable_delete(r->wait_by_origin, w->origin, NULL);
    free(w->origin);
    free(w->ids);
    free(w->seqs);
    free(w->alls);
    free(w);
}

/* runner_wait_first - whether w's first event was put aside before best's */

static int runner_wait_first(const struct runner_wait *w, const struct runner_wait *best)
{
    return (best == NULL || w->seqs[w->head] < best->seqs[best->head]);
}

char   *runner_capped_next(struct runner *r, int any, int *uncapped, int *all)
{
    struct runner_wait *best = NULL, *quick = NULL, *first = NULL, *w;
    int     best_running = 0, running, slow;
    char   *id;

    if (r->nwaits == 0)
	return (NULL);
    runner_share_look(r);
    for (int i = 0; i < r->nwaits; i++) {
	w = r->waits[i];
	if (runner_admits(r, w->origin, &slow)) {
	    running = runner_share_running(r, w->origin);
	    if (best == NULL || running < best_running
		|| (running == best_running && runner_wait_first(w, best))) {
		best = w;
		best_running = running;
	    }
	} else if (!slow && runner_wait_first(w, quick))
	    quick = w;
	if (runner_wait_first(w, first))
	    first = w;
    }
    if ((*uncapped = (best == NULL)) != 0) {
	if (!any)
	    return (NULL);
	best = quick ? quick : first;
    }
    *all = best->alls[best->head];
    id = best->ids[best->head++];
    r->nwaiting--;
    if (best->head == best->n)
	runner_wait_free(r, best);
    htable_delete(r->capped_set, id, NULL);
    return (id);
}

int     runner_capped_count(const struct runner *r)
{
    return (r->nwaiting);
}

void    runner_capped_free(struct runner *r)
{
    while (r->nwaits > 0)
	runner_wait_free(r, r->waits[0]);
    free(r->waits);
    r->waits = NULL;
    r->waits_size = 0;
    r->nwaiting = 0;
    if (r->capped_set)
	htable_destroy(&r->capped_set, NULL);
    if (r->wait_by_origin)
	htable_destroy(&r->wait_by_origin, NULL);
}
