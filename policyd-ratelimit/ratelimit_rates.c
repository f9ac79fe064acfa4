/*
 * NAME
 *	ratelimit_rates 3
 * SUMMARY
 *	a limit's rate= list
 * SYNOPSIS
 *	#include "ratelimit.h"
 *
 *	const char *ratelimit_parse_rates(text, &rates)
 * DESCRIPTION
 *	"30/1m,500/1d" (sizes allowed: "50M/1h") into rates, at most
 *	LIMIT_RATES_MAX, one per period: a rate's counter is kept by its
 *	period (decide.c).
 * DIAGNOSTICS
 *	NULL, or a static error.
 */

#include "build_config.h"

#include <stdio.h>
#include <string.h>

#include "config.h"
#include "ratelimit.h"

/* ratelimit_parse_rates - "30/1m,500/1d" (sizes allowed: "50M/1h") */

const char *ratelimit_parse_rates(const char *text, struct limit_rates *rates)
{
    int     count;
    char  **items = config_split_list(text, &count);
    const char *err = NULL;

    memset(rates, 0, sizeof(*rates));
    if (count == 0)
	err = "empty rate";
    if (count > LIMIT_RATES_MAX)
	err = "too many rates (at most 4)";
    for (int i = 0; i < count && err == NULL; i++) {
	struct limit_rate *rate = rates->rate + i;
	char   *slash = strchr(items[i], '/');

	if (slash == NULL) {
	    err = "rate must be COUNT/PERIOD, for example 30/1m";
	    break;
	}
	*slash = 0;
	if (config_parse_size(items[i], &rate->count) != NULL || rate->count <= 0)
	    err = "bad rate count (a positive number, k/M/G allowed)";
	else if (config_parse_duration(slash + 1, &rate->period_ms) != NULL
		 || rate->period_ms <= 0)
	    err = "bad rate period (for example 1m, 1h, 1d)";
	*slash = '/';
	snprintf(rate->text, sizeof(rate->text), "%s", items[i]);
	rates->count++;
	/* a rate's state is known by its period (decide.c): one per period */
	for (int j = 0; j < i && err == NULL; j++)
	    if (rates->rate[j].period_ms == rate->period_ms)
		err = "two rates over one period (only the smaller would count): keep one";
    }
    config_list_free(&items);
    return (err);
}

