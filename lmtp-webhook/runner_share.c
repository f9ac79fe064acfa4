/*
 * NAME
 *	runner_share 3
 * SUMMARY
 *	lmtp-webhook-spool: the slots each receiver origin may take
 * SYNOPSIS
 *	#include "runner_int.h"
 *
 *	char	*runner_origin(url)
 *	int	runner_share_admits(r, origin)
 *	void	runner_share_start(r, transfer)
 *	void	runner_share_end(r, transfer)
 *	void	runner_slow_mark(r, origin, seconds, failed)
 *	int	runner_slow_over(value, context)
 *	void	runner_share_free(r)
 *
 *	void	runner_share_look(r)
 *	int	runner_admits(r, origin, &slow)
 *	int	runner_share_running(r, origin)
 * DESCRIPTION
 *	runner_origin() is a URL's scheme://host:port (newly allocated),
 *	the host in lower case and an IPv4-mapped IPv6 address written as
 *	the IPv4 address it is ("[::ffff:127.0.0.1]" took a share of its
 *	own beside "127.0.0.1"). Other names of one host (localhost) are
 *	other origins.
 *
 *	runner_share_admits() says whether an attempt to an origin may
 *	start now: no origin takes more than half of "concurrency" (at
 *	least one), and the slow origins together take no more than half
 *	(rounded down). An origin is slow while its last attempt's mark
 *	holds (runner_slow_mark()) and while an attempt to it has run half
 *	the timeout or more. runner_share_start() and runner_share_end()
 *	count an attempt in and out (struct transfer: its origin, and when
 *	it started).
 *
 *	runner_slow_mark() marks an origin slow (unhealthy) when an attempt
 *	failed (no 2xx, no 410: the event stays to be posted again) or took
 *	half the timeout or more (a receiver that hangs, or answers as
 *	late), and clears the mark when one was delivered (or refused for
 *	good) in less, RUNNER_SLOW_HOLD or more after the last. Time alone
 *	was evaded: receivers that answered 503 at 0.47 of the timeout were
 *	never slow, and six of them held every slot for 42 s with their
 *	backlog (helper-109). A quick answer cleared it at once: six
 *	receivers that answered two requests at once and hung the third
 *	were cleared between their hangs, each admitted as healthy, and
 *	held every slot: a live receiver's events waited 22.6 s
 *	(helper-114). runner_slow_over()
 *	(an htable_sweep() callback) forgets a mark after
 *	RUNNER_SLOW_MEMORY, so that one bad spell does not cap an origin
 *	for good.
 *
 *	runner_share_free() frees the counts and marks.
 *
 *	runner_share_look() recounts what the attempts in flight say now
 *	(which origins are overdue, how many slow attempts run);
 *	runner_admits() then answers as runner_share_admits() does, and
 *	runner_share_running() counts an origin's attempts in flight:
 *	runner_wait.c, which picks among the events put aside, looks once
 *	and asks for each origin waiting.
 */

#include "build_config.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>

#include <curl/curl.h>

#include "daemon.h"
#include "htable.h"
#include "xalloc.h"
#include "runner_int.h"

/* runner_host_v4 - "[::ffff:a.b.c.d]" as "a.b.c.d"; any other host as it is */

static const char *runner_host_v4(const char *host, char *buf, size_t len)
{
    struct in6_addr a6;
    size_t  n = strlen(host);
    char    inner[INET6_ADDRSTRLEN];

    if (n < 3 || host[0] != '[' || host[n - 1] != ']' || n - 2 >= sizeof(inner))
	return (host);
    memcpy(inner, host + 1, n - 2);
    inner[n - 2] = 0;
    if (inet_pton(AF_INET6, inner, &a6) != 1 || !IN6_IS_ADDR_V4MAPPED(&a6)
	|| inet_ntop(AF_INET, a6.s6_addr + 12, buf, len) == NULL)
	return (host);
    return (buf);
}

/* runner_origin - scheme://host:port of a URL; the URL itself if unparsed */

char   *runner_origin(const char *url)
{
    CURLU  *u = curl_url();
    char   *scheme = NULL, *host = NULL, *port = NULL, *origin;

    if (u != NULL && curl_url_set(u, CURLUPART_URL, url, 0) == CURLUE_OK
	&& curl_url_get(u, CURLUPART_SCHEME, &scheme, 0) == CURLUE_OK
	&& curl_url_get(u, CURLUPART_HOST, &host, 0) == CURLUE_OK
	&& curl_url_get(u, CURLUPART_PORT, &port, CURLU_DEFAULT_PORT) == CURLUE_OK) {
	char    mapped[INET_ADDRSTRLEN + 2];

	for (char *cp = host; *cp; cp++)
	    if (*cp >= 'A' && *cp <= 'Z')
		*cp += 'a' - 'A';
	origin = xasprintf("%s://%s:%s", scheme, runner_host_v4(host, mapped, sizeof(mapped)),
			   port);
    } else
	origin = xstrdup(url);
    curl_free(scheme);
    curl_free(host);
    curl_free(port);
    curl_url_cleanup(u);
    return (origin);
}

/* runner_origin_state - an origin's attempts in flight (r->origins) */

