#ifndef LMTP_WEBHOOK_RETRY_AFTER_H
#define LMTP_WEBHOOK_RETRY_AFTER_H

/* retry_after.h - a Retry-After value as RFC 9110 writes it, or none */

long long retry_after_parse(const char *value, long long now);

#endif
