/*
 * NAME
 *	store_check 3
 * SUMMARY
 *	a check-only call decided from the keys' values
 * SYNOPSIS
 *	#include "store.h"
 *
 *	const char *store_check_eval(call, now, values)
 * DESCRIPTION
 *	The Redis store answers a call that charges nothing (RCPT, DATA)
 *	without its Lua script: it reads the Redis clock (TIME) and the
 *	keys (MGET), pipelined, and this function applies the rule the
 *	script applies when ARGV[1] is 0, with the same numbers (the
 *	script is sent interval, capacity and cost as text that reads
 *	back as the same doubles). The script cost Redis
 *	about 7 us per call against about 1 us for TIME and MGET, and a
 *	check writes nothing: reading the keys at once (MGET is atomic) is
 *	what the script did.
 *
 *	values[i] is op i's key's value (NULL: absent); now is Redis TIME
 *	in microseconds. A LOCK op whose key exists blocks (allowed 0). A
 *	RATE op fits when its TAT, no earlier than now, plus cost times
 *	interval is at most capacity (and the half microsecond of slack
 *	gcra.h allows) ahead of now; retry_after is the
 *	excess, rounded up. Nothing is charged.
 *
 *	The one case a check writes is a strike (a quarantine counting a
 *	limit that did not fit, with no lock in force): then the function
 *	returns STORE_CHECK_SCRIPT and the caller runs the script instead,
 *	which decides the whole call again atomically.
 * DIAGNOSTICS
 *	NULL when the ops' results are set; STORE_CHECK_SCRIPT; or a
 *	static error text (a value that is not a number: the script
 *	failed on it too).
 */

#include "build_config.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "store.h"

const char STORE_CHECK_SCRIPT[] = "a strike may count: run the script";

/* store_check_number - a value as Lua's tonumber() reads ours, or -1 */

static int store_check_number(const char *text, double *value)
{
    char   *end;

    *value = strtod(text, &end);
    if (end == text)
	return (-1);
    while (*end == ' ' || *end == '\t' || *end == '\n' || *end == '\r')
	end++;
    return (*end ? -1 : 0);
}

const char *store_check_eval(struct store_call *call, double now, const char *const *values)
{
    int     locked = 0;

    call->charged = 0;
    for (int i = 0; i < call->count; i++) {
	struct store_op *op = call->ops + i;
	double  tat = 0, ntat, interval, capacity, cost;

	op->allowed = 1;
	op->retry_after = 0;
	op->struck = 0;
	if (op->kind == STORE_OP_LOCK) {
	    if (values[i] != NULL)
		op->allowed = 0, locked = 1;
	    continue;
	}
	if (op->kind != STORE_OP_RATE)
	    continue;
	if (values[i] != NULL && store_check_number(values[i], &tat) < 0)
	    return ("a rate key holds something that is not a number");
	/* sent to the script exactly ("%.17g"): the same doubles */
	interval = op->interval;
	capacity = op->capacity;
	cost = op->cost;
	if (tat < now)
	    tat = now;
	ntat = tat + cost * interval;
	/* the memory store's slack (gcra.h): epoch microseconds in a
	   double are exact to 0.25 us only, and a request that spends
	   exactly the whole burst must fit in every store */
	if (!(op->allowed = (ntat - now <= capacity + 0.5)))
	    op->retry_after = ceil(ntat - now - capacity);
    }
    if (!locked)
	for (int i = 0; i < call->count; i++)
	    if (call->ops[i].kind == STORE_OP_STRIKE && store_call_over(call, call->ops[i].limit))
		return (STORE_CHECK_SCRIPT);
    return (NULL);
}
