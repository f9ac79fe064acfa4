#ifndef LMTP_WEBHOOK_ALLOC_H
#define LMTP_WEBHOOK_ALLOC_H

/*
 * wh_alloc.h - allocation that aborts when memory runs out. The code
 * here runs inside Dovecot's lmtp process and inside
 * lmtp-webhook-spool, so it cannot use either one's allocator; an
 * abort drops the LMTP connection and Postfix retries: no mail is lost.
 */

#include <stddef.h>

void   *wh_malloc(size_t size);
void   *wh_realloc(void *ptr, size_t size);
char   *wh_strdup(const char *s);
char   *wh_strndup(const char *s, size_t n);

#endif
