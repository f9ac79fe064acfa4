/*
 * NAME
 *	decide_seen 3
 * SUMMARY
 *	recipients let through per transaction, across policy connections
 * SYNOPSIS
 *	#include "decide.h"
 *
 *	void	decide_answered(&txn, req, reply)
 *	long long decide_seen_elsewhere(&txn)
 *	void	decide_txn_closed(&txn, &limits)
 *	void	decide_seen_adopt(&txn, &limits)
 *	void	decide_seen_settle(&txn, &limits, wait)
 *	void	decide_seen_strikes(&txn, &limits, record)
 * DESCRIPTION
 *	Postfix's questions about one transaction ("instance") may arrive
 *	on several policy connections, one after another: its policy
 *	client reconnects after an idle or TTL timeout, or after this
 *	daemon closed a connection (idle_timeout, a request it could not
 *	parse: a client forces that with a control byte in an address).
 *	A connection asked at DATA or END-OF-MESSAGE then has not seen
 *	every recipient Postfix holds. What counts is what Postfix can
 *	hold: a RCPT this daemon refused is no recipient. Counting RCPT
 *	requests instead let one refused RCPT on the new connection stand
 *	for a recipient admitted on the old one, never charged (helper-100:
 *	5 of 5 messages through recipient_domain 1/1h).
 *
 *	decide_answered() is told every reply: a RCPT answered with an
 *	action that may let Postfix accept the recipient (anything but
 *	4NN/5NN, REJECT, DEFER or DEFER_IF_PERMIT; a later restriction may
 *	still refuse it) is counted for this connection and, daemon-wide,
 *	for the instance. decide_seen_elsewhere() is what earlier
 *	connections let through (> 0) or DECIDE_SEEN_UNKNOWN: decide.c
 *	then does not trust this connection's list, whatever
 *	recipient_count says (a recipient admitted here that Postfix
 *	refused after the check would stand for one admitted elsewhere).
 *	Postfix uses one policy connection at a time per smtpd process,
 *	so every other connection of an instance is an earlier one.
 *
 *	The table has DECIDE_SEEN_SLOTS slots by hash; a newer instance
 *	takes an older one's slot. decide_txn_closed() (a connection
 *	closed mid-transaction) marks its instance's entry "orphan": an
 *	orphan put out of its slot within the hour, or an instance whose
 *	entry was already gone when its connection closed, is marked by
 *	its 64-bit fingerprint (two generations of DECIDE_EVICTED_PLACES,
 *	swapped every hour; one three quarters full marks everything) and
 *	reads as DECIDE_SEEN_UNKNOWN (fails closed), also when a new entry
 *	for it is made. Entries of open connections are put out unmarked:
 *	the connection still knows its own, and a transaction on one
 *	connection is not deferred by a flood of others, which mark their
 *	own instances only.
 *	Instances of DECIDE_SEEN_INSTANCE bytes or more (Postfix's are
 *	about 30) or empty are not recorded; a restart forgets the table.
 */

#include "build_config.h"

#include <ctype.h>
#include <stdint.h>
#include <pthread.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "daemon.h"
#include "decide.h"
#include "quarantine.h"

#define DECIDE_SEEN_SLOTS	8192
#define DECIDE_EVICTED_PLACES	(1 << 20)	/* 8 MB a generation */
#define DECIDE_EVICTED_FULL	(DECIDE_EVICTED_PLACES / 4 * 3)
#define DECIDE_STRUCK_MAX	16	/* quarantines one transaction struck */
#define DECIDE_LEFT_MAX		100000	/* recipient keys of closed connections */
#define DECIDE_SETTLE_MS	100	/* for a worker to see a close */

