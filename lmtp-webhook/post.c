/*
 * NAME
 *	post 3
 * SUMMARY
 *	signed webhook POST
 * SYNOPSIS
 *	#include "post.h"
 *
 *	void	post_prepare(&handle, &request, now)
 *	void	post_finish(&handle, curl_code, &result)
 *	void	post_handle_free(&handle)
 *	void	post_send(curl, &request, now, &result)
 * DESCRIPTION
 *	post_prepare() sets up a libcurl easy handle for one attempt (a
 *	new one, or handle.curl reset, which keeps its open connections):
 *	Content-Type application/json, the Standard Webhooks headers
 *	(webhook-id, webhook-timestamp = now, webhook-signature: one v1
 *	signature per key, "v1,<a> v1,<b>" when key2 is set), the
 *	timeout, TLS verification (always on; ca_file replaces the
 *	system store), no redirects, http and https only. The response
 *	body is read and thrown away, up to POST_BODY_MAX: a status
 *	whose header section arrived whole decides, whatever its body
 *	then does (hangs, breaks, goes on); one whose header section never
 *	ends is retried. A 2xx delivers once the event was sent whole (a
 *	2xx before that is retried). The handle can then be run by
 *	curl_easy_perform() (post_send(), the plugin's first attempt, on
 *	a handle the lmtp process keeps so that it reuses connections) or
 *	by a multi handle (the spool tool); post_finish() classifies the
 *	outcome: 2xx delivered, 410 gone, anything else retry, with a
 *	Retry-After value from a 429 or 503 (retry_after_parse(): what is
 *	neither delay-seconds nor an HTTP-date is none).
 * DIAGNOSTICS
 *	result.why says what went wrong, for logs and the spool.
 */

#include "build_config.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "post.h"
#include "retry_after.h"
#include "wh_alloc.h"

static size_t post_discard(char *data, size_t size, size_t n, void *context)
{
    struct post_handle *h = context;

    (void) data;
    if ((h->body_read += size * n) > POST_BODY_MAX)
	return (0);				/* enough: ends the transfer */
    return (size * n);
}

/*
 * post_head_line - one line of the response head: the empty line ending
 * a final (not 1xx) status's header section makes the status an answer
 * (h->head_done); a new status line starts over (a 1xx, a proxy's
 * CONNECT answer). The empty line is what libcurl took for it: any line
 * that starts with CR or LF (its http.c), "\r\r\n" too. A bare CR is
 * invalid (RFC 9112 2.2: a recipient may read it as white space or
 * reject the message); libcurl read on, the body and the status the
 * receiver sent, and only "\r\n" or "\n" counted here: a 200 it had
 * answered was "no answer" and posted again until dead_letter_after.
 */
static size_t post_head_line(char *data, size_t size, size_t n, void *context)
{
    struct post_handle *h = context;
    size_t  len = size * n;
    long    status = 0;

    if (len >= 5 && memcmp(data, "HTTP/", 5) == 0)
	h->head_done = 0;
    else if (len >= 1 && (data[0] == '\r' || data[0] == '\n')) {
	if (curl_easy_getinfo(h->curl, CURLINFO_RESPONSE_CODE, &status) == CURLE_OK
	    && status >= 200 && !h->head_done) {
	    h->head_done = 1;
	}
    }
    return (len);
}

static struct curl_slist *post_header(struct curl_slist *list, const char *name,
				              const char *value)
{
    size_t  len = strlen(name) + strlen(value) + 3;
    char   *line = wh_malloc(len);
    struct curl_slist *next;

    snprintf(line, len, "%s: %s", name, value);
    if ((next = curl_slist_append(list, line)) == NULL)
	abort();
    free(line);
    return (next);
}

void    post_prepare(struct post_handle *h, const struct post_request *req,
		             long long now)
{
    char    stamp[32];
    CURL   *c;

    c = h->curl;
    memset(h, 0, sizeof(*h));
    if (c != NULL)				/* reused: keeps its connections */
	curl_easy_reset(c);
    else if ((c = curl_easy_init()) == NULL)
	abort();
    h->curl = c;
    h->body_len = req->body_len;
    snprintf(stamp, sizeof(stamp), "%lld", now);
    h->signature = sign_signature(req->key, req->id, now, req->body, req->body_len);
    if (req->key2 != NULL) {		/* Standard Webhooks: space-separated */
	char   *second = sign_signature(req->key2, req->id, now, req->body, req->body_len);
	size_t  a = strlen(h->signature), b = strlen(second);

	h->signature = wh_realloc(h->signature, a + b + 2);
	h->signature[a] = ' ';
	memcpy(h->signature + a + 1, second, b + 1);
	free(second);
    }
    h->headers = post_header(NULL, "Content-Type", "application/json");
    h->headers = post_header(h->headers, "webhook-id", req->id);
    h->headers = post_header(h->headers, "webhook-timestamp", stamp);
    h->headers = post_header(h->headers, "webhook-signature", h->signature);
    h->headers = post_header(h->headers, "Expect", "");	/* no 100-continue wait */
    curl_easy_setopt(c, CURLOPT_URL, req->url);
    curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(c, CURLOPT_FOLLOWLOCATION, 0L);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, req->timeout_ms);
    curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS, req->timeout_ms);
    curl_easy_setopt(c, CURLOPT_SSL_VERIFYPEER, 1L);
    curl_easy_setopt(c, CURLOPT_SSL_VERIFYHOST, 2L);
    if (req->ca_file && *req->ca_file)
	curl_easy_setopt(c, CURLOPT_CAINFO, req->ca_file);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, h->headers);
    curl_easy_setopt(c, CURLOPT_POST, 1L);
    curl_easy_setopt(c, CURLOPT_POSTFIELDS, req->body);
    curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t) req->body_len);
    curl_easy_setopt(c, CURLOPT_USERAGENT, "mxkit-lmtp-webhook/" PACKAGE_VERSION);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, post_discard);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, h);
    curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, post_head_line);
    curl_easy_setopt(c, CURLOPT_HEADERDATA, h);
    curl_easy_setopt(c, CURLOPT_SUPPRESS_CONNECT_HEADERS, 1L);
    curl_easy_setopt(c, CURLOPT_ERRORBUFFER, h->curl_error);
}