static struct runner_origin_state *runner_origin_state(struct runner *r, const char *origin)
{
    return (r->origins ? htable_find(r->origins, origin) : NULL);
}

/* runner_marked - whether an origin's last attempt marked it slow */

static int runner_marked(struct runner *r, const char *origin)
{
    long long *since = r->slow ? htable_find(r->slow, origin) : NULL;

    return (since != NULL && daemon_mono_sec() - *since <= RUNNER_SLOW_MEMORY);
}

/* runner_origin_slow - marked, or an attempt to it in flight is overdue */

static int runner_origin_slow(struct runner *r, const char *origin)
{
    struct runner_origin_state *state = runner_origin_state(r, origin);

    return ((state != NULL && state->overdue) || runner_marked(r, origin));
}

/*
 * runner_share_look - what the attempts in flight say now: each origin
 * with one running half the timeout or more is overdue (slow while it
 * runs, whatever its last attempt did), and r->slow_running counts the
 * attempts of slow origins. Recounted, not kept: an attempt's slowness
 * fixed when it started let receivers that answer every other request
 * at once and hang the rest hold every slot (helper-113).
 */
void    runner_share_look(struct runner *r)
{
    long long now = daemon_mono_ms();
    struct runner_origin_state *state;

    for (int i = 0; i < r->nflight; i++)
	if ((state = runner_origin_state(r, r->flight[i]->origin)) != NULL)
	    state->overdue = 0;
    for (int i = 0; i < r->nflight; i++)
	if ((now - r->flight[i]->started_ms) * 2 >= (long long) r->tool->timeout_ms
	    && (state = runner_origin_state(r, r->flight[i]->origin)) != NULL)
	    state->overdue = 1;
    r->slow_running = 0;
    for (int i = 0; i < r->nflight; i++)
	r->slow_running += runner_origin_slow(r, r->flight[i]->origin);
}

/*
 * runner_admits - whether an attempt to an origin may start (after
 * runner_share_look()), and whether it is slow: below its share, and, slow, while the slow ones
 * have fewer than theirs (half, rounded down: none at concurrency 1, one
 * of 3, so that a hanging receiver does not take the only slot or the
 * spare one while others wait).
 */
int     runner_admits(struct runner *r, const char *origin, int *slow)
{
    int     share = r->tool->concurrency / 2 > 1 ? r->tool->concurrency / 2 : 1;
    struct runner_origin_state *state = runner_origin_state(r, origin);

    *slow = runner_origin_slow(r, origin);
    return ((state ? state->running : 0) < share
	    && !(*slow && r->slow_running >= r->tool->concurrency / 2));
}

int     runner_share_running(struct runner *r, const char *origin)
{
    struct runner_origin_state *state = runner_origin_state(r, origin);

    return (state ? state->running : 0);
}

int     runner_share_admits(struct runner *r, const char *origin)
{
    int     slow;

    runner_share_look(r);
    return (runner_admits(r, origin, &slow));
}

void    runner_share_start(struct runner *r, struct transfer *t)
{
    struct runner_origin_state *state;
    int     created;
    void  **slot;

    if (r->origins == NULL)
	r->origins = htable_create(16);
    slot = htable_slot(r->origins, t->origin, &created);
    if ((state = *slot) == NULL)
	*slot = state = xcalloc(1, sizeof(*state));
    state->running++;
    if (r->nflight == r->flight_size) {
	r->flight_size = r->flight_size ? 2 * r->flight_size : 16;
	r->flight = xrealloc(r->flight, r->flight_size * sizeof(*r->flight));
    }
    t->flight_at = r->nflight;
    r->flight[r->nflight++] = t;
    t->started_ms = daemon_mono_ms();
}

void    runner_share_end(struct runner *r, struct transfer *t)
{
    struct runner_origin_state *state = runner_origin_state(r, t->origin);

    if (state != NULL && --state->running <= 0)
	htable_delete(r->origins, t->origin, free);
    r->flight[t->flight_at] = r->flight[--r->nflight];
    r->flight[t->flight_at]->flight_at = t->flight_at;
}

void    runner_slow_mark(struct runner *r, const char *origin, double seconds, int failed)
{
    int     created;
    void  **slot;

    if (!failed && seconds * 1000 * 2 < (double) r->tool->timeout_ms) {
	long long *since = r->slow ? htable_find(r->slow, origin) : NULL;

	if (since != NULL && daemon_mono_sec() - *since >= RUNNER_SLOW_HOLD)
	    htable_delete(r->slow, origin, free);
	return;
    }
    if (r->slow == NULL)
	r->slow = htable_create(16);
    slot = htable_slot(r->slow, origin, &created);
    if (*slot == NULL)
	*slot = xmalloc(sizeof(long long));
    *(long long *) *slot = daemon_mono_sec();
}

int     runner_slow_over(void *value, void *context)
{
    (void) context;
    return (daemon_mono_sec() - *(long long *) value > RUNNER_SLOW_MEMORY);
}

/* runner_share_free - the counts and marks freed */

void    runner_share_free(struct runner *r)
{
    if (r->slow)
	htable_destroy(&r->slow, free);
    if (r->origins)
	htable_destroy(&r->origins, free);
    free(r->flight);
    r->flight = NULL;
    r->nflight = r->flight_size = 0;
}
