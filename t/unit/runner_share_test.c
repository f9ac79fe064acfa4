/* runner_share_test - unit tests for lmtp-webhook/runner_share.c: which
   event put aside is started next, when an origin is slow, and that each
   event put aside comes back once */

#include "build_config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "daemon.h"
#include "tap.h"
#include "runner_int.h"

static struct spool_tool tool = {.timeout_ms = 3000, .concurrency = 4};

/* take - an attempt to origin counted in, as runner_post() does; ago_ms:
   how long it has been running */

static struct transfer *take(struct runner *r, const char *origin, long long ago_ms)
{
    struct transfer *t = calloc(1, sizeof(*t));

    t->origin = strdup(origin);
    runner_share_start(r, t);
    t->started_ms -= ago_ms;
    return (t);
}

static void give(struct runner *r, struct transfer *t)
{
    runner_share_end(r, t);
    free(t->origin);
    free(t);
}

/* forget - what is put aside, the counts and the marks freed */

static void forget(struct runner *r)
{
    runner_capped_free(r);
    runner_share_free(r);
}

/* next_is - the next pick is want; returns its flush flag */

static int next_is(struct runner *r, const char *want, int want_uncapped, const char *what)
{
    int     uncapped = -1, all = -1;
    char   *got = runner_capped_next(r, 1, &uncapped, &all);

    is_str(got, want, "%s: %s", what, want ? want : "nothing");
    if (got != NULL)
	is_int(uncapped, want_uncapped, "%s: %s", what, want_uncapped ? "uncapped" : "admitted");
    free(got);
    return (all);
}

/* the case of the CI of 927243d: a live origin's third event behind a slow backlog */

static void test_live_behind_backlog(void)
{
    struct runner r = {.tool = &tool};
    struct transfer *h0, *h0b, *h0c, *h1, *s1, *l1, *l2, *l3, *l4;
    char    id[32];

    runner_slow_mark(&r, "http://h0:80", 1.4, 1);	/* a 503 */
    runner_slow_mark(&r, "http://h1:80", 3.0, 0);	/* hung */
    for (int i = 0; i < 40; i++) {
	snprintf(id, sizeof(id), "slow%d", i);
	runner_capped(&r, id, i % 2 ? "http://h1:80" : "http://h0:80", 0);
    }
    h0 = take(&r, "http://h0:80", 0);
    h1 = take(&r, "http://h1:80", 0);
    l1 = take(&r, "http://live:80", 0);
    l2 = take(&r, "http://live:80", 0);
    runner_capped(&r, "live3", "http://live:80", 0);
    runner_capped(&r, "live4", "http://live:80", 0);
    give(&r, l1);
    next_is(&r, "live3", 0, "the live origin freed a slot: its event, not the backlog's");
    l3 = take(&r, "http://live:80", 0);
    give(&r, h0);
    next_is(&r, "slow0", 0, "a slow slot freed: the first slow event admitted (h0's)");
    h0b = take(&r, "http://h0:80", 0);
    give(&r, l2);
    next_is(&r, "live4", 0, "the slow ones at their half: the live origin's, though later");
    l4 = take(&r, "http://live:80", 0);
    give(&r, l3);
    next_is(&r, "slow1", 1, "nothing admitted, nothing healthy waiting: the first, uncapped");
    s1 = take(&r, "http://h1:80", 0);
    give(&r, l4);
    h0c = take(&r, "http://h0:80", 0);
    runner_slow_mark(&r, "http://h1:80", 0.1, 0);	/* quick, but just marked */
    next_is(&r, "slow2", 1, "h1 quick within a minute of its mark: still slow, the first "
	    "of all uncapped (h0's)");
    *(long long *) htable_find(r.slow, "http://h1:80") -= RUNNER_SLOW_HOLD;
    runner_slow_mark(&r, "http://h1:80", 0.1, 0);	/* quick, a minute on */
    next_is(&r, "slow3", 1, "h0 and h1 at their shares, h1 quick a minute after its mark: "
	    "the spare slot to h1's event, not to h0's before it");
    give(&r, h1);
    give(&r, s1);
    give(&r, h0b);
    give(&r, h0c);
    ok(r.nflight == 0 && (r.origins == NULL || htable_find(r.origins, "http://h0:80") == NULL),
       "every attempt counted out");
    forget(&r);
    ok(r.waits == NULL && r.capped_set == NULL && r.slow == NULL && r.origins == NULL
       && r.flight == NULL, "all freed");
}