static struct {
    char    instance[DECIDE_SEEN_INSTANCE];
    long long held;			/* RCPTs let through, all connections */
    long long at;			/* daemon_mono_sec() of its first */
    unsigned long long gen;		/* of this entry: taking a slot makes one */
    int     orphan;			/* a connection that let some through closed */
    int     unknown;			/* made for a marked instance, or lost some */
    struct decide_txn left;		/* recipients of connections that closed */
    unsigned struck[DECIDE_STRUCK_MAX];	/* quarantines' names, hashed */
    int     struck_count;
} decide_seen[DECIDE_SEEN_SLOTS];
static unsigned long long decide_seen_gen;
static long decide_left_entries;	/* in every slot's left, together */
long    decide_left_max = DECIDE_LEFT_MAX;	/* unit tests lower it */
int     decide_settle_ms = DECIDE_SETTLE_MS;	/* unit tests raise it */
/* evicted orphans' instances: two generations (swapped every hour) of
   64-bit fingerprints, open addressing; 0 is an empty place */
static uint64_t decide_evicted[2][DECIDE_EVICTED_PLACES];
static long    decide_evicted_count[2];
static int     decide_evicted_now;	/* the newer generation */
static long long decide_evicted_since;	/* of the newer */
static pthread_mutex_t decide_seen_lock = PTHREAD_MUTEX_INITIALIZER;

static unsigned decide_seen_hash(const char *instance, unsigned h)
{
    for (const unsigned char *cp = (const unsigned char *) instance; *cp; cp++)
	h = (h ^ *cp) * 16777619u;
    return (h);
}

#define DECIDE_SLOT(i)	(decide_seen_hash((i), 2166136261u) % DECIDE_SEEN_SLOTS)
/* decide_fingerprint - a 64-bit FNV-1a of the instance, never 0 */

static uint64_t decide_fingerprint(const char *instance)
{
    uint64_t h = 14695981039346656037ULL;

    for (const unsigned char *cp = (const unsigned char *) instance; *cp; cp++)
	h = (h ^ *cp) * 1099511628211ULL;
    return (h ? h : 1);
}

/*
 * decide_evicted_mark, _marked - an instance by its fingerprint, so that
 * a flood of orphans marks those and no other (helper-129: the bitmap
 * this replaced, keyed by a 20-bit hash, had 16% of it set by 300,000
 * orphans, and that share of one-connection transactions read as
 * marked: 451). A generation three quarters full fails closed: every
 * instance reads as marked until it is swapped out. Lock held.
 */
static void decide_evicted_mark(const char *instance)
{
    int     g = decide_evicted_now;
    uint64_t fp = decide_fingerprint(instance);
    size_t  i = fp % DECIDE_EVICTED_PLACES;

    if (decide_evicted_count[g] >= DECIDE_EVICTED_FULL)
	return;
    for (; decide_evicted[g][i] != 0; i = (i + 1) % DECIDE_EVICTED_PLACES)
	if (decide_evicted[g][i] == fp)
	    return;
    decide_evicted[g][i] = fp;
    decide_evicted_count[g]++;
}

static int decide_evicted_marked(const char *instance)
{
    uint64_t fp = decide_fingerprint(instance);

    for (int g = 0; g < 2; g++) {
	if (decide_evicted_count[g] >= DECIDE_EVICTED_FULL)
	    return (1);
	for (size_t i = fp % DECIDE_EVICTED_PLACES; decide_evicted[g][i] != 0;
	     i = (i + 1) % DECIDE_EVICTED_PLACES)
	    if (decide_evicted[g][i] == fp)
		return (1);
    }
    return (0);
}

/* decide_seen_slot - the instance's slot, the lock taken; -1: not recorded */

static int decide_seen_slot(const char *instance)
{
    long long now = daemon_mono_sec();

    if (instance == NULL || *instance == 0 || strlen(instance) >= DECIDE_SEEN_INSTANCE)
	return (-1);
    pthread_mutex_lock(&decide_seen_lock);
    if (decide_evicted_since == 0)
	decide_evicted_since = now;
    if (now - decide_evicted_since >= 3600) {	/* the older one: cleared, newer */
	decide_evicted_now ^= 1;
	if (decide_evicted_count[decide_evicted_now] > 0)	/* pages not touched else */
	    memset(decide_evicted[decide_evicted_now], 0, sizeof(decide_evicted[0]));
	decide_evicted_count[decide_evicted_now] = 0;
	decide_evicted_since = now;
    }
    return (DECIDE_SLOT(instance));
}

