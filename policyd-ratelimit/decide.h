#ifndef MXKIT_DECIDE_H
#define MXKIT_DECIDE_H

/* decide - from a policy request to store operations and back to a reply. */

#include "ratelimit.h"
#include "policy_request.h"
#include "store.h"

/* The reply templates and limits in force; shared, reference counted. */
struct policy_config {
    _Atomic int refcount;		/* held by workers' connections too */
    struct config *cfg;
    struct limits limits;
    const char *defer_reply;
    const char *reject_reply;
    const char *store_error_reply;
    long long deadline_ms;
    int     fail_open;			/* on_store_error = open */
    int     routed_reject;		/* routed_recipients = reject */
    struct store_url store;		/* parsed "store" */
    long long max_connections;
    long long idle_timeout_ms;
    int     syslog;
};

/*
 * What one transaction (one "instance") has been promised so far: one
 * entry per limit and key, found through a hash table. At most
 * DECIDE_TXN_MAX entries (Postfix's default smtpd_recipient_limit of
 * 1000 recipients needs 1000 per recipient-keyed limit); a RCPT that
 * could pass it is answered DECIDE_TXN_FULL instead of being forgotten.
 */
#define DECIDE_TXN_MAX	20000
#define DECIDE_TXN_FULL	"452 4.5.3 Too many recipients in one transaction for rate limiting"
#define DECIDE_ROUTED	"550 5.1.3 Recipient address routes through its local part ('@', '%' or '!' before the domain); send to the final address"
#define DECIDE_TXN_UNSEEN "451 4.3.0 Rate limiting did not see this transaction's recipients, try again"

struct decide_pending {
    int     limit;
    long long recipients;
    char   *id;				/* the limit's name and key: after key */
    char    key[1];			/* allocated to its length */
};

struct decide_txn {
    char   *instance;			/* as sent, any length */
    struct decide_pending **pending;
    int     count;
    int     cap;
    struct htable *index;		/* "LIMIT:KEY" -> pending */
    unsigned long generation;		/* of the limits the indexes are in */
    int     full_logged;
    long long let_through;		/* RCPTs this check answered DUNNO or WARN */
    long long rcpt_held;		/* RCPTs let through on this connection */
    unsigned long long seen_gen;	/* its entry in decide_seen.c's table */
    long long seen_held;		/* how many of them that entry holds */
    unsigned long long quarantine_struck;	/* quarantines struck (quarantine.c) */
};

enum decide_stage { STAGE_OTHER, STAGE_RCPT, STAGE_DATA, STAGE_EOM };

struct store_call *decide_prepare(const struct policy_config *pc, struct decide_txn *txn,
				          const struct policy_request *req, const char **reply);
char   *decide_finish(const struct policy_config *pc, struct decide_txn *txn,
		              const struct policy_request *req, const struct store_call *call);
void    decide_txn_free(struct decide_txn *txn);

/* decide_seen.c: RCPTs let through per instance, across connections. */
#define DECIDE_SEEN_UNKNOWN	(-1)
#define DECIDE_SEEN_INSTANCE	64	/* longer instances are not recorded */
extern long decide_left_max;		/* recipient keys kept for closed connections */
extern int decide_settle_ms;		/* DATA's wait for an earlier connection's close */
void    decide_answered(struct decide_txn *txn, const struct policy_request *req,
			        const char *reply);
long long decide_seen_elsewhere(const struct decide_txn *txn);
void    decide_txn_closed(struct decide_txn *txn, const struct limits *limits);
void    decide_seen_adopt(struct decide_txn *txn, const struct limits *limits);
void    decide_seen_settle(struct decide_txn *txn, const struct limits *limits, int wait);
void    decide_seen_strikes(struct decide_txn *txn, const struct limits *limits, int record);
int     decide_txn_adopt(struct decide_txn *into, struct decide_txn *from,
			         const struct limits *limits);

#endif