/*
 * helper-113: receivers that answer every other request at once and hang
 * the rest were never slow when their next attempt started (a quick 200
 * cleared the mark), and an attempt's slowness was fixed when it
 * started: two of them held every slot. An attempt running half the
 * timeout makes its origin slow while it runs.
 */
static void test_flapping(void)
{
    struct runner r = {.tool = &tool};
    struct transfer *f1a, *f2a, *f2b, *l1;

    runner_slow_mark(&r, "http://f1:80", 0.01, 0);	/* quick 200s */
    runner_slow_mark(&r, "http://f2:80", 0.01, 0);
    f1a = take(&r, "http://f1:80", 1600);		/* hanging, 1.6 s in */
    f2a = take(&r, "http://f2:80", 1600);
    f2b = take(&r, "http://f2:80", 1500);		/* exactly half the timeout */
    runner_capped(&r, "f1-next", "http://f1:80", 0);
    runner_capped(&r, "f2-next", "http://f2:80", 0);
    runner_capped(&r, "live1", "http://live:80", 0);
    next_is(&r, "live1", 0, "two origins hanging half the timeout: slow, though their marks "
	    "were cleared; the live one's event first");
    l1 = take(&r, "http://live:80", 0);
    ok(!runner_share_admits(&r, "http://f1:80"), "f1, below its share but with an overdue "
       "attempt: slow, and the slow ones hold 3 of 4: not admitted");
    runner_slow_mark(&r, "http://f1:80", 3.0, 1);	/* its attempt timed out */
    give(&r, f1a);
    ok(!runner_share_admits(&r, "http://f1:80"), "f1 marked by its timeout: held back while "
       "f2's two overdue attempts hold the slow half");
    give(&r, f2a);
    ok(runner_share_admits(&r, "http://f1:80"), "one of them ended: f1 admitted, slow, in the "
       "slow half");
    give(&r, f2b);
    give(&r, l1);
    forget(&r);
}

/*
 * helper-113: the slot an origin frees goes to the admitted origin with
 * the fewest in flight, not to the event put aside first
 */
static void test_fewest_first(void)
{
    struct runner r = {.tool = &tool};
    struct transfer *a = take(&r, "http://a:80", 0), *b1, *b2;
    int     uncapped = -1, all = -1;

    runner_capped(&r, "a1", "http://a:80", 1);		/* a flush pass's */
    runner_capped(&r, "a2", "http://a:80", 0);
    runner_capped(&r, "b1", "http://b:80", 0);
    runner_capped(&r, "b2", "http://b:80", 0);
    next_is(&r, "b1", 0, "a holds a slot, b none: b's first, though a's were put aside first");
    b1 = take(&r, "http://b:80", 0);
    is_int(next_is(&r, "a1", 0, "one each: the one put aside first"), 1,
	   "a1: put aside by a flush pass, given back as such");
    b2 = take(&r, "http://b:80", 0);
    give(&r, b1);
    char   *got = runner_capped_next(&r, 0, &uncapped, &all);

    ok(got != NULL && uncapped == 0, "a2 or b2, admitted");
    free(got);
    b1 = take(&r, "http://b:80", 0);
    runner_slow_mark(&r, "http://a:80", 3.0, 1);
    runner_slow_mark(&r, "http://b:80", 3.0, 1);
    ok(runner_capped_count(&r) == 1 && runner_capped_next(&r, 0, &uncapped, &all) == NULL,
       "none admitted and not 'any': nothing");
    is_int(runner_capped_count(&r), 1, "still waiting");
    give(&r, a);
    give(&r, b1);
    give(&r, b2);
    forget(&r);
}

/* helper-113: concurrency 1 and 3, a slow origin with a backlog and a healthy one */

