/*
 * NAME
 *	runner_share 3
 * SUMMARY
 *	lmtp-webhook-spool: the slots each receiver origin may take
 * SYNOPSIS
 *	#include "runner_int.h"
 *
 *	char	*runner_origin(url)
 *	int	runner_share_admits(r, origin, &slow)
 *	void	runner_share_count(r, origin, slow, delta)
 *	void	runner_slow_mark(r, origin, seconds, failed)
 *	int	runner_slow_over(value, context)
 *	void	runner_capped(r, id, origin)
 *	char	*runner_capped_next(r, &uncapped)
 *	void	runner_capped_free(r)
 * DESCRIPTION
 *	runner_origin() is a URL's scheme://host:port (newly allocated).
 *	runner_share_admits() says whether an attempt to an origin may
 *	start now: no origin takes more than half of "concurrency" (at
 *	least one), and the slow origins together take no more than that
 *	half; *slow says whether it is slow. runner_share_count() counts an
 *	attempt in (delta 1) or out (-1).
 *
 *	runner_slow_mark() marks an origin slow (unhealthy) when an attempt
 *	failed (no 2xx, no 410: the event stays to be posted again) or took
 *	half the timeout or more (a receiver that hangs, or answers as
 *	late), and clears the mark when one was delivered (or refused for
 *	good) in less. Time alone was evaded: receivers that answered 503
 *	at 0.47 of the timeout were never slow, and six of them held every
 *	slot for 42 s with their backlog (helper-109). runner_slow_over()
 *	(an htable_sweep() callback) forgets a mark after
 *	RUNNER_SLOW_MEMORY, so that one bad spell does not cap an origin
 *	for good.
 *
 *	runner_capped() puts aside a due event whose origin has its share
 *	in flight. runner_capped_next() gives back (the caller frees) the
 *	first one put aside whose origin is admitted now, with *uncapped 0;
 *	when none is, the first of all, with *uncapped 1 (slots nobody
 *	else may use go to the origins at their share); NULL when none is
 *	left. Taking the first of all even when a later one was admitted
 *	held a live receiver's third event behind a backlog of six origins
 *	answering 503 after 1.4 s: every slot that receiver freed went to
 *	them, uncapped, and its events waited up to 17 s (CI of 927243d).
 *	runner_capped_free() frees what is put aside and the counts.
 */

#include "build_config.h"

#include <stdlib.h>
#include <string.h>

#include <curl/curl.h>

#include "daemon.h"
#include "htable.h"
#include "xalloc.h"
#include "runner_int.h"

/* runner_origin - scheme://host:port of a URL; the URL itself if unparsed */

char   *runner_origin(const char *url)
{
    CURLU  *u = curl_url();
    char   *scheme = NULL, *host = NULL, *port = NULL, *origin;

    if (u != NULL && curl_url_set(u, CURLUPART_URL, url, 0) == CURLUE_OK
	&& curl_url_get(u, CURLUPART_SCHEME, &scheme, 0) == CURLUE_OK
	&& curl_url_get(u, CURLUPART_HOST, &host, 0) == CURLUE_OK
	&& curl_url_get(u, CURLUPART_PORT, &port, CURLU_DEFAULT_PORT) == CURLUE_OK) {
	for (char *cp = host; *cp; cp++)
	    if (*cp >= 'A' && *cp <= 'Z')
		*cp += 'a' - 'A';
	origin = xasprintf("%s://%s:%s", scheme, host, port);
    } else
	origin = xstrdup(url);
    curl_free(scheme);
    curl_free(host);
    curl_free(port);
    curl_url_cleanup(u);
    return (origin);
}

/* runner_origin_count - attempts in flight to an origin, changed by delta */

static int runner_origin_count(struct runner *r, const char *origin, int delta)
{
    int    *count, created;
    void  **slot;

    if (r->origins == NULL)
	r->origins = htable_create(16);
    if ((count = htable_find(r->origins, origin)) == NULL && delta <= 0)
	return (0);
    if (count == NULL) {
	slot = htable_slot(r->origins, origin, &created);
	*slot = count = xcalloc(1, sizeof(*count));
    }
    if ((*count += delta) > 0)
	return (*count);
    htable_delete(r->origins, origin, free);
    return (0);
}

/* runner_slow - whether an origin is slow (runner_slow_mark()) */

static int runner_slow(struct runner *r, const char *origin)
{
    long long *since = r->slow ? htable_find(r->slow, origin) : NULL;

    return (since != NULL && daemon_mono_sec() - *since <= RUNNER_SLOW_MEMORY);
}

int     runner_share_admits(struct runner *r, const char *origin, int *slow)
{
    int     share = r->tool->concurrency / 2 > 1 ? r->tool->concurrency / 2 : 1;

    *slow = runner_slow(r, origin);
    return (runner_origin_count(r, origin, 0) < share
	    && !(*slow && r->slow_running >= share));
}

void    runner_share_count(struct runner *r, const char *origin, int slow, int delta)
{
    (void) runner_origin_count(r, origin, delta);
    r->slow_running += slow ? delta : 0;
}

void    runner_slow_mark(struct runner *r, const char *origin, double seconds, int failed)
{
    int     created;
    void  **slot;

    if (!failed && seconds * 1000 * 2 < (double) r->tool->timeout_ms) {
	if (r->slow != NULL)
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

void    runner_capped(struct runner *r, const char *id, const char *origin)
{
    int     created;

    if (r->capped_set == NULL)
	r->capped_set = htable_create(64);
    *htable_slot(r->capped_set, id, &created) = r;
    if (!created)
	return;					/* put aside already */
    if (r->chead > 0 && r->ncapped == r->csize) {
	memmove(r->capped, r->capped + r->chead, (r->ncapped - r->chead) * sizeof(*r->capped));
	r->ncapped -= r->chead;
	r->chead = 0;
    }
    if (r->ncapped == r->csize) {
	r->csize = r->csize ? 2 * r->csize : 64;
	r->capped = xrealloc(r->capped, r->csize * sizeof(*r->capped));
    }
    r->capped[r->ncapped].id = xstrdup(id);
    r->capped[r->ncapped++].origin = xstrdup(origin);
}

char   *runner_capped_next(struct runner *r, int *uncapped)
{
    int     at, slow;
    char   *id;

    if (r->chead >= r->ncapped)
	return (NULL);
    for (at = r->chead; at < r->ncapped; at++)
	if (runner_share_admits(r, r->capped[at].origin, &slow))
	    break;
    if ((*uncapped = (at == r->ncapped)) != 0)
	at = r->chead;
    id = r->capped[at].id;
    free(r->capped[at].origin);
    if (at == r->chead) {
	r->chead++;
    } else {
	memmove(r->capped + at, r->capped + at + 1, (r->ncapped - at - 1) * sizeof(*r->capped));
	r->ncapped--;
    }
    if (r->chead == r->ncapped)
	r->chead = r->ncapped = 0;
    htable_delete(r->capped_set, id, NULL);
    return (id);
}

void    runner_capped_free(struct runner *r)
{
    for (int at = r->chead; at < r->ncapped; at++) {
	free(r->capped[at].id);
	free(r->capped[at].origin);
    }
    r->chead = r->ncapped = 0;
    free(r->capped);
    r->capped = NULL;
    r->csize = 0;
    if (r->capped_set)
	htable_destroy(&r->capped_set, NULL);
    if (r->slow)
	htable_destroy(&r->slow, free);
    if (r->origins)
	htable_destroy(&r->origins, free);
}
