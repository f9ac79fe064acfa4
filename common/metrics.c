/*
 * NAME
 *	metrics 3
 * SUMMARY
 *	counters, gauges and histograms in Prometheus text format
 * SYNOPSIS
 *	#include "metrics.h"
 *
 *	struct metrics_series *metrics_counter(name, help, labels)
 *	struct metrics_series *metrics_gauge(name, help, labels)
 *	struct metrics_series *metrics_histogram(name, help, labels, bounds, n)
 *	struct metrics_series *metrics_latency_histogram(name, help, labels)
 *	void	metrics_config_reload(ok)
 *	void	metrics_gauge_callback(name, help, labels, fn, context)
 *	void	metrics_add(series, n)
 *	void	metrics_set(series, value)
 *	void	metrics_observe(series, value)
 *	char	*metrics_render(&len)
 *	const char *metrics_label_value(text, buf, len)
 * DESCRIPTION
 *	One process-wide registry. metrics_counter() and friends return
 *	the series for a family name and a label set, creating it the
 *	first time: call them when a configuration is loaded, keep the
 *	pointer, and a reload that asks again gets the same series (its
 *	count goes on). labels is the inside of the braces, already
 *	formatted (limit="per_user",action="defer"), or NULL; values
 *	that come from configuration go through metrics_label_value(),
 *	which escapes them.
 *
 *	metrics_latency_histogram() is a histogram with the shared latency
 *	buckets (100 us .. 10 s). metrics_config_reload() counts a reload
 *	in mxkit_config_reloads_total{result="ok"|"failed"}, the family
 *	every daemon that reloads on SIGHUP reports.
 *
 *	Updates are lock-free atomics, so any thread may update while
 *	another renders. A gauge callback is called at render time (spool
 *	depth, say). metrics_render() returns the text exposition format
 *	(version 0.0.4), one HELP and TYPE per family, malloc()ed.
 * DIAGNOSTICS
 *	A name used with two types, or a bad name, is a panic: that is a
 *	programming error, not input.
 */

#include "build_config.h"

#include <ctype.h>
#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "metrics.h"
#include "msg.h"
#include "xalloc.h"

enum metrics_type { METRICS_COUNTER, METRICS_GAUGE, METRICS_HISTOGRAM, METRICS_CALLBACK };

struct metrics_series {
    char   *name, *help, *labels;
    enum metrics_type type;
    uint64_t value;			/* counter; gauge: double bits */
    double *bounds;			/* histogram */
    int     nbounds;
    uint64_t *buckets;			/* nbounds + 1 (+Inf) */
    uint64_t sum_bits;			/* double, updated by CAS */
    double  (*fn) (void *);
    void   *context;
    struct metrics_series *next;
};

const double metrics_latency_bounds[] = {
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10,
};
const int metrics_latency_nbounds = sizeof(metrics_latency_bounds) / sizeof(double);

static pthread_mutex_t metrics_lock = PTHREAD_MUTEX_INITIALIZER;
static struct metrics_series *metrics_head, **metrics_tail = &metrics_head;

static uint64_t metrics_bits(double d)
{
    uint64_t u;

    memcpy(&u, &d, sizeof(u));
    return (u);
}

struct metrics_series *metrics_latency_histogram(const char *name, const char *help,
						         const char *labels)
{
    return (metrics_histogram(name, help, labels, metrics_latency_bounds,
			      metrics_latency_nbounds));
}

void    metrics_config_reload(int ok)
{
    metrics_inc(metrics_counter("mxkit_config_reloads_total", "Configuration reloads.",
				ok ? "result=\"ok\"" : "result=\"failed\""));
}

static double metrics_double(uint64_t u)
{
    double  d;

    memcpy(&d, &u, sizeof(d));
    return (d);
}

