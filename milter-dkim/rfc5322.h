#ifndef MXKIT_RFC5322_H
#define MXKIT_RFC5322_H

/* rfc5322 - strict readers of a From: mailbox and an A-R authserv-id. */

#include <stddef.h>

const char *rfc5322_mailbox(const char *value, char *buf, size_t len);
const char *rfc8601_authserv_id(const char *value, char *buf, size_t len);
int     rfc8601_same_id(const char *a, const char *b);
char   *rfc8601_value(const char *value);
const char *rfc5322_skip_cfws(const char *p);
const char *rfc5322_quoted_string(const char *p, char *buf, size_t len);
int     rfc5322_alabels(const char *raw, char *name, size_t size);

#endif
