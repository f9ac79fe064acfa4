/*
 * NAME
 *	decide 3
 * SUMMARY
 *	rate limit decisions for policy requests
 * SYNOPSIS
 *	#include "decide.h"
 *
 *	struct store_call *decide_prepare(pc, &txn, req, &reply)
 *	char	*decide_finish(pc, &txn, req, call)
 * DESCRIPTION
 *	Stages (protocol_state), with the restriction lists they come from:
 * .IP "RCPT (smtpd_recipient_restrictions)"
 *	check, charge nothing: would this recipient still fit, together
 *	with what the transaction already holds?
 * .IP "DATA (smtpd_data_restrictions)"
 *	check the whole transaction (recipient_count), charge nothing.
 * .IP "END-OF-MESSAGE (smtpd_end_of_data_restrictions)"
 *	check and charge atomically, with the real size. A transaction
 *	refused by Postfix, or aborted before the end of DATA, never gets
 *	here and is never charged.
 * .PP
 *	The transaction is tied together by the "instance" attribute
 *	(compared whole); recipients accepted at RCPT are remembered for
 *	limits keyed on recipient or recipient_domain, at most
 *	DECIDE_TXN_MAX keys per transaction, found by hash: a RCPT that
 *	might not fit is answered DECIDE_TXN_FULL (452 4.5.3, the client
 *	sends the rest in another transaction), so an accepted recipient is
 *	never forgotten and memory per connection stays bounded. When
 *	Postfix accepted fewer recipients than the check let through (it
 *	refused some after the check: decide_refused_after()), no key of
 *	such a limit is charged more recipients than Postfix accepted.
 *
 *	Postfix may ask about DATA or END-OF-MESSAGE on another connection
 *	than the RCPTs (its policy client reconnects after an idle or TTL
 *	timeout, or after this daemon closed a connection): that
 *	connection has not seen every recipient, and a recipient-keyed
 *	limit was never charged. RCPTs let through are therefore also
 *	counted per instance daemon-wide (decide_seen.c); when an earlier
 *	connection let some through, one recipient Postfix names (it sends
 *	"recipient" when it accepted exactly one) is checked and charged
 *	as if seen here, and several it does not name are answered
 *	DECIDE_TXN_UNSEEN (451: the client sends the message again) by an
 *	enforcing limit: never admitted uncounted. Recipients whose RCPT
 *	reached no connection (a permit_* before the check) are not
 *	charged to recipient-keyed limits, as before.
 *
 *	decide_prepare() returns NULL with *reply set when no store is
 *	needed (exempt, other stage, no applicable limit); otherwise a call
 *	to submit. decide_finish() turns the results into the reply
 *	("DUNNO", the templated defer/reject text, HOLD or WARN) and logs
 *	one line per over-limit decision. Quarantines (quarantine.c) add
 *	their ops to the same call; a locked key, or a lock set by this
 *	request, answers with the quarantine's action instead.
 * DIAGNOSTICS
 *	Over-limit lines: "LIMIT: defer key=K count=N rate=R retry_after=Ns
 *	stage=S queue_id=Q client=NAME[ADDR]"; dry_run logs "would defer".
 */

#include "build_config.h"

#include <math.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "daemon.h"
#include "decide.h"
#include "metrics.h"
#include "msg.h"
#include "quarantine.h"
#include "xalloc.h"

static enum decide_stage decide_stage(const struct policy_request *req)
{
    const char *state = policy_request_get(req, "protocol_state");

    if (state == NULL)
	return (STAGE_OTHER);
    if (strcmp(state, "RCPT") == 0)
	return (STAGE_RCPT);
    if (strcmp(state, "DATA") == 0)
	return (STAGE_DATA);
    if (strcmp(state, "END-OF-MESSAGE") == 0)
	return (STAGE_EOM);
    return (STAGE_OTHER);
}

static long long decide_number(const struct policy_request *req, const char *name)
{
    const char *value = policy_request_get(req, name);

    return (value ? atoll(value) : 0);
}