/* decide_refuses - a reply that makes Postfix refuse the RCPT for sure */

static int decide_refuses(const char *reply)
{
    size_t  n = strcspn(reply, " \t");

    if (n == 3 && (reply[0] == '4' || reply[0] == '5')
	&& isdigit((unsigned char) reply[1]) && isdigit((unsigned char) reply[2]))
	return (1);
    return ((n == 6 && strncasecmp(reply, "REJECT", n) == 0)
	    || (n == 5 && strncasecmp(reply, "DEFER", n) == 0)
	    || (n == 15 && strncasecmp(reply, "DEFER_IF_PERMIT", n) == 0));
}

/* decide_seen_take - the slot for txn's instance, made if another's; lock held */

static void decide_seen_take(int slot, struct decide_txn *txn)
{
    if (strcmp(decide_seen[slot].instance, txn->instance) != 0) {
	if (decide_seen[slot].orphan && daemon_mono_sec() - decide_seen[slot].at < 3600)
	    decide_evicted_mark(decide_seen[slot].instance);
	strcpy(decide_seen[slot].instance, txn->instance);
	decide_seen[slot].held = 0;
	decide_seen[slot].at = daemon_mono_sec();
	decide_seen[slot].gen = ++decide_seen_gen;
	decide_seen[slot].orphan = 0;
	decide_seen[slot].unknown = decide_evicted_marked(txn->instance);
	decide_seen[slot].struck_count = 0;
	decide_left_entries -= decide_seen[slot].left.count;
	decide_txn_free(&decide_seen[slot].left);
    }
    if (decide_seen[slot].gen != txn->seen_gen) {	/* ours was put out */
	txn->seen_gen = decide_seen[slot].gen;
	txn->seen_held = 0;
    }
}

void    decide_answered(struct decide_txn *txn, const struct policy_request *req,
			        const char *reply)
{
    const char *state = policy_request_get(req, "protocol_state");
    const char *instance = policy_request_get(req, "instance");
    int     slot;

    if (state == NULL || strcmp(state, "RCPT") != 0 || txn->instance == NULL
	|| strcmp(txn->instance, instance ? instance : "") != 0 || decide_refuses(reply))
	return;
    txn->rcpt_held++;
    if ((slot = decide_seen_slot(txn->instance)) < 0)
	return;
    decide_seen_take(slot, txn);
    decide_seen[slot].held++;
    txn->seen_held++;
    pthread_mutex_unlock(&decide_seen_lock);
}

long long decide_seen_elsewhere(const struct decide_txn *txn)
{
    long long n = 0;
    int     slot;

    if ((slot = decide_seen_slot(txn->instance)) < 0)
	return (0);
    if (strcmp(decide_seen[slot].instance, txn->instance) != 0)
	n = decide_evicted_marked(txn->instance) ? DECIDE_SEEN_UNKNOWN : 0;
    else if (decide_seen[slot].unknown)
	n = DECIDE_SEEN_UNKNOWN;
    else
	n = decide_seen[slot].held
	    - (decide_seen[slot].gen == txn->seen_gen ? txn->seen_held : 0);
    pthread_mutex_unlock(&decide_seen_lock);
    return (n);
}

void    decide_txn_closed(struct decide_txn *txn, const struct limits *limits)
{
    int     slot, before;

    if (txn->rcpt_held > 0 && (slot = decide_seen_slot(txn->instance)) >= 0) {
	before = decide_seen[slot].left.count;
	if (strcmp(decide_seen[slot].instance, txn->instance) != 0)
	    decide_evicted_mark(txn->instance);
	else if (decide_seen[slot].gen != txn->seen_gen)
	    decide_seen[slot].unknown = 1;	/* made again without ours */
	else if (decide_left_entries + txn->count > decide_left_max)
	    decide_seen[slot].unknown = 1;	/* memory: fail closed */
	else if (decide_seen[slot].orphan = 1,
		 decide_txn_adopt(&decide_seen[slot].left, txn, limits) < 0)
	    decide_seen[slot].unknown = 1;	/* too many, or limits gone */
	decide_left_entries += decide_seen[slot].left.count - before;
	pthread_mutex_unlock(&decide_seen_lock);
    }
    decide_txn_free(txn);
}

