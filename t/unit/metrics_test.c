/* metrics_test - unit tests for common/metrics.c */

#include "build_config.h"

#include <stdlib.h>
#include <string.h>

#include "metrics.h"
#include "tap.h"

static double depth(void *context)
{
    return (*(double *) context);
}

static int has(const char *text, const char *line)
{
    return (strstr(text, line) != NULL);
}

int     main(void)
{
    struct metrics_series *dunno, *defer, *again, *lat, *g;
    double  spool = 7;
    char    buf[64], *text;
    size_t  len;

    dunno = metrics_counter("mx_decisions_total", "Decisions.", "limit=\"per_user\",action=\"dunno\"");
    defer = metrics_counter("mx_decisions_total", "Decisions.", "limit=\"per_user\",action=\"defer\"");
    again = metrics_counter("mx_decisions_total", "Decisions.", "limit=\"per_user\",action=\"dunno\"");
    ok(dunno == again, "same name and labels: the same series (a reload keeps counting)");
    ok(dunno != defer, "other labels: another series");
    for (int i = 0; i < 30; i++)
	metrics_inc(dunno);
    metrics_add(defer, 1);
    lat = metrics_histogram("mx_latency_seconds", "Latency.", NULL, metrics_latency_bounds,
			    metrics_latency_nbounds);
    metrics_observe(lat, 0.0002);
    metrics_observe(lat, 0.003);
    metrics_observe(lat, 99);
    g = metrics_gauge("mx_up", "Up.", NULL);
    metrics_set(g, 1);
    metrics_gauge_callback("mx_spool_depth", "Depth.", "dir=\"a\"", depth, &spool);
    text = metrics_render(&len);
    is_int((long long) len, (long long) strlen(text), "length returned");
    ok(has(text, "# HELP mx_decisions_total Decisions.\n# TYPE mx_decisions_total counter\n"),
       "HELP and TYPE");
    ok(strstr(strstr(text, "# TYPE mx_decisions_total") + 1, "# TYPE mx_decisions_total") == NULL,
       "one TYPE line per family");
    ok(has(text, "mx_decisions_total{limit=\"per_user\",action=\"dunno\"} 30\n"), "30 dunno");
    ok(has(text, "mx_decisions_total{limit=\"per_user\",action=\"defer\"} 1\n"), "1 defer");
    ok(has(text, "mx_latency_seconds_bucket{le=\"0.0001\"} 0\n"), "empty first bucket");
    ok(has(text, "mx_latency_seconds_bucket{le=\"0.00025\"} 1\n"), "cumulative buckets");
    ok(has(text, "mx_latency_seconds_bucket{le=\"0.005\"} 2\n"), "3 ms in le=0.005");
    ok(has(text, "mx_latency_seconds_bucket{le=\"10\"} 2\n"), "99 s beyond the last bound");
    ok(has(text, "mx_latency_seconds_bucket{le=\"+Inf\"} 3\n"), "+Inf counts all");
    ok(has(text, "mx_latency_seconds_count 3\n"), "_count");
    ok(has(text, "mx_latency_seconds_sum 99.0032"), "_sum");
    ok(has(text, "# TYPE mx_latency_seconds histogram\n"), "histogram type");
    ok(has(text, "mx_up 1\n"), "gauge without labels: no braces");
    ok(has(text, "mx_spool_depth{dir=\"a\"} 7\n"), "callback gauge read at render time");
    ok(has(text, "# TYPE mx_spool_depth gauge\n"), "callback is a gauge");
    free(text);
    is_str(metrics_label_value("a\"b\\c\nd", buf, sizeof(buf)), "a\\\"b\\\\c\\nd",
	   "label values escaped");
    metrics_reset();
    text = metrics_render(&len);
    is_str(text, "", "reset empties the registry");
    free(text);
    return (tap_done());
}