void    decide_txn_free(struct decide_txn *txn)
{
    for (int i = 0; i < txn->count; i++)
	free(txn->pending[i]);
    free(txn->pending);
    htable_destroy(&txn->index, NULL);
    free(txn->instance);
    memset(txn, 0, sizeof(*txn));
}

/* decide_limit_id - what a pending entry's limit is, across reloads */

static char *decide_limit_id(const struct limit *limit)
{
    return (xasprintf("%s %s/%d/%d", limit->name, limit->key_attr, limit->v4_prefix,
		      limit->v6_prefix));
}

/*
 * A transaction's entries are searched in order while there are few of
 * them (most have one to three recipients); the hash index (SipHash with
 * a random seed: keys come from clients) is built only past
 * DECIDE_TXN_LINEAR entries. Building it for every transaction cost a
 * getrandom() system call, two snprintf()s and a hash per request.
 */
#define DECIDE_TXN_LINEAR	16

static struct decide_pending *decide_txn_find(struct decide_txn *txn, int limit,
					              const char *key)
{
    char    name[LIMIT_KEY_MAX + 16];

    if (txn->index == NULL) {
	for (int i = 0; i < txn->count; i++)
	    if (txn->pending[i]->limit == limit && strcmp(txn->pending[i]->key, key) == 0)
		return (txn->pending[i]);
	return (NULL);
    }
    snprintf(name, sizeof(name), "%d:%s", limit, key);
    return (htable_find(txn->index, name));
}

static void decide_txn_index_one(struct decide_txn *txn, struct decide_pending *p)
{
    char    name[LIMIT_KEY_MAX + 16];
    int     created;

    snprintf(name, sizeof(name), "%d:%s", p->limit, p->key);
    *htable_slot(txn->index, name, &created) = p;
}

/* decide_txn_index - index the entries once there are many */

static void decide_txn_index(struct decide_txn *txn)
{
    if (txn->count <= DECIDE_TXN_LINEAR)
	return;
    if (txn->index != NULL) {
	decide_txn_index_one(txn, txn->pending[txn->count - 1]);
	return;
    }
    txn->index = htable_create(2 * txn->count);
    for (int i = 0; i < txn->count; i++)
	decide_txn_index_one(txn, txn->pending[i]);
}

/*
 * decide_txn_remap - a reload came in the middle of the transaction. Its
 * entries name limits by index, and a reload may insert, remove or
 * reorder limits: the recipients promised at RCPT were then charged to
 * another limit or to none (a limit of 2 recipients per domain let a
 * third through). Each entry moves to the limit of the same name and
 * key in the new list; an entry whose limit is gone is dropped.
 */
static void decide_txn_remap(struct decide_txn *txn, const struct limits *limits)
{
    int     kept = 0;

    htable_destroy(&txn->index, NULL);
    for (int i = 0; i < txn->count; i++) {
	struct decide_pending *p = txn->pending[i];

	p->limit = -1;
	for (int l = 0; l < limits->limit_count && p->limit < 0; l++) {
	    char   *id = decide_limit_id(limits->limit + l);

	    if (strcmp(id, p->id) == 0)
		p->limit = l;
	    free(id);
	}
	if (p->limit < 0) {
	    free(p);
	    continue;
	}
	txn->pending[kept++] = p;
    }
    txn->count = kept;
    if (kept > DECIDE_TXN_LINEAR) {
	txn->index = htable_create(2 * kept);
	for (int i = 0; i < kept; i++)
	    decide_txn_index_one(txn, txn->pending[i]);
    }
}

/* decide_txn_to - txn's entries in limits' list (none: left as they are) */

static void decide_txn_to(struct decide_txn *txn, const struct limits *limits)
{
    if (limits != NULL && txn->generation != limits->generation && txn->count > 0)
	decide_txn_remap(txn, limits);
    if (limits != NULL)
	txn->generation = limits->generation;
}

/* decide_txn_sync - start a new transaction when the instance changes */

