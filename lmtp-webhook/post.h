#ifndef LMTP_WEBHOOK_POST_H
#define LMTP_WEBHOOK_POST_H

/* post.h - one signed webhook POST on a libcurl easy handle */

#include <curl/curl.h>

#include "sign.h"

struct post_request {
    const char *url, *id, *body;
    size_t  body_len;
    const struct webhook_key *key;
    const struct webhook_key *key2;	/* rotation: a second signature */
    long    timeout_ms;
    const char *ca_file;		/* NULL: the system's CA store */
};

enum post_outcome {
    POST_DELIVERED,			/* 2xx */
    POST_RETRY,				/* anything else: try again later */
    POST_GONE,				/* 410: the receiver wants no more */
};

struct post_result {
    enum post_outcome outcome;
    long    status;			/* HTTP status, 0 if none */
    long long retry_after;		/* seconds, from 429/503; 0 if none */
    char    why[CURL_ERROR_SIZE + 64];
};

struct post_handle {
    CURL   *curl;
    struct curl_slist *headers;
    char   *signature;
    char    curl_error[CURL_ERROR_SIZE];
    size_t  body_read;			/* of the response, thrown away */
    size_t  body_len;			/* of the event, to be sent whole */
    int     head_done;			/* a final status's header section ended */
};

/* the response body read at most: its status is the answer, not it */
#define POST_BODY_MAX	(64 * 1024)

void    post_prepare(struct post_handle *h, const struct post_request *req,
		             long long now);
void    post_finish(struct post_handle *h, CURLcode rc, struct post_result *res);
void    post_handle_free(struct post_handle *h);
void    post_send(CURL *curl, const struct post_request *req, long long now,
		          struct post_result *res);

#endif
