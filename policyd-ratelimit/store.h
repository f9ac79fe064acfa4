#ifndef MXKIT_STORE_H
#define MXKIT_STORE_H

/*
 * store - where GCRA state lives: memory (one process) or Redis (shared).
 *
 * A call carries the operations of one request. Every store applies the
 * same rule, atomically: each op is checked; if any non-advisory op does
 * not fit, nothing is charged; otherwise, when charging, every op that
 * fits is charged (advisory ops that do not fit are only reported).
 */

#include <event2/event.h>

#define STORE_KEY_MAX 640

struct store_op {
    char    key[STORE_KEY_MAX];
    double  interval;			/* microseconds per unit */
    double  capacity;			/* microseconds of burst */
    double  cost;			/* units */
    int     advisory;			/* dry_run or action=warn */
    int     limit;			/* index of the limit (caller's) */
    int     rate;			/* index of the rate in the limit */
    int     kind;			/* STORE_OP_RATE, _LOCK, _STRIKE */
    int     times;			/* STRIKE: strikes that lock */
    int     lock;			/* STRIKE: index of its LOCK op */
    /* results */
    int     allowed;
    double  retry_after;		/* microseconds */
    int     struck;			/* STRIKE: 1 counted, 2 locked now */
};

/*
 * Quarantine ops (quarantine.c), in the same atomic call as the rates:
 * a LOCK op is a key that, while it exists, blocks the call (allowed = 0,
 * nothing charged, no strike counted). A STRIKE op (capacity = window in
 * microseconds) is counted when an op of its limit did not fit and no
 * LOCK op was locked; its key keeps the times of the last strikes, and
 * when "times" of them fall within the window its LOCK op's key is set
 * (to the time, without expiry) and the call is blocked.
 */
#define STORE_OP_RATE	0
#define STORE_OP_LOCK	1
#define STORE_OP_STRIKE	2

/* A parsed "store" value (store_url.c); text is the printable form. */
#define STORE_PASSWORD_MAX	255
#define STORE_URL_ERROR_MAX	400
#define STORE_SENTINELS_MAX	16
struct store_host {
    char    host[256];
    int     port;
};
struct store_url {
    int     redis;			/* 0: memory */
    char    host[256];
    int     port;
    char    path[256];			/* redis+unix:// */
    char    user[128];
    char    password[STORE_PASSWORD_MAX + 1];
    char    password_file[256];		/* where password came from, or "" */
    int     db;
    int     sentinel;			/* redis-sentinel://: host, port found */
    struct store_host sentinels[STORE_SENTINELS_MAX];
    int     nsentinels;
    char    master[128];		/* Sentinel's name of the master */
    char    sentinel_password[STORE_PASSWORD_MAX + 1];	/* Sentinel's own */
    char    text[STORE_SENTINELS_MAX * 270 + 700];	/* password replaced by "***" */
    /* not parsed from the URL: resolv_conf, hosts_file ("": the system's) */
    char    resolv_conf[256];
    char    hosts_file[256];
};

const char *store_url_parse(const char *text, struct store_url *url);
const char *store_url_parse_file(const char *text, struct store_url *url);
const char *store_url_password_file(struct store_url *url, const char *path);
const char *store_url_read_password(const char *path, char *buf, size_t size);

struct store_call;
typedef void (*store_done_fn) (struct store_call *call);

struct store_call {
    struct store_op *ops;
    int     count;
    int     charge;
    store_done_fn done;
    void   *context;
    /* results */
    int     charged;
    int     error;			/* the store could not answer */
    /* set by the caller when it stopped waiting (deadline) */
    int     abandoned;
    int     refund_late;		/* with abandoned: the caller answered that
					 * the mail was not admitted, so what a late
					 * answer charged is given back */
};

/*
 * store_call_over - whether a RATE op of this limit did not fit: a
 * strike counts only then (the memory store and the Redis check path
 * both ask, and the script applies the same rule).
 */
static inline int store_call_over(const struct store_call *call, int limit)
{
    for (int i = 0; i < call->count; i++)
	if (call->ops[i].kind == STORE_OP_RATE && call->ops[i].limit == limit
	    && !call->ops[i].allowed)
	    return (1);
    return (0);
}

/*
 * Operator's calls (ctl.c), the same on every store: GET the values of
 * keys (as strings: a TAT, a lock's time, a strike list; NULL when
 * absent) with the store's clock; DEL keys; SCAN every key matching a
 * glob, in batches given to batch() (keys and values valid during the
 * call), then done(). done() runs exactly once, maybe inside admin().
 */
#define STORE_ADMIN_GET	0
#define STORE_ADMIN_DEL	1
#define STORE_ADMIN_SCAN 2

struct store_admin;
typedef void (*store_admin_fn) (struct store_admin *adm);

struct store_admin {
    int     op;
    char  **keys;			/* GET, DEL; SCAN: the batch */
    int     count;
    const char *match;			/* SCAN */
    store_admin_fn batch;		/* SCAN */
    store_admin_fn done;
    void   *context;
    /* results */
    char  **values;			/* GET, SCAN batch: NULL if absent */
    double  now;			/* microseconds, the store's clock */
    long long deleted;			/* DEL */
    int     error;
};

struct store {
    const char *kind;
    char    error[200];			/* latest failure, for the summary */
    void    (*submit) (struct store *store, struct store_call *call);
    void    (*destroy) (struct store *store);
    void    (*admin) (struct store *store, struct store_admin *adm);
};

void    store_admin_clear(struct store_admin *adm);

struct store *store_memory_create(struct event_base *base);
size_t  store_memory_size(const struct store *store);
struct store *store_redis_create(struct event_base *base, const struct store_url *url);
int     store_redis_connected(const struct store *store);
void    store_call_free(struct store_call **call);

/* store_check.c: a check-only call from its keys' values (store_redis.c) */
extern const char STORE_CHECK_SCRIPT[];
const char *store_check_eval(struct store_call *call, double now, const char *const *values);
void    store_destroy(struct store **store);
void    store_set_error(struct store *store, const char *fmt,...)
	__attribute__((format(printf, 2, 3)));

#endif