static void decide_txn_sync(struct decide_txn *txn, const struct policy_request *req,
			            const struct limits *limits)
{
    const char *instance = policy_request_get(req, "instance");

    if (instance == NULL)
	instance = "";
    if (txn->instance == NULL || strcmp(txn->instance, instance) != 0) {
	decide_txn_free(txn);
	txn->instance = xstrdup(instance);
    } else if (txn->generation != limits->generation && limits->quarantine_count > 0
	       && strlen(instance) < DECIDE_SEEN_INSTANCE && *instance) {
	txn->quarantine_struck = 0;	/* by name again: decide_seen_strikes() */
    }
    decide_txn_to(txn, limits);
}

/* decide_txn_add - the entry for limit and key; the caller checked room */

static struct decide_pending *decide_txn_add(struct decide_txn *txn, int index,
				               const struct limit *limit, const char *key)
{
    struct decide_pending *p = decide_txn_find(txn, index, key);
    char   *id;

    if (p)
	return (p);
    if (txn->count == txn->cap) {
	txn->cap = txn->cap ? txn->cap * 2 : 8;
	txn->pending = xrealloc(txn->pending, sizeof(*txn->pending) * txn->cap);
    }
    id = decide_limit_id(limit);
    p = xmalloc(sizeof(*p) + strlen(key) + 1 + strlen(id));
    p->limit = index;
    p->recipients = 0;
    strcpy(p->key, key);
    p->id = p->key + strlen(key) + 1;
    strcpy(p->id, id);
    free(id);
    txn->pending[txn->count++] = p;
    decide_txn_index(txn);
    return (p);
}

/*
 * decide_txn_adopt - move from's entries into into (an entry of the same
 * limit and key adds its recipients) with what they let through and the
 * quarantines they struck: the recipients of policy connections that
 * closed mid-transaction (decide_seen.c), which a later connection of the
 * transaction charges. With limits, from's entries are first moved to
 * the limits of a reload that came between; without, two transactions of
 * other limits do not mix. -1 then, or past DECIDE_TXN_MAX entries; from
 * is emptied either way.
 */
int     decide_txn_adopt(struct decide_txn *into, struct decide_txn *from,
			         const struct limits *limits)
{
    int     ret = 0;

    decide_txn_to(from, limits);
    decide_txn_to(into, limits);		/* left before a reload */
    if (into->count == 0 && into->let_through == 0)
	into->generation = from->generation;
    if ((from->count > 0 && into->generation != from->generation)
	|| into->count + from->count > DECIDE_TXN_MAX)
	ret = -1;
    for (int i = 0; ret == 0 && i < from->count; i++) {
	struct decide_pending *p = from->pending[i];
	struct decide_pending *q = decide_txn_find(into, p->limit, p->key);

	if (q != NULL) {
	    q->recipients += p->recipients;
	    continue;
	}
	if (into->count == into->cap) {
	    into->cap = into->cap ? into->cap * 2 : 8;
	    into->pending = xrealloc(into->pending, sizeof(*into->pending) * into->cap);
	}
	into->pending[into->count++] = p;
	from->pending[i] = NULL;
	decide_txn_index(into);
    }
    if (ret == 0) {
	into->let_through += from->let_through;
	into->rcpt_held += from->rcpt_held;
	into->quarantine_struck |= from->quarantine_struck;
    }
    for (int i = 0; i < from->count; i++)
	free(from->pending[i]);
    from->count = 0;
    free(from->instance);
    from->instance = NULL;
    decide_txn_free(from);
    return (ret);
}

/*
 * decide_op_key - "mxrl:{LIMIT:KEY}:PERIOD", PERIOD the rate's period in
 * milliseconds, as snprintf() would write it (cut at size - 1), without
 * its format parser: that was the biggest item of formatting per
 * request. A rate's state is known by its period, not by its place in
 * the list: rates reordered or removed by a reload, or an override
 * listing them in another order, read another rate's counter (a 10/1m
 * counter read as 100/1h's admitted 108 of 100 within a minute).
 */
