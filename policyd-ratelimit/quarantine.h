#ifndef MXKIT_QUARANTINE_H
#define MXKIT_QUARANTINE_H

/* quarantine - lock a key that keeps hitting a limit, until released. */

#include <event2/event.h>

#include "policy_request.h"
#include "ratelimit.h"
#include "store.h"

#define QUARANTINE_MAX		64	/* one bit each in a transaction */
#define QUARANTINE_TIMES_MAX	100
#define QUARANTINE_WINDOW_MAX	(30LL * 86400 * 1000)	/* 30 days, in ms */

struct quarantine {
    char   *name;
    struct limit key;			/* key_attr and prefixes only */
    int     when;			/* index of the limit */
    int     times;			/* strikes that lock */
    long long window_ms;
    enum limit_action action;		/* hold, defer or reject */
    char   *notify;			/* absolute path, or NULL */
};

void    quarantine_load(struct limits *limits, struct config *cfg);
void    quarantine_free(struct limits *limits);
void    quarantine_add_ops(struct store_call *call, const struct limits *limits,
			           unsigned long long struck, const struct policy_request *req);
char   *quarantine_locked(const struct limits *limits, const struct store_call *call,
			          const struct policy_request *req);
char   *quarantine_struck(const struct limits *limits, const struct store_call *call,
			          const struct policy_request *req, unsigned long long *struck);
void    quarantine_lock_key(const struct quarantine *q, const char *value, char *buf,
			            size_t len);
void    quarantine_strike_key(const struct quarantine *q, const char *value, char *buf,
			              size_t len);
void    quarantine_notify_init(struct event_base *base, long long timeout_ms);
void    quarantine_notify(const struct quarantine *q, const char *key);
void    quarantine_notify_shutdown(void);

#endif