static int metrics_name_ok(const char *name)
{
    if (!isalpha((unsigned char) *name) && *name != '_')
	return (0);
    return (strspn(name, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_:")
	    == strlen(name));
}

static struct metrics_series *metrics_get(const char *name, const char *help,
				                  const char *labels, enum metrics_type type)
{
    struct metrics_series *s;

    if (!metrics_name_ok(name))
	msg_panic("metrics: bad name \"%s\"", name);
    labels = labels ? labels : "";
    pthread_mutex_lock(&metrics_lock);
    for (s = metrics_head; s; s = s->next) {
	if (strcmp(s->name, name) != 0)
	    continue;
	if (s->type != type)
	    msg_panic("metrics: %s used with two types", name);
	if (strcmp(s->labels, labels) == 0)
	    break;
    }
    if (s == NULL) {
	s = xcalloc(1, sizeof(*s));
	s->name = xstrdup(name);
	s->help = xstrdup(help);
	s->labels = xstrdup(labels);
	s->type = type;
	*metrics_tail = s;
	metrics_tail = &s->next;
    }
    pthread_mutex_unlock(&metrics_lock);
    return (s);
}

struct metrics_series *metrics_counter(const char *name, const char *help, const char *labels)
{
    return (metrics_get(name, help, labels, METRICS_COUNTER));
}

struct metrics_series *metrics_gauge(const char *name, const char *help, const char *labels)
{
    return (metrics_get(name, help, labels, METRICS_GAUGE));
}

struct metrics_series *metrics_histogram(const char *name, const char *help,
				                 const char *labels, const double *bounds,
					         int nbounds)
{
    struct metrics_series *s = metrics_get(name, help, labels, METRICS_HISTOGRAM);

    pthread_mutex_lock(&metrics_lock);
    if (s->buckets == NULL) {
	s->bounds = xmalloc(nbounds * sizeof(double));
	memcpy(s->bounds, bounds, nbounds * sizeof(double));
	s->nbounds = nbounds;
	s->buckets = xcalloc(nbounds + 1, sizeof(uint64_t));
    }
    pthread_mutex_unlock(&metrics_lock);
    return (s);
}

void    metrics_gauge_callback(const char *name, const char *help, const char *labels,
			               double (*fn) (void *), void *context)
{
    struct metrics_series *s = metrics_get(name, help, labels, METRICS_CALLBACK);

    pthread_mutex_lock(&metrics_lock);
    s->fn = fn;
    s->context = context;
    pthread_mutex_unlock(&metrics_lock);
}

void    metrics_add(struct metrics_series *s, uint64_t n)
{
    __atomic_add_fetch(&s->value, n, __ATOMIC_RELAXED);
}

void    metrics_set(struct metrics_series *s, double value)
{
    __atomic_store_n(&s->value, metrics_bits(value), __ATOMIC_RELAXED);
}

void    metrics_observe(struct metrics_series *s, double value)
{
    uint64_t old, new;
    int     i = 0;

    while (i < s->nbounds && value > s->bounds[i])
	i++;
    __atomic_add_fetch(&s->buckets[i], 1, __ATOMIC_RELAXED);
    old = __atomic_load_n(&s->sum_bits, __ATOMIC_RELAXED);
    do {
	new = metrics_bits(metrics_double(old) + value);
    } while (!__atomic_compare_exchange_n(&s->sum_bits, &old, new, 1,
					  __ATOMIC_RELAXED, __ATOMIC_RELAXED));
}

/* metrics_label_value - escape \, " and newline for a label value */

const char *metrics_label_value(const char *text, char *buf, size_t len)
{
    size_t  o = 0;

    for (; *text && o + 3 < len; text++) {
	if (*text == '\\' || *text == '"')
	    buf[o++] = '\\', buf[o++] = *text;
	else if (*text == '\n')
	    buf[o++] = '\\', buf[o++] = 'n';
	else
	    buf[o++] = *text;
    }
    buf[o] = 0;
    return (buf);
}

struct metrics_out {
    char   *data;
    size_t  len, size;
};

static void metrics_printf(struct metrics_out *out, const char *fmt,...)
	__attribute__((format(printf, 2, 3)));

static void metrics_printf(struct metrics_out *out, const char *fmt,...)
{
    va_list ap;
    int     n;

    for (;;) {
	va_start(ap, fmt);
	n = vsnprintf(out->data + out->len, out->size - out->len, fmt, ap);
	va_end(ap);
	if (n >= 0 && (size_t) n < out->size - out->len)
	    break;
	out->size = out->size * 2 + (n > 0 ? (size_t) n : 0);
	out->data = xrealloc(out->data, out->size);
    }
    out->len += (size_t) n;
}

/* metrics_value - Prometheus float syntax */

static void metrics_value(struct metrics_out *out, double v)
{
    if (isinf(v))
	metrics_printf(out, "%s\n", v > 0 ? "+Inf" : "-Inf");
    else if (isnan(v))
	metrics_printf(out, "NaN\n");
    else
	metrics_printf(out, "%.17g\n", v);
}

/* metrics_name - NAME or NAME{LABELS}, with a suffix on NAME */

static void metrics_name(struct metrics_out *out, const struct metrics_series *s,
			         const char *suffix)
{
    if (*s->labels)
	metrics_printf(out, "%s%s{%s} ", s->name, suffix, s->labels);
    else
	metrics_printf(out, "%s%s ", s->name, suffix);
}

static void metrics_series_render(struct metrics_out *out, const struct metrics_series *s)
{
    const char *sep = *s->labels ? "," : "";
    uint64_t cumulative = 0;
    char    le[40];

    switch (s->type) {
    case METRICS_COUNTER:
	metrics_name(out, s, "");
	metrics_printf(out, "%llu\n",
		       (unsigned long long) __atomic_load_n(&s->value, __ATOMIC_RELAXED));
	break;
    case METRICS_GAUGE:
	metrics_name(out, s, "");
	metrics_value(out, metrics_double(__atomic_load_n(&s->value, __ATOMIC_RELAXED)));
	break;
    case METRICS_CALLBACK:
	metrics_name(out, s, "");
	metrics_value(out, s->fn ? s->fn(s->context) : NAN);
	break;
    case METRICS_HISTOGRAM:
	for (int i = 0; i <= s->nbounds; i++) {
	    cumulative += __atomic_load_n(&s->buckets[i], __ATOMIC_RELAXED);
	    if (i < s->nbounds)
		snprintf(le, sizeof(le), "%g", s->bounds[i]);
	    else
		strcpy(le, "+Inf");
	    metrics_printf(out, "%s_bucket{%s%sle=\"%s\"} %llu\n", s->name, s->labels, sep, le,
			   (unsigned long long) cumulative);
	}
	metrics_name(out, s, "_sum");
	metrics_value(out, metrics_double(__atomic_load_n(&s->sum_bits, __ATOMIC_RELAXED)));
	metrics_name(out, s, "_count");
	metrics_printf(out, "%llu\n", (unsigned long long) cumulative);
	break;
    }
}

char   *metrics_render(size_t *len)
{
    static const char *const types[] = {"counter", "gauge", "histogram", "gauge"};
    struct metrics_out out = {xmalloc(4096), 0, 4096};
    struct metrics_series *s, *t, *prev;

    out.data[0] = 0;
    pthread_mutex_lock(&metrics_lock);
    for (s = metrics_head; s; s = s->next) {
	for (prev = metrics_head; prev != s && strcmp(prev->name, s->name) != 0; prev = prev->next)
	    ;
	if (prev != s)
	    continue;				/* family already written */
	metrics_printf(&out, "# HELP %s %s\n# TYPE %s %s\n", s->name, s->help, s->name,
		       types[s->type]);
	for (t = s; t; t = t->next)
	    if (strcmp(t->name, s->name) == 0)
		metrics_series_render(&out, t);
    }
    pthread_mutex_unlock(&metrics_lock);
    *len = out.len;
    return (out.data);
}

/* metrics_reset - forget every series (tests) */

void    metrics_reset(void)
{
    struct metrics_series *s, *next;

    pthread_mutex_lock(&metrics_lock);
    for (s = metrics_head; s; s = next) {
	next = s->next;
	free(s->name);
	free(s->help);
	free(s->labels);
	free(s->bounds);
	free(s->buckets);
	free(s);
    }
    metrics_head = NULL;
    metrics_tail = &metrics_head;
    pthread_mutex_unlock(&metrics_lock);
}