static void decide_op_key(char *buf, size_t size, const char *limit, const char *key,
			          long long period_ms)
{
    char    num[24];
    const char *parts[] = {"mxrl:{", limit, ":", key, "}:", num};
    size_t  used = 0;
    int     n = 0;

    do					/* period_ms > 0 */
	num[n++] = '0' + period_ms % 10;
    while ((period_ms /= 10) > 0 && n < (int) sizeof(num) - 1);
    for (int i = 0; i < n / 2; i++) {
	char    t = num[i];

	num[i] = num[n - 1 - i], num[n - 1 - i] = t;
    }
    num[n] = 0;
    for (size_t p = 0; p < sizeof(parts) / sizeof(parts[0]); p++) {
	size_t  len = strlen(parts[p]);

	if (len > size - 1 - used)
	    len = size - 1 - used;
	memcpy(buf + used, parts[p], len);
	used += len;
    }
    buf[used] = 0;
}

/* decide_add_ops - one op per rate of a limit, for one key and cost */

static void decide_add_ops(struct store_call *call, const struct limit *limit, int index,
			           const char *key, double cost)
{
    const struct limit_rates *rates = ratelimit_rates_for(limit, key);

    for (int r = 0; r < rates->count; r++) {
	const struct limit_rate *rate = rates->rate + r;
	struct store_op *op;
	double  interval = rate->period_ms * 1000.0 / rate->count;

	call->ops = xrealloc(call->ops, sizeof(*op) * (call->count + 1));
	op = call->ops + call->count++;
	memset(op, 0, sizeof(*op));
	decide_op_key(op->key, sizeof(op->key), limit->name, key, rate->period_ms);
	op->interval = interval;
	op->capacity = (rate->burst ? rate->burst : rate->count) * interval;
	op->cost = cost;
	op->advisory = limit->dry_run || limit->action == ACTION_WARN;
	op->limit = index;
	op->rate = r;
    }
}

/* decide_cost - what this stage asks of one limit and key */

static double decide_cost(const struct limit *limit, enum decide_stage stage,
			          const struct policy_request *req,
			          const struct decide_pending *p)
{
    long long size = decide_number(req, "size");
    long long rcpts = decide_number(req, "recipient_count");

    switch (limit->count) {
    case COUNT_MESSAGES:
	return (1);
    case COUNT_RECIPIENTS:
	if (stage == STAGE_RCPT)
	    return ((p ? p->recipients : 0) + 1);
	if (limit->per_recipient || rcpts <= 0)
	    return (p && p->recipients > 0 ? p->recipients : 1);
	return (rcpts);
    case COUNT_BYTES:
	return (stage == STAGE_EOM ? size : (size > 0 ? size : 1));
    }
    return (1);
}

/*
 * decide_log_due - a warning said once a minute at most, across workers:
 * -1 (not now: counted) or how many were left unsaid since the last one
 */
struct decide_log_gate {
    _Atomic long long next;			/* daemon_mono_sec() */
    _Atomic long long quiet;
};

static long long decide_log_due(struct decide_log_gate *gate)
{
    long long now = daemon_mono_sec(), due = atomic_load(&gate->next);

    if (now < due || !atomic_compare_exchange_strong(&gate->next, &due, now + 60)) {
	atomic_fetch_add(&gate->quiet, 1);
	return (-1);
    }
    return (atomic_exchange(&gate->quiet, 0));
}

/*
 * decide_refused_after - how many recipients Postfix accepted, when fewer
 * than this check let through (else 0): some were refused after it, by
 * Postfix's implicit reject_unlisted_recipient (smtpd_reject_unlisted_
 * recipient runs after smtpd_recipient_restrictions), a restriction
 * after the check, or a milter. Postfix says how many it accepted
 * (recipient_count, DATA and END-OF-MESSAGE only), not which: a
 * recipient-keyed limit then charges no key more than that many, so
 * four unknown recipients and a real one at one domain cost it one,
 * not five. Logged at END-OF-MESSAGE, once a minute at most.
 */
