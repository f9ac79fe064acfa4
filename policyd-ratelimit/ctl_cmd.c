/*
 * NAME
 *	ctl_cmd 3
 * SUMMARY
 *	control requests: parsing, store keys, answers
 * SYNOPSIS
 *	#include "ctl.h"
 *
 *	const char *ctl_request_parse(line, len, &req)
 *	void	ctl_keys(limits, value, what, adm)
 *	void	ctl_show(limits, req, adm, out)
 *	struct ctl_top *ctl_top_create(n)
 * DESCRIPTION
 *	A request is one line: "show KEY", "reset KEY", "release KEY" or
 *	"top [N]" (N from 1 to CTL_TOP_MAX, default CTL_TOP_DEFAULT).
 *	KEY is a value as requests carry it (a SASL login, an address,
 *	a client IP): each limit and quarantine turns it into its own
 *	key as it does for a request (case, trailing dot, A-labels,
 *	networks, long values hashed), so "show 192.0.2.9" finds the
 *	192.0.2.0/24 state of a client_address/24/64 limit.
 *
 *	Answers are computed from the values the store keeps (store.h:
 *	the same text from both stores) and its clock, so the memory
 *	and the Redis store give the same answers. A rate's state is its
 *	TAT: what remains is (capacity - (TAT - now)) / interval units
 *	(messages, recipients or bytes), and it is full again at TAT.
 * DIAGNOSTICS
 *	ctl_request_parse() returns a static error text, or NULL.
 */

#include "build_config.h"

#include <errno.h>
#include <grp.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/un.h>
#include <unistd.h>

#include "addr.h"
#include "ctl.h"
#include "policy_request.h"
#include "quarantine.h"
#include "xalloc.h"

void    ctl_printf(struct ctl_out *out, const char *fmt,...)
{
    va_list ap;
    int     n;

    for (;;) {
	va_start(ap, fmt);
	n = vsnprintf(out->text ? out->text + out->len : NULL,
		      out->text ? out->cap - out->len : 0, fmt, ap);
	va_end(ap);
	if (out->text && (size_t) n < out->cap - out->len)
	    break;
	out->cap = out->cap * 2 + n + 256;
	out->text = xrealloc(out->text, out->cap);
    }
    out->len += n;
}

const char *ctl_request_parse(const char *line, size_t len, struct ctl_request *req)
{
    static const char *const verbs[] = {"show ", "reset ", "top", "release ", 0};
    const char *arg;
    long long n;
    int     v;

    memset(req, 0, sizeof(*req));
    if (len > 0 && line[len - 1] == '\r')
	len--;
    if (len > CTL_LINE_MAX)
	return ("request longer than the longest key a request can carry");
    if (memchr(line, 0, len) != NULL)
	return ("NUL byte in the request");
    for (v = 0; verbs[v]; v++)
	if (len >= strlen(verbs[v]) && strncmp(line, verbs[v], strlen(verbs[v])) == 0)
	    break;
    if (verbs[v] == 0)
	return ("unknown command (show KEY, reset KEY, top [N], release KEY)");
    req->verb = v;
    arg = line + strlen(verbs[v]);
    len -= strlen(verbs[v]);
    if (v != CTL_TOP) {
	if (len == 0)
	    return ("missing KEY");
	if (len > POLICY_LINE_MAX)		/* no request carries it */
	    return ("KEY longer than 8192 bytes, the longest a policy request can carry");
	req->value = xstrndup(arg, len);
	return (NULL);
    }
    req->top = CTL_TOP_DEFAULT;
    if (len == 0)
	return (NULL);
    req->value = xstrndup(arg, len);
    if (req->value[0] != ' ' || config_parse_int(req->value + 1, &n) != NULL
	|| n < 1 || n > CTL_TOP_MAX) {
	free(req->value);
	req->value = NULL;
	return ("top N: N must be a number from 1 to 1000");
    }
    free(req->value);
    req->value = NULL;
    req->top = (int) n;
    return (NULL);
}

void    ctl_request_free(struct ctl_request *req)
{
    free(req->value);
    req->value = NULL;
}

/* ctl_may_chgrp - root, or a member of gid: chown() of the socket works */

static int ctl_may_chgrp(gid_t gid)
{
    gid_t   groups[1024];
    int     n;

    if (geteuid() == 0 || getegid() == gid)
	return (1);
    if ((n = getgroups(1024, groups)) < 0)
	return (0);
    for (int i = 0; i < n; i++)
	if (groups[i] == gid)
	    return (1);
    return (0);
}

/*
 * ctl_config_check - control_socket and control_group, for -t and start.
 * What only creating the socket needs (a directory this user may write, a
 * group it may give) is checked when starting alone: at a reload the
 * daemon runs as its user, who can do neither where root made the socket,
 * and the settings need a restart anyway; checking them refused every
 * reload of a daemon started as root with a control_group.
 */
