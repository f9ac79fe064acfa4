/*
 * NAME
 *	quarantine 3
 * SUMMARY
 *	lock a key that keeps hitting a limit, until an operator releases it
 * SYNOPSIS
 *	#include "quarantine.h"
 *
 *	void	quarantine_load(&limits, cfg)
 *	void	quarantine_add_ops(call, &limits, struck, req)
 *	char	*quarantine_locked(&limits, call, req)
 *	char	*quarantine_struck(&limits, call, req, &struck)
 * DESCRIPTION
 *	The directive, as in policyd-ratelimit.conf(5):
 *
 *	quarantine NAME = KEY when=LIMIT exceeded=N/WINDOW
 *		[action=hold|defer|reject] [notify=/path/to/command]
 *
 *	A request whose LIMIT does not fit is a strike against the
 *	request's KEY value (at most one per transaction: the RCPTs of
 *	one message over the limit are one strike, not one each). The
 *	N-th strike within WINDOW locks the value: from then on every
 *	request with it gets the action (Postfix HOLD keeps the message in
 *	the hold queue for review) and is not charged, on every node that
 *	shares the store, until "policyd-ratelimit ctl release".
 *
 *	quarantine_add_ops() adds, per quarantine whose KEY the request
 *	has, a LOCK op and (unless this transaction struck already) a
 *	STRIKE op to the call, so the store checks, counts and locks in
 *	the same atomic step as the rates (store.h).
 *
 *	quarantine_locked() returns the reply for a request refused by an
 *	existing lock, quarantine_struck() the one for a request that set
 *	a lock (and records strikes in *struck); NULL otherwise. The
 *	caller frees the reply.
 * DIAGNOSTICS
 *	"quarantine NAME: locked key=K after N strikes in WINDOW (limit
 *	LIMIT) action=A ..." once per lock, and "quarantine NAME: hold
 *	key=K stage=S ..." per refused request. Counters:
 *	mxkit_policyd_quarantine_locks_total and
 *	mxkit_policyd_quarantined_total, by quarantine.
 */

#include "build_config.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "daemon.h"
#include "metrics.h"
#include "msg.h"
#include "quarantine.h"
#include "xalloc.h"

/* quarantine_parse_times - "3/10m": N strikes within WINDOW */

static const char *quarantine_parse_times(struct quarantine *q, const char *text)
{
    const char *slash = strchr(text, '/');
    char    count[32];
    long long n;

    if (slash == NULL || (size_t) (slash - text) >= sizeof(count))
	return ("exceeded= must be N/WINDOW, for example exceeded=3/10m");
    snprintf(count, sizeof(count), "%.*s", (int) (slash - text), text);
    if (config_parse_int(count, &n) != NULL || n < 1 || n > QUARANTINE_TIMES_MAX)
	return ("exceeded=N/WINDOW: N must be 1 to 100");
    if (config_parse_duration(slash + 1, &q->window_ms) != NULL || q->window_ms < 1000
	|| q->window_ms > QUARANTINE_WINDOW_MAX)
	return ("exceeded=N/WINDOW: WINDOW must be 1s to 30d");
    q->times = (int) n;
    return (NULL);
}

static const char *quarantine_parse_notify(struct quarantine *q, const char *path)
{
    struct stat st;

    if (path[0] != '/')
	return ("notify= needs an absolute path (it is run without a shell)");
    if (stat(path, &st) < 0 || !S_ISREG(st.st_mode))
	return ("notify= command does not exist or is not a regular file");
    if (access(path, X_OK) < 0)
	return ("notify= command is not executable");
    q->notify = xstrdup(path);
    return (NULL);
}