static long long decide_refused_after(struct decide_txn *txn, enum decide_stage stage,
				              const struct policy_request *req)
{
    static struct decide_log_gate gate;
    long long accepted = decide_number(req, "recipient_count"), unsaid;

    if (accepted <= 0 || accepted >= txn->let_through)
	return (0);
    if (stage != STAGE_EOM)
	return (accepted);
    metrics_add(metrics_counter("mxkit_policyd_recipients_refused_after_check_total",
			        "Recipients the check let through that Postfix refused "
				"after it (reject_unlisted_recipient after the check, a "
				"milter).", ""),
		(uint64_t) (txn->let_through - accepted));
    if ((unsaid = decide_log_due(&gate)) < 0)
	return (accepted);
    msg_warn("instance %.40s: %lld of the %lld recipients this check let through were "
	     "refused after it (Postfix's implicit reject_unlisted_recipient, a later "
	     "restriction or a milter): each recipient-keyed limit charged a key at most %lld; "
	     "put reject_unlisted_recipient before check_policy_service (%lld more such "
	     "transactions not logged)", txn->instance, txn->let_through - accepted,
	     txn->let_through, accepted, unsaid);
    return (accepted);
}

/*
 * decide_unseen - an earlier policy connection let RCPTs of this
 * transaction through (or an unknown number): this connection's list
 * is not all Postfix may hold (decide_seen.c)
 */
static int decide_unseen(const struct decide_txn *txn, enum decide_stage stage)
{
    return (stage != STAGE_RCPT && decide_seen_elsewhere(txn) != 0);
}

/* decide_unseen_log - said for a recipient-keyed limit, once a minute at most */

static void decide_unseen_log(const struct decide_txn *txn, const struct policy_request *req)
{
    static struct decide_log_gate gate;
    long long unsaid;

    if ((unsaid = decide_log_due(&gate)) < 0)
	return;
    msg_warn("instance %.40s: Postfix accepted %lld recipients, this connection let %lld "
	     "of their RCPTs through, an earlier one let some through (the policy connection "
	     "was closed and opened again mid-transaction): one recipient Postfix names is "
	     "checked now; several are answered \"%s\" by a recipient-keyed limit (%lld more "
	     "such requests not logged)", txn->instance, decide_number(req, "recipient_count"),
	     txn->rcpt_held, DECIDE_TXN_UNSEEN, unsaid);
}

/*
 * decide_limit_ops - one limit's ops: 0; 1, a recipient-keyed limit whose
 * recipients this connection did not see; -1, and they are not named
 */

static int decide_limit_ops(struct store_call *call, struct decide_txn *txn,
			            const struct limit *limit, int index,
			            enum decide_stage stage, const struct policy_request *req,
			            long long accepted, int unseen)
{
    char    key[LIMIT_KEY_MAX];

    if (limit->per_recipient && unseen) {
	if (ratelimit_key(limit, req, key, sizeof(key)))	/* the one recipient */
	    decide_add_ops(call, limit, index, key, decide_cost(limit, stage, req, NULL));
	else if (!limit->dry_run && limit->action != ACTION_WARN && !ratelimit_unless(limit, req))
	    return (-1);			/* several, not named */
	return (1);
    }
    if (limit->per_recipient && stage != STAGE_RCPT) {
	for (int i = 0; i < txn->count; i++) {
	    double  cost;

	    if (txn->pending[i]->limit != index)
		continue;
	    cost = decide_cost(limit, stage, req, txn->pending[i]);
	    if (accepted > 0 && limit->count == COUNT_RECIPIENTS && cost > accepted)
		cost = accepted;
	    decide_add_ops(call, limit, index, txn->pending[i]->key, cost);
	}
	return (0);
    }
    if (ratelimit_key(limit, req, key, sizeof(key)))
	decide_add_ops(call, limit, index, key,
		       decide_cost(limit, stage, req, decide_txn_find(txn, index, key)));
    return (0);
}