void    ctl_config_check(struct config *cfg, int starting)
{
    const struct config_entry *entry;
    const char *path = config_get_str(cfg, "control_socket");
    const char *group = config_get_str(cfg, "control_group");
    char   *dir, *slash;
    const char *why;
    struct sockaddr_un sun;

    if (path && (entry = config_lookup(cfg, "control_socket")) != NULL) {
	dir = xstrdup(path);
	if ((slash = strrchr(dir, '/')) != NULL)
	    *slash = 0;
	if (path[0] != '/')
	    config_add_error(cfg, entry->line, "control_socket must be an absolute path");
	else if (strlen(path) >= sizeof(sun.sun_path))
	    config_add_error(cfg, entry->line, "control_socket: path longer than %zu bytes",
			     sizeof(sun.sun_path) - 1);
	else if ((why = addr_unix_check(path)) != NULL)	/* as for a unix: listener */
	    config_add_error(cfg, entry->line, "control_socket %s: %s", path, why);
	else if (starting && access(*dir ? dir : "/", W_OK | X_OK) < 0)
	    config_add_error(cfg, entry->line, "control_socket: this user (uid %d) cannot "
			     "create a socket in %s: %s", (int) geteuid(), *dir ? dir : "/",
			     strerror(errno));
	free(dir);
    }
    if (group && (entry = config_lookup(cfg, "control_group")) != NULL) {
	struct group *gr = getgrnam(group);

	if (gr == NULL)
	    config_add_error(cfg, entry->line, "control_group: unknown group \"%.64s\"", group);
	else if (starting && !ctl_may_chgrp(gr->gr_gid))
	    config_add_error(cfg, entry->line, "control_group: this user (uid %d) can give "
			     "the socket only a group it is a member of, not \"%.64s\"",
			     (int) geteuid(), group);
	if (path == NULL)
	    config_add_error(cfg, entry->line, "control_group needs control_socket");
    }
    if (config_get_duration(cfg, "notify_timeout") < 1000
	|| config_get_duration(cfg, "notify_timeout") > 3600000)
	config_add_error(cfg, config_line(cfg, "notify_timeout"),
			 "notify_timeout must be 1s to 1h");
}

/*
 * ctl_canon - a value as a limit (or quarantine key) counts it; for a
 * sender_domain or recipient_domain key, an address is its domain, as
 * requests are counted (helper-129: "show bob@snd.example" read a key
 * no request uses, and its reset reset nothing).
 */
static void ctl_canon(const struct limit *limit, const char *value, char *buf)
{
    char    domain[LIMIT_KEY_MAX];
    const char *d;

    if ((strcmp(limit->key_attr, "sender_domain") == 0
	 || strcmp(limit->key_attr, "recipient_domain") == 0) && strpbrk(value, "@%!") != NULL
	&& (d = policy_address_domain(value, domain, sizeof(domain))) != NULL && *d != 0)
	value = d;
    if (ratelimit_value(limit, value, buf) != NULL)
	ratelimit_canon(value, 1, buf);
}

static void ctl_add_key(struct store_admin *adm, char *key)
{
    adm->keys = xrealloc(adm->keys, sizeof(char *) * (adm->count + 1));
    adm->keys[adm->count++] = key;
}

/* ctl_keys - the store keys of a value, in the order ctl_show reads them */

void    ctl_keys(const struct limits *limits, const char *value, int what,
		         struct store_admin *adm)
{
    char    canon[LIMIT_KEY_MAX], key[STORE_KEY_MAX];

    for (int l = 0; (what & CTL_KEYS_RATES) && l < limits->limit_count; l++) {
	const struct limit *limit = limits->limit + l;
	const struct limit_rates *rates;

	ctl_canon(limit, value, canon);
	rates = ratelimit_rates_for(limit, canon);
	for (int r = 0; r < rates->count; r++)
	    ctl_add_key(adm, xasprintf("mxrl:{%s:%s}:%lld", limit->name, canon,
				       rates->rate[r].period_ms));
    }
    for (int i = 0; i < limits->quarantine_count; i++) {
	const struct quarantine *q = limits->quarantine + i;

	ctl_canon(&q->key, value, canon);
	if (what & CTL_KEYS_LOCKS) {
	    quarantine_lock_key(q, canon, key, sizeof(key));
	    ctl_add_key(adm, xstrdup(key));
	}
	if (what & CTL_KEYS_STRIKES) {
	    quarantine_strike_key(q, canon, key, sizeof(key));
	    ctl_add_key(adm, xstrdup(key));
	}
    }
}

/* ctl_rate - one rate's state: remaining units, seconds to full */