static const char *quarantine_parse_option(struct limits *limits, struct quarantine *q,
					           const char *opt)
{
    const char *value = strchr(opt, '=') + 1;

    if (strncmp(opt, "when=", 5) == 0) {
	for (int i = 0; i < limits->limit_count; i++)
	    if (strcmp(limits->limit[i].name, value) == 0) {
		q->when = i;
		return (limits->limit[i].dry_run ? "when= names a dry_run limit, "
			"which never refuses anything" : NULL);
	    }
	return ("when= names an unknown limit");
    }
    if (strncmp(opt, "exceeded=", 9) == 0)
	return (quarantine_parse_times(q, value));
    if (strncmp(opt, "action=", 7) == 0) {
	for (int a = ACTION_DEFER; a <= ACTION_HOLD; a++)
	    if (strcmp(value, ratelimit_action_name(a)) == 0)
		return (q->action = a, NULL);
	return ("action must be hold, defer or reject");
    }
    if (strncmp(opt, "notify=", 7) == 0)
	return (q->notify ? "notify= is given twice" : quarantine_parse_notify(q, value));
    return ("unknown option (when, exceeded, action, notify)");
}

static const char *quarantine_parse(struct limits *limits, struct quarantine *q,
				            const char *text)
{
    int     argc, arg = 1, seen = 0;
    char  **argv = config_split_words(text, &argc);
    const char *err = NULL;

    memset(q, 0, sizeof(*q));
    q->when = -1;
    q->action = ACTION_HOLD;
    if (argc < 2)
	err = "expected: quarantine NAME = KEY when=LIMIT exceeded=N/WINDOW [action=hold]";
    for (const char *cp = argc ? argv[0] : ""; err == NULL && *cp; cp++)
	if (!isalnum((unsigned char) *cp) && strchr("_.-", *cp) == NULL)
	    err = "quarantine names are letters, digits, '_', '.' and '-'";
    if (err == NULL && strlen(argv[0]) > LIMIT_NAME_MAX)
	err = "quarantine name longer than 64 characters";
    for (int i = 0; err == NULL && i < limits->quarantine_count; i++)
	if (strcmp(limits->quarantine[i].name, argv[0]) == 0)
	    err = "duplicate quarantine name";
    if (err == NULL && strcmp(argv[arg], "=") == 0)
	arg++;
    if (err == NULL && arg >= argc)
	err = "missing KEY";
    if (err == NULL)
	err = ratelimit_parse_key(&q->key, argv[arg++]);
    for (; err == NULL && arg < argc; arg++) {
	const char *eq = strchr(argv[arg], '=');
	static const char *const names[] = {"when=", "exceeded=", "action=", 0};

	if (eq == NULL)
	    err = "expected name=value option";
	for (int i = 0; err == NULL && names[i]; i++)
	    if (strncmp(argv[arg], names[i], strlen(names[i])) == 0 && (seen & (1 << i)))
		err = "an option is given twice";
	    else if (strncmp(argv[arg], names[i], strlen(names[i])) == 0)
		seen |= 1 << i;
	if (err == NULL)
	    err = quarantine_parse_option(limits, q, argv[arg]);
    }
    if (err == NULL && q->when < 0)
	err = "missing when=LIMIT";
    if (err == NULL && q->times == 0)
	err = "missing exceeded=N/WINDOW";
    q->name = xstrdup(argc ? argv[0] : "");
    config_list_free(&argv);
    return (err);
}

static void quarantine_free_one(struct quarantine *q)
{
    free(q->name);
    free(q->key.key_attr);
    free(q->notify);
}

/*
 * quarantine_user_runs - can user execute path? The command runs as the
 * daemon's user: checked as root alone, a mode 0700 script (or one in a
 * directory only root may enter) passes -t and then fails with status 127
 * at the first lock, the moment the page was meant for. A child that
 * becomes the user asks the kernel. Without user, or no longer root (a
 * reload), access(2) already answers for the running user.
 */
static const char *quarantine_runs_check(void *path)
{
    return (access(path, X_OK) == 0 ? NULL : "not executable");
}

static int quarantine_user_runs(const char *user, const char *path)
{
    return (daemon_as_user(user, quarantine_runs_check, (void *) path) == NULL);
}