/*
 * decide_routed - a recipient whose local part routes it on
 * (policy_address_routed(): "u@victim"@local, u%victim@local,
 * victim!u@local) under a recipient-keyed limit that enforces: Postfix
 * delivers it to the route when the domain is its own, which no key
 * this daemon can name tells (each local name was another budget), so
 * routed_recipients = reject refuses it
 */
static int decide_routed(const struct policy_config *pc, const struct policy_request *req)
{
    const char *rcpt = policy_request_get(req, "recipient");
    const char *addr = policy_request_get(req, "client_address");

    if (!pc->routed_reject || rcpt == NULL || !policy_address_routed(rcpt))
	return (0);
    for (int i = 0; i < pc->limits.limit_count; i++) {
	const struct limit *limit = pc->limits.limit + i;

	if (limit->per_recipient && !limit->dry_run && limit->action != ACTION_WARN
	    && !ratelimit_unless(limit, req)) {
	    msg_info("%s: reject routed recipient=<%.300s> (routed_recipients = reject) "
		     "client=%s", limit->name, rcpt, addr ? addr : "");
	    return (1);
	}
    }
    return (0);
}

struct store_call *decide_prepare(const struct policy_config *pc, struct decide_txn *txn,
				          const struct policy_request *req, const char **reply)
{
    enum decide_stage stage = decide_stage(req);
    struct store_call *call;
    long long accepted;
    int     unseen;

    *reply = "DUNNO";
    if (stage == STAGE_OTHER)
	return (NULL);
    decide_txn_sync(txn, req, &pc->limits);
    if (ratelimit_exempt(&pc->limits, req))
	return (NULL);
    if (decide_routed(pc, req)) {
	if (stage == STAGE_EOM)
	    decide_txn_free(txn);
	*reply = DECIDE_ROUTED;
	return (NULL);
    }
    if (stage == STAGE_RCPT && txn->count + pc->limits.limit_count > DECIDE_TXN_MAX) {
	if (!txn->full_logged)
	    msg_warn("instance %.40s: over %d recipient keys in one transaction; "
		     "answering \"%s\"", txn->instance, DECIDE_TXN_MAX, DECIDE_TXN_FULL);
	txn->full_logged = 1;
	*reply = DECIDE_TXN_FULL;
	return (NULL);
    }
    /* what closed connections let through, at RCPT too (helper-125) */
    decide_seen_settle(txn, &pc->limits, stage != STAGE_RCPT);
    accepted = stage == STAGE_RCPT ? 0 : decide_refused_after(txn, stage, req);
    unseen = decide_unseen(txn, stage);
    call = xcalloc(1, sizeof(*call));
    call->charge = (stage == STAGE_EOM);
    for (int i = 0, said = 0, got; i < pc->limits.limit_count; i++) {
	if ((got = decide_limit_ops(call, txn, pc->limits.limit + i, i, stage, req, accepted,
				    unseen)) != 0 && !said++)
	    decide_unseen_log(txn, req);
	if (got < 0) {
	    store_call_free(&call);
	    if (stage == STAGE_EOM)
		decide_txn_free(txn);
	    *reply = DECIDE_TXN_UNSEEN;
	    return (NULL);
	}
    }
    if (pc->limits.quarantine_count > 0)
	decide_seen_strikes(txn, &pc->limits, 0);	/* another connection's */
    quarantine_add_ops(call, &pc->limits, txn->quarantine_struck, req);
    if (call->count == 0) {
	store_call_free(&call);
	if (stage == STAGE_EOM)
	    decide_txn_free(txn);
	return (NULL);
    }
    return (call);
}

/* decide_key_value - the limit's key value back out of "mxrl:{L:V}:PERIOD" */

static void decide_key_value(const struct limit *limit, const struct store_op *op,
			             char *buf, size_t len)
{
    const char *start = op->key + strlen("mxrl:{") + strlen(limit->name) + 1;
    const char *end = strrchr(op->key, '}');

    snprintf(buf, len, "%.*s", end && end > start ? (int) (end - start) : 0, start);
}