/*
 * decide_seen_adopt - at DATA or END-OF-MESSAGE: the recipients that
 * connections of this transaction which closed let through (Postfix's
 * smtpd_policy_service_request_limit closes one after every N requests;
 * a transaction of several recipients then reached DATA on a connection
 * that had seen none of them, was answered 451 on every attempt and
 * never delivered: helper-122) become this connection's, to be checked
 * and charged here with their keys.
 */
void    decide_seen_adopt(struct decide_txn *txn, const struct limits *limits)
{
    int     slot;

    if ((slot = decide_seen_slot(txn->instance)) < 0)
	return;
    if (strcmp(decide_seen[slot].instance, txn->instance) == 0
	&& (decide_seen[slot].left.rcpt_held > 0 || decide_seen[slot].left.count > 0)) {
	if (decide_seen[slot].gen != txn->seen_gen) {	/* none recorded here yet */
	    txn->seen_gen = decide_seen[slot].gen;
	    txn->seen_held = 0;
	}
	txn->seen_held += decide_seen[slot].left.rcpt_held;
	decide_left_entries -= decide_seen[slot].left.count;
	if (decide_txn_adopt(txn, &decide_seen[slot].left, limits) < 0)
	    decide_seen[slot].unknown = 1;
    }
    pthread_mutex_unlock(&decide_seen_lock);
}

/*
 * decide_seen_settle - decide_seen_adopt(); with wait (at DATA or
 * END-OF-MESSAGE), while an earlier connection of the transaction is
 * still open here, for up to decide_settle_ms until it closes. Postfix closes a
 * policy connection before it opens the next one for the transaction
 * (smtpd_policy_service_request_limit), but with several workers the
 * new one can be served before another worker has read the old one's
 * end: its recipients were then not known yet, and about one message in
 * fifty was 451 "did not see" (helper-125). A connection that stays
 * open (none does, with Postfix) costs the wait, then the same 451.
 */
void    decide_seen_settle(struct decide_txn *txn, const struct limits *limits, int wait)
{
    decide_seen_adopt(txn, limits);
    for (int waited = 0; wait && waited < decide_settle_ms; waited += 2) {
	if (decide_seen_elsewhere(txn) <= 0)	/* none, or unknown */
	    return;
	usleep(2000);
	decide_seen_adopt(txn, limits);
    }
}

/*
 * decide_seen_strikes - the quarantines struck by any connection of
 * txn's transaction, merged both ways: "at most one strike per
 * transaction" held per connection only, and every RCPT with a control
 * byte closes one, so one transaction spread over three connections
 * struck three times and locked a recipient domain (helper-122). With
 * record, txn's strikes are kept, taking the instance a slot; without,
 * an existing entry's are only read. They are kept by quarantine name,
 * so a reload between (which may renumber quarantines) keeps them
 * (helper-125: each SIGHUP was a new strike). A strike of a slot put
 * out by 8192 newer transactions may count again.
 */
void    decide_seen_strikes(struct decide_txn *txn, const struct limits *limits, int record)
{
    int     slot, n;

    if ((slot = decide_seen_slot(txn->instance)) < 0)
	return;
    if (record && txn->quarantine_struck != 0)
	decide_seen_take(slot, txn);
    if (strcmp(decide_seen[slot].instance, txn->instance) == 0) {
	for (int q = 0; q < limits->quarantine_count && q < 64; q++) {
	    unsigned h = decide_seen_hash(limits->quarantine[q].name, 2166136261u);

	    for (n = 0; n < decide_seen[slot].struck_count && decide_seen[slot].struck[n] != h;)
		n++;
	    if (n < decide_seen[slot].struck_count)
		txn->quarantine_struck |= 1ULL << q;
	    else if ((txn->quarantine_struck >> q) & 1 && n < DECIDE_STRUCK_MAX)
		decide_seen[slot].struck[decide_seen[slot].struck_count++] = h;
	}
    }
    pthread_mutex_unlock(&decide_seen_lock);
}
