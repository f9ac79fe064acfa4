/*
 * NAME
 *	runner_metrics 3
 * SUMMARY
 *	lmtp-webhook-spool run's Prometheus series
 * SYNOPSIS
 *	#include "spool_tool.h"
 *
 *	void	runner_metrics_init(&tool)
 *	void	runner_count(series)
 *	struct runner_metrics runner_metrics;
 * DESCRIPTION
 *	runner_metrics_init() registers the series metrics_listen serves
 *	(doc/metrics.md): attempts by outcome, the attempt duration, and
 *	the depth and oldest age of active/, read at scrape time.
 *	runner_count() counts one in a series, if there are series (only
 *	run with metrics_listen has them). Split from runner.c, which
 *	keeps the delivery loop.
 */

#include "build_config.h"

#include <stdlib.h>
#include <sys/stat.h>
#include <time.h>

#include "metrics.h"
#include "spool.h"
#include "spool_tool.h"

/* Prometheus series (run only) */
struct runner_metrics runner_metrics;

void    runner_count(struct metrics_series *s)
{
    if (s)
	metrics_inc(s);
}

/* runner_spool_stats - depth and oldest age of active/, at scrape time */

static double runner_depth(void *context)
{
    int     n;
    char  **names = spool_list(((struct spool_tool *) context)->dir, SPOOL_ACTIVE, &n);

    spool_list_free(names, n);
    return (n);
}

static double runner_oldest(void *context)
{
    struct spool_tool *tool = context;
    int     n;
    char  **names = spool_list(tool->dir, SPOOL_ACTIVE, &n);
    double  oldest = 0;
    time_t  now = time(NULL);

    for (int i = 0; i < n; i++) {
	char   *path = spool_path(tool->dir, SPOOL_ACTIVE, names[i]);
	struct stat st;

	/* ctime: when the event file was last written, at most its age */
	if (stat(path, &st) == 0 && difftime(now, st.st_ctime) > oldest)
	    oldest = difftime(now, st.st_ctime);
	free(path);
    }
    spool_list_free(names, n);
    return (oldest);
}

void    runner_metrics_init(struct spool_tool *tool)
{
    const char *help = "Webhook attempts by outcome.";

    runner_metrics.delivered = metrics_counter("mxkit_webhook_events_total", help,
					       "outcome=\"delivered\"");
    runner_metrics.failed = metrics_counter("mxkit_webhook_events_total", help,
					    "outcome=\"failed\"");
    runner_metrics.gone = metrics_counter("mxkit_webhook_events_total", help,
					  "outcome=\"gone\"");
    runner_metrics.dead = metrics_counter("mxkit_webhook_events_total", help,
					  "outcome=\"dead_lettered\"");
    runner_metrics.duration = metrics_latency_histogram("mxkit_webhook_attempt_duration_seconds",
				"Time of one POST attempt, connection included.", NULL);
    metrics_gauge_callback("mxkit_webhook_spool_depth", "Events waiting in active/.", NULL,
			   runner_depth, tool);
    metrics_gauge_callback("mxkit_webhook_spool_oldest_seconds",
			   "Time since the oldest waiting event was last written.", NULL,
			   runner_oldest, tool);
}