void    quarantine_load(struct limits *limits, struct config *cfg)
{
    const struct config_entry *entry = NULL;
    const char *err;
    struct quarantine *q;

    while ((entry = config_next(cfg, entry, "quarantine")) != NULL) {
	if (limits->quarantine_count == QUARANTINE_MAX) {
	    config_add_error(cfg, entry->line, "quarantine: more than %d quarantines",
			     QUARANTINE_MAX);
	    break;
	}
	limits->quarantine = xrealloc(limits->quarantine,
			       sizeof(*q) * (limits->quarantine_count + 1));
	q = limits->quarantine + limits->quarantine_count;
	if ((err = quarantine_parse(limits, q, entry->value)) != NULL) {
	    config_add_error(cfg, entry->line, "quarantine: %s", err);
	    quarantine_free_one(q);
	} else if (q->notify && !quarantine_user_runs(config_get_str(cfg, "user"), q->notify)) {
	    config_add_error(cfg, entry->line, "quarantine: notify= command %s: user %s "
			     "cannot execute it (the command runs as the daemon's user)",
			     q->notify, config_get_str(cfg, "user") ? config_get_str(cfg, "user")
			     : "(this one)");
	    quarantine_free_one(q);
	} else {
	    ratelimit_attribute_check(cfg, entry->line, "quarantine key", q->key.key_attr);
	    q->key.delimiter = limits->delimiter;	/* keys as the limits' */
	    limits->quarantine_count++;
	}
    }
}

void    quarantine_free(struct limits *limits)
{
    for (int i = 0; i < limits->quarantine_count; i++)
	quarantine_free_one(limits->quarantine + i);
    free(limits->quarantine);
    limits->quarantine = NULL;
    limits->quarantine_count = 0;
}

/* quarantine_lock_key - store keys: "mxrl:q:{NAME:VALUE}:lock" */

void    quarantine_lock_key(const struct quarantine *q, const char *value, char *buf,
			            size_t len)
{
    snprintf(buf, len, "mxrl:q:{%s:%s}:lock", q->name, value);
}

void    quarantine_strike_key(const struct quarantine *q, const char *value, char *buf,
			              size_t len)
{
    snprintf(buf, len, "mxrl:q:{%s:%s}:strikes", q->name, value);
}

static struct store_op *quarantine_op(struct store_call *call, int kind, int q)
{
    struct store_op *op;

    call->ops = xrealloc(call->ops, sizeof(*op) * (call->count + 1));
    op = call->ops + call->count++;
    memset(op, 0, sizeof(*op));
    op->kind = kind;
    op->rate = q;				/* the quarantine, for the reply */
    op->limit = -1;
    return (op);
}

/* quarantine_limit_in - whether the call has ops of the limit */

static int quarantine_limit_in(const struct store_call *call, int limit)
{
    for (int i = 0; i < call->count; i++)
	if (call->ops[i].kind == STORE_OP_RATE && call->ops[i].limit == limit)
	    return (1);
    return (0);
}

void    quarantine_add_ops(struct store_call *call, const struct limits *limits,
			           unsigned long long struck, const struct policy_request *req)
{
    char    value[LIMIT_KEY_MAX];
    struct store_op *op;
    int     lock;

    for (int i = 0; i < limits->quarantine_count; i++) {
	const struct quarantine *q = limits->quarantine + i;

	if (!ratelimit_key(&q->key, req, value, sizeof(value)))
	    continue;
	lock = call->count;
	op = quarantine_op(call, STORE_OP_LOCK, i);
	quarantine_lock_key(q, value, op->key, sizeof(op->key));
	if ((struck & (1ULL << i)) || !quarantine_limit_in(call, q->when))
	    continue;
	op = quarantine_op(call, STORE_OP_STRIKE, i);
	quarantine_strike_key(q, value, op->key, sizeof(op->key));
	op->limit = q->when;
	op->times = q->times;
	op->capacity = q->window_ms * 1000.0;
	op->lock = lock;
    }
}