static void test_small_concurrency(void)
{
    struct spool_tool one = {.timeout_ms = 3000, .concurrency = 1};
    struct spool_tool three = {.timeout_ms = 3000, .concurrency = 3};
    struct runner r = {.tool = &one};
    struct transfer *h, *l;

    runner_slow_mark(&r, "http://h:80", 3.0, 1);
    ok(!runner_share_admits(&r, "http://h:80"), "concurrency 1: a slow origin is not admitted");
    ok(runner_share_admits(&r, "http://live:80"), "concurrency 1: a healthy one is");
    runner_capped(&r, "h1", "http://h:80", 0);
    runner_capped(&r, "live1", "http://live:80", 0);
    next_is(&r, "live1", 0, "concurrency 1: the healthy origin's event first");
    next_is(&r, "h1", 1, "concurrency 1: the slow one's when nothing else waits (uncapped)");
    forget(&r);

    r = (struct runner) {.tool = &three};
    runner_slow_mark(&r, "http://h:80", 3.0, 1);
    h = take(&r, "http://h:80", 0);
    l = take(&r, "http://live:80", 0);
    runner_capped(&r, "h2", "http://h:80", 0);
    runner_capped(&r, "live2", "http://live:80", 0);
    next_is(&r, "live2", 1, "concurrency 3: the spare slot to the healthy origin (uncapped), "
	    "not to the slow one put aside before it");
    give(&r, h);
    give(&r, l);
    forget(&r);
}

/* helper-113: one receiver spelled as an IPv4-mapped IPv6 address took a share of its own */

static void test_origin(void)
{
    const char *cases[][2] = {
	{"http://127.0.0.1:8080/a", "http://127.0.0.1:8080"},
	{"http://[::ffff:127.0.0.1]:8080/b", "http://127.0.0.1:8080"},
	{"http://[::FFFF:7f00:1]:8080/c", "http://127.0.0.1:8080"},
	{"HTTPS://Bills.Example.COM/x?y", "https://bills.example.com:443"},
	{"http://[::1]/", "http://[::1]:80"},
	{"http://[2001:db8::1]:81/", "http://[2001:db8::1]:81"},
	{"http://localhost:8080/", "http://localhost:8080"},
    };

    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
	char   *got = runner_origin(cases[i][0]);

	is_str(got, cases[i][1], "origin of %s", cases[i][0]);
	free(got);
    }
}

/* every id put aside comes back exactly once, whatever the counts */

static void test_each_once(void)
{
    struct runner r = {.tool = &tool};
    enum {N = 5000};
    static int seen[N];
    const char *origins[] = {"http://a:80", "http://b:80", "http://c:443", "http://d:80"};
    struct transfer *flight[64];
    char    id[32], *got;
    int     in = 0, out = 0, dup = 0, wrong = 0, uncapped, order = 0, nflight = 0, all;

    srand(11);
    while (in < N || runner_capped_count(&r) > 0) {
	if (in < N && rand() % 3) {
	    snprintf(id, sizeof(id), "e%d", in);
	    runner_capped(&r, id, origins[in % 4], 0);
	    if (in % 7 == 0)
		runner_capped(&r, id, origins[in % 4], 0);	/* again: once only */
	    in++;
	} else if (rand() % 2) {
	    runner_slow_mark(&r, origins[rand() % 4], (double) (rand() % 4), rand() % 2);
	    if (rand() % 2 && nflight < 64) {
		flight[nflight++] = take(&r, origins[rand() % 4], (long long) (rand() % 4000));
	    } else if (nflight > 0) {
		int     k = rand() % nflight;

		give(&r, flight[k]);
		flight[k] = flight[--nflight];
	    }
	} else if ((got = runner_capped_next(&r, rand() % 2, &uncapped, &all)) != NULL) {
	    int     n = atoi(got + 1);

	    if (n < 0 || n >= N)
		wrong++;
	    else if (seen[n]++)
		dup++;
	    else if (!uncapped)		/* admitted: it would still be */
		order += !runner_share_admits(&r, origins[n % 4]);
	    out++;
	    free(got);
	}
    }
    is_int(out, N, "5,000 put aside (some twice), 5,000 came back");
    is_int(dup + wrong, 0, "none twice, none unknown");
    is_int(order, 0, "each one admitted was admitted by the counts");
    ok(runner_capped_count(&r) == 0 && r.nwaits == 0, "nothing waits");
    while (nflight > 0)
	give(&r, flight[--nflight]);
    ok(r.nflight == 0 && r.origins != NULL && htable_find(r.origins, "http://a:80") == NULL,
       "in flight counted out: no origin's count left");
    forget(&r);
}

int     main(void)
{
    int     uncapped = -1, all = -1;
    struct runner r = {.tool = &tool};

    ok(runner_capped_next(&r, 1, &uncapped, &all) == NULL, "nothing put aside: NULL");
    test_live_behind_backlog();
    test_flapping();
    test_fewest_first();
    test_small_concurrency();
    test_origin();
    test_each_once();
    return (tap_done());
}