static char *decide_expand(const char *template, const struct limit *limit,
			           const char *key, const struct store_op *op)
{
    const struct limit_rates *rates = ratelimit_rates_for(limit, key);
    char    retry[32], count[32];
    const char *names[] = {"{limit}", "{key}", "{retry_after}", "{rate}", "{count}"};
    const char *values[5];
    size_t  cap = strlen(template) + 1024, used = 0;
    char   *out = xmalloc(cap);

    snprintf(retry, sizeof(retry), "%.0f", ceil(op->retry_after / 1e6));
    snprintf(count, sizeof(count), "%.0f", op->cost);
    values[0] = limit->name, values[1] = key, values[2] = retry;
    values[3] = rates->rate[op->rate].text, values[4] = count;
    for (const char *cp = template; *cp;) {
	int     matched = 0;

	for (int i = 0; i < 5 && !matched; i++) {
	    size_t  n = strlen(names[i]), v = strlen(values[i]);

	    if (strncmp(cp, names[i], n) == 0) {
		if (used + v + 1 > cap)
		    out = xrealloc(out, cap = cap * 2 + v);
		memcpy(out + used, values[i], v);
		used += v, cp += n, matched = 1;
	    }
	}
	if (!matched) {
	    if (used + 2 > cap)
		out = xrealloc(out, cap *= 2);
	    out[used++] = *cp++;
	}
    }
    out[used] = 0;
    for (char *cp = out; *cp; cp++)		/* a reply is one line */
	if (*cp == '\n' || *cp == '\r')
	    *cp = ' ';
    return (out);
}

/*
 * decide_never_fits - a cost the rate can never let through, the bucket
 * empty: more than its burst at once (a 20 KB message against 10k/1h of
 * bytes, 7 recipients against 5/1m). Deferred "retry in Ns", it was
 * deferred again after N s, for ever (helper-122). Not at RCPT for a
 * count of recipients: its cost is the transaction's recipients so far,
 * and a 4xx there has the client send that one in another transaction.
 */
static int decide_never_fits(const struct limit *limit, const struct store_op *op,
			             enum decide_stage stage)
{
    return (op->kind == STORE_OP_RATE && op->cost * op->interval > op->capacity + 0.5
	    && (stage != STAGE_RCPT || limit->count != COUNT_RECIPIENTS));
}

#define DECIDE_NEVER_REPLY "554 5.7.1 Rate limit {limit}: {count} at once is more than " \
	"{rate} ever lets through for {key}; it cannot pass"

static void decide_log(const struct limit *limit, const char *key, const struct store_op *op,
		               const struct policy_request *req)
{
    const struct limit_rates *rates = ratelimit_rates_for(limit, key);
    const char *qid = policy_request_get(req, "queue_id");
    const char *name = policy_request_get(req, "client_name");
    const char *addr = policy_request_get(req, "client_address");
    const char *state = policy_request_get(req, "protocol_state");

    char    retry[40];

    if (decide_never_fits(limit, op, decide_stage(req)))
	snprintf(retry, sizeof(retry), "never (more than the burst)");
    else
	snprintf(retry, sizeof(retry), "%.0fs", ceil(op->retry_after / 1e6));
    msg_info("%s: %s%s key=%s count=%.0f rate=%s retry_after=%s stage=%s "
	     "queue_id=%s client=%s[%s]", limit->name, limit->dry_run ? "would " : "",
	     ratelimit_action_name(limit->dry_run ? ACTION_DEFER : limit->action), key, op->cost,
	     rates->rate[op->rate].text, retry, state ? state : "",
	     qid && *qid ? qid : "NOQUEUE", name ? name : "unknown", addr ? addr : "");
}

static char *decide_reply(const struct policy_config *pc, const struct limit *limit,
			          const char *key, const struct store_op *op,
			          enum decide_stage stage)
{
    char   *text, *reply;