/* quarantine_value - the key value back out of "mxrl:q:{NAME:VALUE}:..." */

static void quarantine_value(const struct quarantine *q, const struct store_op *op,
			             char *buf, size_t len)
{
    const char *start = op->key + strlen("mxrl:q:{") + strlen(q->name) + 1;
    const char *end = strrchr(op->key, '}');

    snprintf(buf, len, "%.*s", end && end > start ? (int) (end - start) : 0, start);
}

static void quarantine_count(const char *metric, const char *help, const struct quarantine *q)
{
    char    name[200], labels[300];

    snprintf(labels, sizeof(labels), "quarantine=\"%s\",action=\"%s\"",
	     metrics_label_value(q->name, name, sizeof(name)),
	     ratelimit_action_name(q->action));
    metrics_inc(metrics_counter(metric, help, labels));
}

/* quarantine_reply - the action's reply; logs and counts the request */

static char *quarantine_reply(const struct quarantine *q, const char *key,
			              const struct policy_request *req)
{
    const char *qid = policy_request_get(req, "queue_id");
    const char *name = policy_request_get(req, "client_name");
    const char *addr = policy_request_get(req, "client_address");
    const char *state = policy_request_get(req, "protocol_state");

    msg_info("quarantine %s: %s key=%s stage=%s queue_id=%s client=%s[%s]", q->name,
	     ratelimit_action_name(q->action), key, state ? state : "",
	     qid && *qid ? qid : "NOQUEUE", name ? name : "unknown", addr ? addr : "");
    quarantine_count("mxkit_policyd_quarantined_total",
		     "Requests refused or held because their key is locked.", q);
    switch (q->action) {
    case ACTION_DEFER:
	return (xasprintf("450 4.7.1 %s is locked by quarantine %s pending review", key,
			  q->name));
    case ACTION_REJECT:
	return (xasprintf("550 5.7.1 %s is locked by quarantine %s pending review", key,
			  q->name));
    default:
	return (xasprintf("HOLD %s is locked by quarantine %s pending review", key, q->name));
    }
}

char   *quarantine_locked(const struct limits *limits, const struct store_call *call,
			          const struct policy_request *req)
{
    char    key[LIMIT_KEY_MAX];

    for (int i = 0; i < call->count; i++) {
	const struct store_op *op = call->ops + i;

	if (op->kind == STORE_OP_LOCK && !op->allowed && op->rate < limits->quarantine_count) {
	    quarantine_value(limits->quarantine + op->rate, op, key, sizeof(key));
	    return (quarantine_reply(limits->quarantine + op->rate, key, req));
	}
    }
    return (NULL);
}

char   *quarantine_struck(const struct limits *limits, const struct store_call *call,
			          const struct policy_request *req, unsigned long long *struck)
{
    char    key[LIMIT_KEY_MAX], *reply = NULL;

    for (int i = 0; i < call->count; i++) {
	const struct store_op *op = call->ops + i;
	const struct quarantine *q;

	if (op->kind != STORE_OP_STRIKE || op->struck == 0
	    || op->rate >= limits->quarantine_count)
	    continue;
	q = limits->quarantine + op->rate;
	*struck |= 1ULL << op->rate;
	if (op->struck != 2)
	    continue;
	quarantine_value(q, op, key, sizeof(key));
	msg_info("quarantine %s: locked key=%s after %d strikes in %llds (limit %s) action=%s",
		 q->name, key, q->times, q->window_ms / 1000, limits->limit[q->when].name,
		 ratelimit_action_name(q->action));
	quarantine_count("mxkit_policyd_quarantine_locks_total",
			 "Keys locked by a quarantine.", q);
	if (q->notify)
	    quarantine_notify(q, key);
	if (reply == NULL)
	    reply = quarantine_reply(q, key, req);
    }
    return (reply);
}
