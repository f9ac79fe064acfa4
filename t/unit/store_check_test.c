/* store_check_test - unit tests for policyd-ratelimit/store_check.c */

#include "build_config.h"

#include <stdio.h>
#include <string.h>

#include "store.h"
#include "tap.h"

static struct store_op ops[4];
static struct store_call call = {.ops = ops};

static void rate(int i, int limit, double interval, double capacity, double cost)
{
    memset(ops + i, 0, sizeof(ops[i]));
    ops[i].kind = STORE_OP_RATE;
    ops[i].limit = limit;
    ops[i].interval = interval;
    ops[i].capacity = capacity;
    ops[i].cost = cost;
    ops[i].allowed = -1;
}

int     main(void)
{
    const double now = 1.7e15;			/* Redis TIME in us */
    const char *values[4] = {0};
    char    tat[64];

    /* 10/1m: interval 6e6 us, capacity 60e6 us */
    call.count = 1;
    rate(0, 0, 6e6, 60e6, 1);
    ok(store_check_eval(&call, now, values) == NULL && ops[0].allowed == 1
       && ops[0].retry_after == 0 && call.charged == 0, "an absent key: fits, nothing charged");
    snprintf(tat, sizeof(tat), "%.3f", now + 54e6);
    values[0] = tat;
    ok(store_check_eval(&call, now, values) == NULL && ops[0].allowed == 1,
       "TAT 54 s ahead + 6 s = the 60 s capacity: fits (<=)");
    snprintf(tat, sizeof(tat), "%.3f", now + 54e6 + 0.5);
    ok(store_check_eval(&call, now, values) == NULL && ops[0].allowed == 1,
       "half a microsecond more: fits (the memory store's slack, gcra.h)");
    snprintf(tat, sizeof(tat), "%.3f", now + 54e6 + 0.75);
    ok(store_check_eval(&call, now, values) == NULL && ops[0].allowed == 0
       && ops[0].retry_after == 1, "0.75 us more: over, retry_after rounded up to 1");
    snprintf(tat, sizeof(tat), "%.3f", now + 60e6);
    store_check_eval(&call, now, values);
    is_int((long long) ops[0].retry_after, 6000000, "a full bucket: retry after one interval");
    snprintf(tat, sizeof(tat), "%.3f", now - 1e9);
    ok(store_check_eval(&call, now, values) == NULL && ops[0].allowed == 1,
       "a TAT in the past counts from now");
    rate(0, 0, 6e6, 60e6, 11);
    values[0] = NULL;
    ok(store_check_eval(&call, now, values) == NULL && ops[0].allowed == 0
       && ops[0].retry_after == 6e6, "a cost of 11 never fits 10 at once");

    /* the script is sent "%.17g": the doubles themselves, no rounding */
    rate(0, 0, 68.66455078125, 3.6e9, 52428800);
    ok(store_check_eval(&call, now, values) == NULL && ops[0].allowed == 1,
       "50M/1h count=bytes: a fresh key's message of exactly 50M fits (six decimals of the "
       "interval made it 11 us too costly)");
    rate(0, 0, 1.5, 0.9996, 1);
    ok(store_check_eval(&call, 0, values) == NULL && ops[0].allowed == 0
       && ops[0].retry_after == 1, "capacity not rounded: 0.9996 + 0.5 is less than 1.5");
    rate(0, 0, 1.5, 1.0, 1);
    ok(store_check_eval(&call, 0, values) == NULL && ops[0].allowed == 1,
       "and 1.0 + 0.5 is not");

    values[0] = "12abc";
    rate(0, 0, 6e6, 60e6, 1);
    ok(store_check_eval(&call, now, values) != NULL
       && store_check_eval(&call, now, values) != STORE_CHECK_SCRIPT,
       "a value that is not a number is an error (the script fails on it too)");
    values[0] = " 5 ";
    ok(store_check_eval(&call, now, values) == NULL, "spaces around a number: tonumber() reads it");

    /* quarantine: LOCK blocks; STRIKE sends the call to the script */
    call.count = 3;
    rate(0, 0, 6e6, 60e6, 11);
    values[0] = NULL;
    memset(ops + 1, 0, sizeof(ops[1]));
    ops[1].kind = STORE_OP_LOCK;
    memset(ops + 2, 0, sizeof(ops[2]));
    ops[2].kind = STORE_OP_STRIKE;
    ops[2].limit = 0;
    values[1] = NULL;
    ok(store_check_eval(&call, now, values) == STORE_CHECK_SCRIPT,
       "a limit over with its strike op and no lock: the script decides");
    ops[0].cost = 1;
    ok(store_check_eval(&call, now, values) == NULL && ops[1].allowed == 1
       && ops[2].struck == 0, "the limit fits: no strike, no lock, decided here");
    ops[0].cost = 11;
    values[1] = "1700000000000000";
    ok(store_check_eval(&call, now, values) == NULL && ops[1].allowed == 0,
       "a lock in force blocks and no strike counts: decided here");
    ops[2].limit = 1;
    values[1] = NULL;
    ok(store_check_eval(&call, now, values) == NULL,
       "a strike of another limit (which fits) does not count");
    return (tap_done());
}