static double ctl_rate(struct ctl_out *out, const struct limit *limit,
		               const struct limit_rate *rate, const char *tat_text, double now,
		               const char *key)
{
    double  interval = rate->period_ms * 1000.0 / rate->count;
    long long burst = rate->burst ? rate->burst : rate->count;
    double  used = tat_text ? atof(tat_text) - now : 0;
    double  remaining;

    if (used < 0)
	used = 0;
    remaining = floor((burst * interval + 0.5 - used) / interval);
    if (remaining < 0)
	remaining = 0;
    if (out)
	ctl_printf(out, "limit=%s rate=%s count=%s remaining=%.0f of=%lld time_to_full=%.1fs "
		   "key=%s\n", limit->name, rate->text, ratelimit_count_name(limit->count),
		   remaining, burst, ceil(used / 1e5) / 10, key);
    return (used / (burst * interval));
}

/* ctl_strikes - strikes within the window, from "T1 T2 ..." */

static int ctl_strikes(const char *text, double now, long long window_ms)
{
    int     n = 0;
    char   *end;

    while (text && *text) {
	double  t = strtod(text, &end);

	if (end == text)
	    break;
	if (now - t < window_ms * 1000.0)
	    n++;
	text = end;
    }
    return (n);
}

void    ctl_show(const struct limits *limits, const struct ctl_request *req,
		         const struct store_admin *adm, struct ctl_out *out)
{
    char    canon[LIMIT_KEY_MAX];
    int     k = 0;

    for (int l = 0; l < limits->limit_count; l++) {
	const struct limit *limit = limits->limit + l;
	const struct limit_rates *rates;

	ctl_canon(limit, req->value, canon);
	rates = ratelimit_rates_for(limit, canon);
	for (int r = 0; r < rates->count && k < adm->count; r++, k++)
	    ctl_rate(out, limit, rates->rate + r, adm->values[k], adm->now, canon);
    }
    for (int i = 0; i < limits->quarantine_count && k + 1 < adm->count; i++, k += 2) {
	const struct quarantine *q = limits->quarantine + i;
	const char *lock = adm->values[k];

	ctl_canon(&q->key, req->value, canon);
	if (lock)
	    ctl_printf(out, "quarantine=%s state=locked action=%s locked_for=%.0fs key=%s\n",
		       q->name, ratelimit_action_name(q->action),
		       floor((adm->now - atof(lock)) / 1e6), canon);
	else
	    ctl_printf(out, "quarantine=%s state=open strikes=%d of=%d window=%llds key=%s\n",
		       q->name, ctl_strikes(adm->values[k + 1], adm->now, q->window_ms),
		       q->times, q->window_ms / 1000, canon);
    }
}

/* ctl_release_report - which quarantines held a lock (a bit each) */

void    ctl_release_report(const struct limits *limits, unsigned long long released,
			           struct ctl_out *out)
{
    for (int i = 0; i < limits->quarantine_count; i++)
	if (released & (1ULL << i))
	    ctl_printf(out, "quarantine=%s state=released\n", limits->quarantine[i].name);
    if (released == 0)
	ctl_printf(out, "not locked by any quarantine; strikes cleared\n");
}

/*
 * top: the N keys nearest to (or past) their limit, by the share of
 * the burst in use; locks first. A min-heap of N entries, so memory
 * stays bounded by N whatever the number of keys.
 */
struct ctl_top_entry {
    double  share;
    char   *line;
    char   *key;				/* the store's: seen once only */
};

struct ctl_top {
    struct ctl_top_entry *heap;
    int     count;
    int     cap;
    struct ctl_out locks;
    int     lock_count;
    long long keys;			/* seen */
};

struct ctl_top *ctl_top_create(int n)
{
    struct ctl_top *top = xcalloc(1, sizeof(*top));

    top->cap = n;
    top->heap = xcalloc(n, sizeof(*top->heap));
    return (top);
}

static void ctl_top_sift(struct ctl_top *top, int i)
{
    for (;;) {
	int     l = 2 * i + 1, r = l + 1, m = i;
	struct ctl_top_entry tmp;

	if (l < top->count && top->heap[l].share < top->heap[m].share)
	    m = l;
	if (r < top->count && top->heap[r].share < top->heap[m].share)
	    m = r;
	if (m == i)
	    return;
	tmp = top->heap[i], top->heap[i] = top->heap[m], top->heap[m] = tmp;
	i = m;
    }
}

