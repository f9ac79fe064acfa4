/*
 * NAME
 *	milter_metrics 3
 * SUMMARY
 *	milter-dkim's Prometheus series
 * SYNOPSIS
 *	#include "milter.h"
 *
 *	void	milter_metrics_init(void)
 *	void	milter_metrics_count(event)
 *	void	milter_metrics_results(results)
 *	void	milter_metrics_eom(&t0, &t1)
 * DESCRIPTION
 *	milter_metrics_init() makes every series before the session
 *	threads start (metrics(3) adds none afterwards); without a
 *	metrics_listen it is not called and the others count nothing.
 *
 *	milter_metrics_count() counts one MILTER_SIGNED, MILTER_SIGN_FAILED,
 *	MILTER_BINDING (a sender outside its sender_binding) or
 *	MILTER_FORGED (an Authentication-Results header removed).
 *	milter_metrics_results() counts each "dkim=RESULT" of our
 *	Authentication-Results value (a resinfo starts a line); a result
 *	not in the list counts as "other". milter_metrics_eom() observes the
 *	time from t0 to t1 (CLOCK_MONOTONIC) spent at end of message.
 */

#include "build_config.h"

#include <stdio.h>
#include <string.h>
#include <time.h>

#include "auth.h"
#include "metrics.h"
#include "milter.h"

#define MILTER_RESULTS	8		/* milter_verify_results[], "other" last */

static struct {
    struct metrics_series *event[MILTER_EVENTS];
    struct metrics_series *verify[MILTER_RESULTS];
    struct metrics_series *eom;
} milter_metrics;

static const char *const milter_verify_results[MILTER_RESULTS] = {
    "pass", "fail", "neutral", "temperror", "permerror", "policy", "none", "other",
};

void    milter_metrics_init(void)
{
    const char *sig = "DKIM signatures added, or refused by signing errors (451).";
    char    labels[64];

    milter_metrics.event[MILTER_SIGNED] = metrics_counter("mxkit_dkim_signatures_total", sig,
							  "result=\"signed\"");
    milter_metrics.event[MILTER_SIGN_FAILED] = metrics_counter("mxkit_dkim_signatures_total",
							       sig, "result=\"failed\"");
    milter_metrics.eom = metrics_latency_histogram("mxkit_dkim_eom_duration_seconds",
				"Time to sign or verify a message at end of message.", NULL);
    milter_metrics.event[MILTER_FORGED] = metrics_counter(
					"mxkit_dkim_forged_headers_removed_total",
	  "Authentication-Results headers claiming our authserv-id (or unreadable), removed.",
							  NULL);
    milter_metrics.event[MILTER_BINDING] = metrics_counter(
				       "mxkit_dkim_sender_binding_violations_total",
		   "Authenticated senders outside their sender_binding patterns.", NULL);
    auth_metrics_init();
    for (int i = 0; i < MILTER_RESULTS; i++) {
	snprintf(labels, sizeof(labels), "result=\"%s\"", milter_verify_results[i]);
	milter_metrics.verify[i] = metrics_counter("mxkit_dkim_verify_results_total",
			 "Verification results, one per signature (none: unsigned).", labels);
    }
}

void    milter_metrics_count(enum milter_event event)
{
    if (milter_metrics.event[event])
	metrics_inc(milter_metrics.event[event]);
}

void    milter_metrics_results(const char *results)
{
    for (const char *p = results; (p = strstr(p, "\tdkim=")) != NULL; p += 6) {
	size_t  len = strcspn(p + 6, " ;\t\n(");
	int     i = 0;

	while (i < MILTER_RESULTS - 1 && (strlen(milter_verify_results[i]) != len
			 || strncmp(p + 6, milter_verify_results[i], len) != 0))
	    i++;
	if (milter_metrics.verify[i])
	    metrics_inc(milter_metrics.verify[i]);
    }
}

void    milter_metrics_eom(const struct timespec *t0, const struct timespec *t1)
{
    if (milter_metrics.eom)
	metrics_observe(milter_metrics.eom, (t1->tv_sec - t0->tv_sec)
			+ (t1->tv_nsec - t0->tv_nsec) / 1e9);
}
