/* timeq_test - unit tests for common/timeq.c: against a sorted reference */

#include "build_config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tap.h"
#include "timeq.h"

static int cmp_ll(const void *a, const void *b)
{
    long long x = *(const long long *) a, y = *(const long long *) b;

    return ((x > y) - (x < y));
}

int     main(void)
{
    struct timeq *q = timeq_create();
    enum {N = 20000};
    static long long times[N], popped[N];
    static int seen[N];
    long long when = 0;
    int     wrong = 0, order = 0, n = 0;
    char    name[32], *got;

    ok(timeq_pop(q, &when) == NULL && !timeq_first(q, &when), "empty: nothing to pop");
    srand(7);
    for (int i = 0; i < N; i++) {
	/* few distinct times: many equal ones, negatives, the extremes */
	times[i] = i % 97 == 0 ? (i % 2 ? 0x7fffffffffffffffLL : -0x7fffffffffffffffLL)
	    : (long long) (rand() % 5000) - 2500;
	snprintf(name, sizeof(name), "n%d", i);
	timeq_add(q, times[i], name);
    }
    is_int((long long) q->used, N, "20,000 entries in");
    timeq_first(q, &when);
    qsort(times, N, sizeof(times[0]), cmp_ll);
    is_int(when, times[0], "first: the earliest time");
    while ((got = timeq_pop(q, &when)) != NULL) {
	int     id = atoi(got + 1);

	if (id < 0 || id >= N || seen[id]++)
	    wrong++;
	popped[n] = when;
	if (n > 0 && popped[n] < popped[n - 1])
	    order++;
	n++;
	free(got);
    }
    is_int(n, N, "every entry out once");
    is_int(wrong, 0, "each name exactly once");
    is_int(order, 0, "in time order");
    is_int(memcmp(popped, times, sizeof(times)), 0, "the times are the sorted times added");

    /* interleaved: adds and pops against a reference kept sorted */
    {
	static long long ref[N];
	int     refn = 0, bad = 0;

	for (int i = 0; i < N; i++) {
	    if (rand() % 3 && refn > 0) {
		long long w;

		got = timeq_pop(q, &w);
		qsort(ref, refn, sizeof(ref[0]), cmp_ll);
		if (got == NULL || w != ref[0])
		    bad++;
		memmove(ref, ref + 1, (refn - 1) * sizeof(ref[0]));
		refn--;
		free(got);
	    } else {
		ref[refn] = rand() % 1000;
		timeq_add(q, ref[refn++], "x");
	    }
	}
	is_int(bad, 0, "interleaved adds and pops: always the earliest");
	is_int((long long) q->used, refn, "and the count kept");
    }
    timeq_clear(q);
    ok(q->used == 0 && timeq_pop(q, NULL) == NULL, "cleared: empty");
    timeq_add(q, 5, "again");
    got = timeq_pop(q, NULL);
    ok(got && strcmp(got, "again") == 0, "usable after a clear");
    free(got);
    timeq_free(&q);
    ok(q == NULL, "freed: the pointer cleared");
    timeq_free(&q);
    return (tap_done());
}