static void ctl_top_push(struct ctl_top *top, double share, struct ctl_out *line,
			         const char *key)
{
    int     i;

    for (i = 0; i < top->count; i++)		/* a walk may meet a key twice */
	if (strcmp(top->heap[i].key, key) == 0) {
	    free(line->text);
	    return;
	}
    if (top->count == top->cap) {
	free(top->heap[0].line);
	free(top->heap[0].key);
	top->heap[0] = (struct ctl_top_entry) {share, line->text, xstrdup(key)};
	ctl_top_sift(top, 0);
	return;
    }
    i = top->count++;
    top->heap[i] = (struct ctl_top_entry) {share, line->text, xstrdup(key)};
    while (i > 0 && top->heap[(i - 1) / 2].share > top->heap[i].share) {
	struct ctl_top_entry tmp = top->heap[i];

	top->heap[i] = top->heap[(i - 1) / 2];
	top->heap[(i - 1) / 2] = tmp;
	i = (i - 1) / 2;
    }
}

/* ctl_top_rate - "mxrl:{LIMIT:VALUE}:PERIOD" (the longest limit name that fits) */

static void ctl_top_rate(struct ctl_top *top, const struct limits *limits, const char *key,
			         const char *value, double now)
{
    const struct limit *limit = NULL;
    const char *start, *end = strrchr(key, '}');
    char    canon[LIMIT_KEY_MAX];
    struct ctl_out line = {0};
    const struct limit_rates *rates;
    long long period;
    int     r;
    double  share;

    for (int l = 0; l < limits->limit_count; l++) {
	size_t  n = strlen(limits->limit[l].name);

	if (strncmp(key + 6, limits->limit[l].name, n) == 0 && key[6 + n] == ':'
	    && (limit == NULL || n > strlen(limit->name)))
	    limit = limits->limit + l;
    }
    if (limit == NULL || end == NULL || end[1] != ':' || value == NULL)
	return;					/* a limit no longer configured */
    start = key + 6 + strlen(limit->name) + 1;
    if (end < start || (size_t) (end - start) >= sizeof(canon)
	|| config_parse_int(end + 2, &period) != NULL || period <= 0)
	return;
    snprintf(canon, sizeof(canon), "%.*s", (int) (end - start), start);
    rates = ratelimit_rates_for(limit, canon);
    for (r = 0; r < rates->count && rates->rate[r].period_ms != period; r++)
	 /* void */ ;
    if (r >= rates->count || (share = ctl_rate(NULL, limit, rates->rate + r, value, now,
					       canon)) <= 0)
	return;
    if (top->count == top->cap && share <= top->heap[0].share)
	return;					/* not formatted: most keys */
    (void) ctl_rate(&line, limit, rates->rate + r, value, now, canon);
    ctl_top_push(top, share, &line, key);
}

/* ctl_top_seen - whether a lock's line is there already */

static int ctl_top_seen(const struct ctl_top *top, const char *key)
{
    size_t  len = strlen(key);
    char   *line = xasprintf("locked=%.*s locked_for=", (int) (len - 14), key + 8);
    const char *hit = top->locks.text ? strstr(top->locks.text, line) : NULL;
    int     seen = hit && (hit == top->locks.text || hit[-1] == '\n');

    free(line);
    return (seen);
}

void    ctl_top_add(struct ctl_top *top, const struct limits *limits,
		            const struct store_admin *adm)
{
    for (int i = 0; i < adm->count; i++) {
	const char *key = adm->keys[i];
	size_t  len = strlen(key);

	top->keys++;
	if (strncmp(key, "mxrl:{", 6) == 0) {
	    ctl_top_rate(top, limits, key, adm->values[i], adm->now);
	} else if (strncmp(key, "mxrl:q:{", 8) == 0 && len > 14
		   && strcmp(key + len - 6, "}:lock") == 0 && adm->values[i]
		   && top->lock_count < top->cap && !ctl_top_seen(top, key)) {
	    top->lock_count++;
	    ctl_printf(&top->locks, "locked=%.*s locked_for=%.0fs\n", (int) (len - 14),
		       key + 8, floor((adm->now - atof(adm->values[i])) / 1e6));
	}
    }
}

static int ctl_top_order(const void *a, const void *b)
{
    double  x = ((const struct ctl_top_entry *) a)->share;
    double  y = ((const struct ctl_top_entry *) b)->share;

    return (x < y) - (x > y);
}

void    ctl_top_finish(struct ctl_top **topp, struct ctl_out *out)
{
    struct ctl_top *top = *topp;

    if (top->locks.text)
	ctl_printf(out, "%s", top->locks.text);
    qsort(top->heap, top->count, sizeof(*top->heap), ctl_top_order);
    for (int i = 0; i < top->count; i++) {
	ctl_printf(out, "used=%.0f%% %s", top->heap[i].share * 100, top->heap[i].line);
	free(top->heap[i].line);
	free(top->heap[i].key);
    }
    ctl_printf(out, "keys=%lld shown=%d\n", top->keys, top->count);
    free(top->locks.text);
    free(top->heap);
    free(top);
    *topp = NULL;
}
