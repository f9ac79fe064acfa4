#ifndef MXKIT_DECIDE_H
#define MXKIT_DECIDE_H

/* decide - from a policy request to store operations and back to a reply. */

#include "ratelimit.h"
#include "policy_request.h"
#include "store.h"

/* The reply templates and limits in force; shared, reference counted. */
struct policy_config {
    int     refcount;
    struct config *cfg;
    struct limits limits;
    const char *defer_reply;
    const char *reject_reply;
    const char *store_error_reply;
    long long deadline_ms;
    int     fail_open;			/* on_store_error = open */
    struct store_url store;		/* parsed "store" */
    long long max_connections;
    long long idle_timeout_ms;
    int     syslog;
};

/* What one transaction (one "instance") has been promised so far. */
struct decide_pending {
    int     limit;
    char    key[LIMIT_KEY_MAX];
    long long recipients;
};

struct decide_txn {
    char   *instance;			/* as sent, any length */
    struct decide_pending *pending;
    int     count;
};

enum decide_stage { STAGE_OTHER, STAGE_RCPT, STAGE_DATA, STAGE_EOM };

struct store_call *decide_prepare(const struct policy_config *pc, struct decide_txn *txn,
				          const struct policy_request *req, const char **reply);
char   *decide_finish(const struct policy_config *pc, struct decide_txn *txn,
		              const struct policy_request *req, const struct store_call *call);
void    decide_txn_free(struct decide_txn *txn);

#endif
