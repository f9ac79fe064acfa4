#ifndef MXKIT_METRICS_H
#define MXKIT_METRICS_H

/* metrics - counters, gauges and histograms in Prometheus text format. */

#include <stddef.h>
#include <stdint.h>

struct metrics_series;

struct metrics_series *metrics_counter(const char *name, const char *help,
				               const char *labels);
struct metrics_series *metrics_gauge(const char *name, const char *help,
				             const char *labels);
struct metrics_series *metrics_histogram(const char *name, const char *help,
				                 const char *labels, const double *bounds,
					         int nbounds);
struct metrics_series *metrics_latency_histogram(const char *name, const char *help,
						         const char *labels);
void    metrics_config_reload(int ok);
void    metrics_gauge_callback(const char *name, const char *help, const char *labels,
			               double (*fn) (void *), void *context);
void    metrics_add(struct metrics_series *s, uint64_t n);
void    metrics_set(struct metrics_series *s, double value);
void    metrics_observe(struct metrics_series *s, double value);
char   *metrics_render(size_t *len);
const char *metrics_label_value(const char *text, char *buf, size_t len);
void    metrics_reset(void);

#define metrics_inc(s) metrics_add((s), 1)

/* seconds: 100 us .. 10 s, for request latencies */
extern const double metrics_latency_bounds[];
extern const int metrics_latency_nbounds;

#endif
