/* runner_share_test - unit tests for lmtp-webhook/runner_share.c: which
   event put aside is started next, and that each comes back once */

#include "build_config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tap.h"
#include "runner_int.h"

static struct spool_tool tool = {.timeout_ms = 3000, .concurrency = 4};

/* share_take - count an attempt in, as runner_post() does: its slowness
   is kept with it (struct transfer), for counting it out */

static int share_take(struct runner *r, const char *origin)
{
    int     slow;

    (void) runner_share_admits(r, origin, &slow);
    runner_share_count(r, origin, slow, 1);
    return (slow);
}

static void next_is(struct runner *r, const char *want, int want_uncapped, const char *what)
{
    int     uncapped = -1;
    char   *got = runner_capped_next(r, &uncapped);

    is_str(got, want, "%s: %s", what, want ? want : "nothing");
    if (got != NULL)
	is_int(uncapped, want_uncapped, "%s: %s", what, want_uncapped ? "uncapped" : "admitted");
    free(got);
}

/* the case of the CI of 927243d: a live origin's third event behind a slow backlog */

static void test_live_behind_backlog(void)
{
    struct runner r = {.tool = &tool};
    char    id[32];

    runner_slow_mark(&r, "http://h0:80", 1.4, 1);	/* a 503 */
    runner_slow_mark(&r, "http://h1:80", 3.0, 0);	/* hung */
    for (int i = 0; i < 40; i++) {
	snprintf(id, sizeof(id), "slow%d", i);
	runner_capped(&r, id, i % 2 ? "http://h1:80" : "http://h0:80");
    }
    int     h0 = share_take(&r, "http://h0:80");
    int     h1 = share_take(&r, "http://h1:80");

    share_take(&r, "http://live:80");
    share_take(&r, "http://live:80");
    runner_capped(&r, "live3", "http://live:80");
    runner_capped(&r, "live4", "http://live:80");
    is_int(r.slow_running, 2, "two slow attempts counted");
    next_is(&r, "slow0", 1, "every origin at its share: the first, uncapped");
    int     h0b = share_take(&r, "http://h0:80");

    runner_share_count(&r, "http://live:80", 0, -1);
    next_is(&r, "live3", 0, "the live origin freed a slot: its event, not the backlog's");
    share_take(&r, "http://live:80");
    runner_share_count(&r, "http://h0:80", h0, -1);
    runner_share_count(&r, "http://h0:80", h0b, -1);
    is_int(r.slow_running, 1, "slow attempts counted out");
    next_is(&r, "slow1", 0, "a slow slot freed: the first slow event admitted (h1's)");
    int     h1b = share_take(&r, "http://h1:80");

    runner_share_count(&r, "http://live:80", 0, -1);
    next_is(&r, "live4", 0, "the slow ones at their share: the live origin's, though later");
    share_take(&r, "http://live:80");
    runner_share_count(&r, "http://h1:80", h1, -1);
    int     h0c = share_take(&r, "http://h0:80");

    is_int(r.slow_running, 2, "h0 and h1 at the slow share again");
    runner_slow_mark(&r, "http://h1:80", 0.1, 0);	/* quick: no longer slow */
    next_is(&r, "slow3", 0, "h1 quick again: its next admitted, h0's still held back");
    runner_share_count(&r, "http://h1:80", h1b, -1);
    runner_share_count(&r, "http://h0:80", h0c, -1);
    is_int(r.slow_running, 0, "every slow attempt counted out as it was counted in");
    runner_capped_free(&r);
    ok(r.capped == NULL && r.capped_set == NULL && r.slow == NULL && r.origins == NULL,
       "all freed");
}

/* every id put aside comes back exactly once, whatever the counts */

static void test_each_once(void)
{
    struct runner r = {.tool = &tool};
    enum {N = 5000};
    static int seen[N];
    const char *origins[] = {"http://a:80", "http://b:80", "http://c:443", "http://d:80"};
    char    id[32], *got;
    int     in = 0, out = 0, dup = 0, wrong = 0, uncapped, order = 0, nflight = 0;
    struct {
	const char *origin;
	int     slow;
    }       flight[64];

    srand(11);
    for (int round = 0; in < N || r.chead < r.ncapped; round++) {
	if (in < N && rand() % 3) {
	    snprintf(id, sizeof(id), "e%d", in);
	    runner_capped(&r, id, origins[in % 4]);
	    if (in % 7 == 0)
		runner_capped(&r, id, origins[in % 4]);	/* again: once only */
	    in++;
	} else if (rand() % 2) {
	    runner_slow_mark(&r, origins[rand() % 4], (double) (rand() % 4), rand() % 2);
	    if (rand() % 2 && nflight < 64) {
		flight[nflight].origin = origins[rand() % 4];
		flight[nflight].slow = share_take(&r, flight[nflight].origin);
		nflight++;
	    } else if (nflight > 0) {
		int     k = rand() % nflight;

		runner_share_count(&r, flight[k].origin, flight[k].slow, -1);
		flight[k] = flight[--nflight];
	    }
	} else if ((got = runner_capped_next(&r, &uncapped)) != NULL) {
	    int     n = atoi(got + 1);

	    if (n < 0 || n >= N)
		wrong++;
	    else if (seen[n]++)
		dup++;
	    if (!uncapped) {
		int     slow;

		/* admitted: it would still be (nothing changed since) */
		order += !runner_share_admits(&r, origins[n % 4], &slow);
	    }
	    out++;
	    free(got);
	}
    }
    is_int(out, N, "5,000 put aside (some twice), 5,000 came back");
    is_int(dup + wrong, 0, "none twice, none unknown");
    is_int(order, 0, "each one admitted was admitted by the counts");
    while (nflight > 0) {
	nflight--;
	runner_share_count(&r, flight[nflight].origin, flight[nflight].slow, -1);
    }
    is_int(r.slow_running, 0, "in flight counted out: no slow attempt left");
    ok(r.origins == NULL || htable_find(r.origins, "http://a:80") == NULL,
       "in flight counted out: no origin's count left");
    ok(r.chead == 0 && r.ncapped == 0, "the queue is empty");
    runner_capped_free(&r);
}

int     main(void)
{
    int     uncapped = -1;
    struct runner r = {.tool = &tool};

    ok(runner_capped_next(&r, &uncapped) == NULL, "nothing put aside: NULL");
    test_live_behind_backlog();
    test_each_once();
    return (tap_done());
}