    if (limit->action == ACTION_DEFER && decide_never_fits(limit, op, stage))
	return (decide_expand(DECIDE_NEVER_REPLY, limit, key, op));	/* no retry helps */
    switch (limit->action) {
    case ACTION_REJECT:
	return (decide_expand(pc->reject_reply, limit, key, op));
    case ACTION_HOLD:
	text = decide_expand("rate limit {limit} exceeded for {key}", limit, key, op);
	reply = xasprintf("HOLD %s", text);
	break;
    case ACTION_WARN:
	text = decide_expand("rate limit {limit} exceeded for {key}", limit, key, op);
	reply = xasprintf("WARN %s", text);
	break;
    default:
	return (decide_expand(pc->defer_reply, limit, key, op));
    }
    free(text);
    return (reply);
}

/* decide_record_rcpt - remember an accepted recipient in the transaction */

static void decide_record_rcpt(const struct policy_config *pc, struct decide_txn *txn,
			               const struct policy_request *req)
{
    char    key[LIMIT_KEY_MAX];

    for (int i = 0; i < pc->limits.limit_count; i++)
	if (ratelimit_key(pc->limits.limit + i, req, key, sizeof(key)))
	    decide_txn_add(txn, i, pc->limits.limit + i, key)->recipients++;
    txn->let_through++;
}

/* decide_count - requests over a limit, by limit and what it did */

static void decide_count(const struct limit *limit)
{
    static const char *const actions[] = {"defer", "reject", "hold", "warn"};
    char    name[200], labels[300];

    snprintf(labels, sizeof(labels), "limit=\"%s\",action=\"%s\"",
	     metrics_label_value(limit->name, name, sizeof(name)),
	     limit->dry_run ? "dry_run" : actions[limit->action]);
    metrics_inc(metrics_counter("mxkit_policyd_limit_exceeded_total",
				"Requests over a limit, by limit and action taken.", labels));
}

char   *decide_finish(const struct policy_config *pc, struct decide_txn *txn,
		              const struct policy_request *req, const struct store_call *call)
{
    const struct store_op *deciding = NULL, *warning = NULL;
    int     logged_limit = -1;
    char    key[LIMIT_KEY_MAX];
    char   *reply;
    unsigned long long struck;

    if ((reply = quarantine_locked(&pc->limits, call, req)) != NULL)
	return (reply);
    for (int i = 0; i < call->count; i++) {
	const struct store_op *op = call->ops + i;
	const struct limit *limit;

	if (op->allowed || op->kind != STORE_OP_RATE)
	    continue;
	limit = pc->limits.limit + op->limit;
	if (op->limit != logged_limit) {	/* one line per limit */
	    decide_key_value(limit, op, key, sizeof(key));
	    decide_log(limit, key, op, req);
	    decide_count(limit);
	    logged_limit = op->limit;
	}
	if (!op->advisory && deciding == NULL)
	    deciding = op;
	if (op->advisory && !limit->dry_run && warning == NULL)
	    warning = op;
    }
    struck = txn->quarantine_struck;
    reply = quarantine_struck(&pc->limits, call, req, &txn->quarantine_struck);
    if (txn->quarantine_struck != struck)
	decide_seen_strikes(txn, &pc->limits, 1);	/* one per transaction */
    if (reply != NULL)
	return (reply);			/* the request that set a lock */
    if (deciding) {			/* enforced: nothing is recorded */
	const struct limit *limit = pc->limits.limit + deciding->limit;

	decide_key_value(limit, deciding, key, sizeof(key));
	return (decide_reply(pc, limit, key, deciding, decide_stage(req)));
    }
    if (warning) {
	const struct limit *limit = pc->limits.limit + warning->limit;

	decide_key_value(limit, warning, key, sizeof(key));
	reply = decide_reply(pc, limit, key, warning, decide_stage(req));
    } else {
	reply = xstrdup("DUNNO");
    }
    if (decide_stage(req) == STAGE_RCPT)
	decide_record_rcpt(pc, txn, req);
    if (decide_stage(req) == STAGE_EOM)
	decide_txn_free(txn);
    return (reply);
}