/*
 * post_retry_after - the wait a 429's or 503's Retry-After asks for, read
 * strictly (retry_after.c): libcurl's own reading (CURLINFO_RETRY_AFTER)
 * takes the number "120abc", "+120" or "3600;x" start with, and
 * reports one too large for its integers as none. A field given twice
 * is no value: together they are "120, 60". Before libcurl 7.84 (no
 * curl_easy_header()) libcurl's reading is all there is.
 */
static long long post_retry_after(struct post_handle *h)
{
#if LIBCURL_VERSION_NUM >= 0x075400		/* curl_easy_header(): 7.84 */
    struct curl_header *hdr;

    if (curl_easy_header(h->curl, "Retry-After", 0, CURLH_HEADER, -1, &hdr) != CURLHE_OK
	|| hdr->amount != 1)
	return (0);
    return (retry_after_parse(hdr->value, (long long) time(NULL)));
#else
    curl_off_t retry_after = 0;

    if (curl_easy_getinfo(h->curl, CURLINFO_RETRY_AFTER, &retry_after) != CURLE_OK)
	return (0);
    return (retry_after > 0 ? (long long) retry_after : 0);
#endif
}

/*
 * post_sent_whole - did the event go out whole? A receiver (or a proxy in
 * front of it) that answers 2xx before reading the request took nothing:
 * counted as delivered, the event was removed unread (a 3 MB event, 0
 * bytes received). Such an answer is retried, as a failure. What can be
 * known is what was handed to the connection: bytes its host took (and
 * acknowledged) but its application never read cannot be told apart
 * (the socket's unacknowledged bytes, SIOCOUTQ, are no help: libcurl
 * names the socket only once the transfer is done, and by then the
 * connection may carry another transfer's request).
 */
static int post_sent_whole(struct post_handle *h, struct post_result *res)
{
    curl_off_t sent = 0;

    if (curl_easy_getinfo(h->curl, CURLINFO_SIZE_UPLOAD_T, &sent) != CURLE_OK
	|| sent >= (curl_off_t) h->body_len)
	return (1);
    res->outcome = POST_RETRY;
    snprintf(res->why, sizeof(res->why), "HTTP status %ld before the event was sent whole "
	     "(%lld of %zu bytes): not delivered", res->status, (long long) sent, h->body_len);
    return (0);
}

/*
 * post_finish - the outcome. The status decides once its header section
 * is complete (the empty line seen), whatever the body then does (cut,
 * stalled, past POST_BODY_MAX): a 410 is gone, a 429's or 503's
 * Retry-After holds, a 2xx delivers (posting it again until dead-lettered
 * would make a dead letter of an event delivered every time). A status
 * line whose header section never completes is no answer: retried.
 */
void    post_finish(struct post_handle *h, CURLcode rc, struct post_result *res)
{
    memset(res, 0, sizeof(*res));
    if (!h->head_done) {
	res->outcome = POST_RETRY;
	if (rc != CURLE_OK)
	    snprintf(res->why, sizeof(res->why), "%s", *h->curl_error ?
		     h->curl_error : curl_easy_strerror(rc));
	else				/* libcurl takes a close after it */
	    snprintf(res->why, sizeof(res->why), "a status line whose header section "
		     "never ended: no answer");
	return;
    }
    curl_easy_getinfo(h->curl, CURLINFO_RESPONSE_CODE, &res->status);
    if (res->status >= 200 && res->status <= 299) {
	if (!post_sent_whole(h, res))
	    return;
	res->outcome = POST_DELIVERED;
    } else if (res->status == 410) {
	res->outcome = POST_GONE;
    } else {
	res->outcome = POST_RETRY;
	if (res->status == 429 || res->status == 503)
	    res->retry_after = post_retry_after(h);
    }
    if (rc != CURLE_OK)
	snprintf(res->why, sizeof(res->why), "HTTP status %ld, its body not read to the end",
		 res->status);
    else
	snprintf(res->why, sizeof(res->why), "HTTP status %ld", res->status);
}

void    post_handle_free(struct post_handle *h)
{
    if (h->curl)
	curl_easy_cleanup(h->curl);
    curl_slist_free_all(h->headers);
    free(h->signature);
    memset(h, 0, sizeof(*h));
}

void    post_send(CURL *curl, const struct post_request *req, long long now,
		          struct post_result *res)
{
    struct post_handle h;

    h.curl = curl;
    post_prepare(&h, req, now);
    post_finish(&h, curl_easy_perform(h.curl), res);
    h.curl = NULL;				/* the caller's */
    post_handle_free(&h);
}
