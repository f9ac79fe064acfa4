/* quarantine_test - unit tests for quarantine.c and ctl_cmd.c with the memory store */

#include "build_config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ctl.h"
#include "decide.h"
#include "msg.h"
#include "quarantine.h"
#include "tap.h"
#include "xalloc.h"

static const struct config_spec specs[] = {
    {"limit", CONFIG_DIRECTIVE, NULL, CONFIG_REPEAT},
    {"override", CONFIG_DIRECTIVE, NULL, CONFIG_REPEAT},
    {"exempt", CONFIG_DIRECTIVE, NULL, CONFIG_REPEAT},
    {"quarantine", CONFIG_DIRECTIVE, NULL, CONFIG_REPEAT},
    {0},
};

static const char conf[] =
"limit per_user = sasl_username rate=1/1h\n"
"limit per_net = client_address/24/64 rate=3/1m,10/1h\n"
"quarantine abuse = sasl_username when=per_user exceeded=2/10m action=hold\n"
"quarantine nets = client_address/24/64 when=per_net exceeded=1/1m action=reject\n";

static struct store *store;
static struct policy_config pc;
static const char *net = "2001:db8::";	/* client addresses: net + instance */

static void done(struct store_call *call)
{
    (void) call;
}

static char *ask(struct decide_txn *txn, const char *state, const char *instance,
		         const char *user)
{
    struct policy_request req;
    struct store_call *call;
    const char *reply;
    char    text[512], *line, *save = NULL, *result;

    policy_request_init(&req);
    snprintf(text, sizeof(text), "request=smtpd_access_policy\nprotocol_state=%s\n"
	     "instance=%s\nsasl_username=%s\nclient_address=%s%s\n", state, instance,
	     user, net, instance);
    for (line = strtok_r(text, "\n", &save); line; line = strtok_r(NULL, "\n", &save))
	policy_request_add_line(&req, line, strlen(line));
    call = decide_prepare(&pc, txn, &req, &reply);
    if (call == NULL) {
	policy_request_free(&req);
	return (strdup(reply));
    }
    call->done = done;
    store->submit(store, call);
    result = decide_finish(&pc, txn, &req, call);
    store_call_free(&call);
    policy_request_free(&req);
    return (result);
}

/* message - RCPT, and END-OF-MESSAGE when RCPT passed: the reply */

static char *message(struct decide_txn *txn, const char *instance, const char *user)
{
    char   *r = ask(txn, "RCPT", instance, user);

    if (strcmp(r, "DUNNO") != 0)
	return (r);
    free(r);
    return (ask(txn, "END-OF-MESSAGE", instance, user));
}

static int check(char *reply, const char *want, const char *name)
{
    int     pass = ok(strncmp(reply, want, strlen(want)) == 0, "%s", name);

    if (!pass)
	diag("got %s", reply);
    free(reply);
    return (pass);
}

static void admin_done(struct store_admin *adm)
{
    (void) adm;
}

/* admin - one GET or DEL on the memory store; the caller clears adm */

static void admin(struct store_admin *adm, int op, const char *value, int what)
{
    memset(adm, 0, sizeof(*adm));
    adm->op = op;
    adm->done = admin_done;
    ctl_keys(&pc.limits, value, what, adm);
    store->admin(store, adm);
}

static void test_config_errors(void)
{
    static const struct {
	const char *line;
	const char *want;
    }       cases[] = {
	{"quarantine q = sasl_username when=nope exceeded=1/1m", "unknown limit"},
	{"quarantine q = sasl_username when=per_user exceeded=0/1m", "N must be 1 to 100"},
	{"quarantine q = sasl_username when=per_user exceeded=101/1m", "N must be 1 to 100"},
	{"quarantine q = sasl_username when=per_user exceeded=1/0", "WINDOW must be 1s"},
	{"quarantine q = sasl_username when=per_user exceeded=1/31d", "WINDOW must be 1s"},
	{"quarantine q = sasl_username when=per_user exceeded=1/1m notify=/nonexistent/x",
	"does not exist"},
	{"quarantine q = sasl_username when=per_user exceeded=1/1m notify=/etc/passwd",
	"not executable"},
	{"quarantine q = sasl_username/1/1 when=per_user exceeded=1/1m", "only client_address"},
	{"quarantine q = sasl_username when=dry exceeded=1/1m", "dry_run limit"},
	{"quarantine q", "expected: quarantine NAME"},
	{"quarantine q = sasl_username when=per_user exceeded=1/1m bogus", "name=value"},
    };

    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
	char   *text = xasprintf("limit per_user = sasl_username rate=1/1h\n"
			 "limit dry = sender rate=1/1h dry_run=yes\n%s\n", cases[i].line);
	struct config *cfg = config_read_buffer("q.conf", text, strlen(text), specs);
	struct limits limits;

	ratelimit_load(&limits, cfg);
	ok(cfg->error_count == 1 && strstr(cfg->errors[0], cases[i].want) != NULL
	   && strncmp(cfg->errors[0], "q.conf:3: quarantine: ", 22) == 0,
	   "refused: %s", cases[i].line);
	if (cfg->error_count != 1 || strstr(cfg->errors[0], cases[i].want) == NULL)
	    diag("got %s", cfg->error_count ? cfg->errors[0] : "no error");
	is_int(limits.quarantine_count, 0, "and not loaded");
	ratelimit_free(&limits);
	config_free(&cfg);
	free(text);
    }
}

/*
 * test_lock - strikes count once per transaction; the second within the
 * window locks (HOLD), for every later transaction, until the lock and
 * strikes are deleted.
 */
static void test_lock(struct decide_txn *txn)
{
    struct store_admin adm;
    struct ctl_request req = {.verb = CTL_SHOW, .value = "Alice"};
    struct ctl_out out = {0};

    check(message(txn, "a1", "alice"), "DUNNO", "the first message fits 1/1h");
    check(ask(txn, "RCPT", "a2", "alice"), "450 4.7.1 Rate limit", "the second: deferred");
    check(ask(txn, "RCPT", "a2", "alice"), "450 4.7.1 Rate limit",
	  "another RCPT of the same transaction: deferred, not a second strike");
    admin(&adm, STORE_ADMIN_GET, "alice", CTL_KEYS_ALL);
    ctl_show(&pc.limits, &req, &adm, &out);
    ok(strstr(out.text, "quarantine=abuse state=open strikes=1 of=2 window=600s key=alice\n")
       != NULL, "show: one strike (the name's case folded as the limit does)");
    ok(strstr(out.text, "limit=per_user rate=1/1h count=messages remaining=0 of=1 "
	      "time_to_full=3600.0s key=alice\n") != NULL, "show: nothing remains");
    if (strstr(out.text, "strikes=1") == NULL)
	diag("%s", out.text);
    free(out.text);
    memset(&out, 0, sizeof(out));
    store_admin_clear(&adm);
    check(ask(txn, "RCPT", "a3", "alice"), "HOLD alice is locked by quarantine abuse",
	  "the second strike locks: HOLD");
    check(ask(txn, "RCPT", "a4", "ALICE"), "HOLD alice is locked",
	  "the lock holds for the next transaction, any case");
    check(ask(txn, "RCPT", "b1", "bob"), "DUNNO", "another user is unaffected");
    admin(&adm, STORE_ADMIN_GET, "alice", CTL_KEYS_ALL);
    ctl_show(&pc.limits, &req, &adm, &out);
    ok(strstr(out.text, "quarantine=abuse state=locked action=hold locked_for=0s key=alice\n")
       != NULL, "show: locked");
    free(out.text);
    store_admin_clear(&adm);
    admin(&adm, STORE_ADMIN_DEL, "alice", CTL_KEYS_LOCKS | CTL_KEYS_STRIKES);
    is_int(adm.deleted, 1, "release deletes the lock (the strikes went with the lock)");
    store_admin_clear(&adm);
    check(ask(txn, "RCPT", "a5", "alice"), "450 4.7.1 Rate limit",
	  "released: the limit decides again (deferred, a first strike)");
    admin(&adm, STORE_ADMIN_DEL, "alice", CTL_KEYS_RATES);
    is_int(adm.deleted, 1, "reset deletes the rate's key");
    store_admin_clear(&adm);
    check(message(txn, "a6", "alice"), "DUNNO", "reset: the message fits again");
}

/*
 * test_reconnect - one transaction whose RCPTs arrive on three policy
 * connections (each closed mid-transaction, as a control byte in an
 * address makes this daemon do) is one strike, not three (helper-122).
 */
static void test_reconnect(void)
{
    struct decide_txn conn[4];
    struct store_admin adm;
    struct ctl_request req = {.verb = CTL_SHOW, .value = "carol"};
    struct ctl_out out = {0};

    net = "2001:db8:2::";			/* per_net: a network of its own */
    memset(conn, 0, sizeof(conn));
    check(message(conn, "c1", "carol"), "DUNNO", "reconnect: the first message fits 1/1h");
    decide_txn_free(conn);
    for (int i = 0; i < 3; i++) {
	check(ask(conn + i, "RCPT", "c2", "carol"), "450 4.7.1 Rate limit",
	      "reconnect: a RCPT of one transaction on a new connection: deferred");
	decide_txn_closed(conn + i, &pc.limits);		/* closed mid-transaction */
    }
    admin(&adm, STORE_ADMIN_GET, "carol", CTL_KEYS_ALL);
    ctl_show(&pc.limits, &req, &adm, &out);
    ok(strstr(out.text, "quarantine=abuse state=open strikes=1 of=2 ") != NULL,
       "reconnect: three connections of one transaction struck once, not locked");
    if (strstr(out.text, "strikes=1 ") == NULL)
	diag("%s", out.text);
    free(out.text);
    store_admin_clear(&adm);
    check(ask(conn + 3, "RCPT", "c3", "carol"), "HOLD carol is locked by quarantine abuse",
	  "reconnect: the next transaction is the second strike: locked");
    decide_txn_free(conn + 3);
}

/*
 * test_reconnect_reload - the same, with a reload between the connections
 * that renumbers the quarantines: still one strike (helper-125: every
 * SIGHUP was a new strike, and one transaction locked the key).
 */
static void test_reconnect_reload(void)
{
    static const char reordered[] =
	"limit per_user = sasl_username rate=1/1h\n"
	"limit per_net = client_address/24/64 rate=3/1m,10/1h\n"
	"quarantine nets = client_address/24/64 when=per_net exceeded=1/1m action=reject\n"
	"quarantine abuse = sasl_username when=per_user exceeded=2/10m action=hold\n";
    struct config *cfgs[2] = {pc.cfg, config_read_buffer("r.conf", reordered,
							  strlen(reordered), specs)};
    struct decide_txn conn[3];
    struct store_admin adm;
    struct ctl_request req = {.verb = CTL_SHOW, .value = "frank"};
    struct ctl_out out = {0};

    net = "2001:db8:3::";
    memset(conn, 0, sizeof(conn));
    check(message(conn, "f1", "frank"), "DUNNO", "reload: the first message fits 1/1h");
    decide_txn_free(conn);
    for (int i = 0; i < 3; i++) {
	check(ask(conn + i, "RCPT", "f2", "frank"), "450 4.7.1 Rate limit",
	      "reload: a RCPT of one transaction on a new connection: deferred");
	decide_txn_closed(conn + i, &pc.limits);
	ratelimit_free(&pc.limits);		/* SIGHUP: quarantines renumbered */
	ratelimit_load(&pc.limits, cfgs[(i + 1) % 2]);
    }
    admin(&adm, STORE_ADMIN_GET, "frank", CTL_KEYS_ALL);
    ctl_show(&pc.limits, &req, &adm, &out);
    ok(strstr(out.text, "quarantine=abuse state=open strikes=1 of=2 ") != NULL,
       "reload: reloads between the three connections, still one strike");
    if (strstr(out.text, "strikes=1 ") == NULL)
	diag("%s", out.text);
    free(out.text);
    store_admin_clear(&adm);
    ratelimit_free(&pc.limits);
    ratelimit_load(&pc.limits, pc.cfg);
    config_free(&cfgs[1]);
}

/* test_networks - a quarantine keyed on a network; the first strike locks */

static void test_networks(struct decide_txn *txn)
{
    char    inst[16], user[16];
    int     dunno = 0;
    char   *r;

    net = "2001:db8:1::";
    for (int i = 1; i <= 3; i++) {
	snprintf(inst, sizeof(inst), "%d", i);
	snprintf(user, sizeof(user), "u%d", i);
	r = message(txn, inst, user);
	dunno += strcmp(r, "DUNNO") == 0;
	free(r);
    }
    is_int(dunno, 3, "3 messages from 2001:db8:1::/64 fit 3/1m");
    check(ask(txn, "RCPT", "4", "v"), "550 5.7.1 2001:db8:1::/64 is locked by quarantine nets",
	  "the 4th strikes once and locks the network (reject)");
    check(ask(txn, "RCPT", "99", "w"), "550 5.7.1 2001:db8:1::/64 is locked",
	  "another address of the network is locked too");
}

static void test_parse(void)
{
    static const struct {
	const char *line;
	size_t  len;
	const char *err;
	int     top;
    }       cases[] = {
	{"show alice", 10, NULL, 0},
	{"show a b c\r", 11, NULL, 0},
	{"show ", 5, "missing KEY", 0},
	{"show a\0b", 8, "NUL byte", 0},
	{"top", 3, NULL, CTL_TOP_DEFAULT},
	{"top 1000", 8, NULL, 1000},
	{"top 1", 5, NULL, 1},
	{"top 0", 5, "N must be", 0},
	{"top -1", 6, "N must be", 0},
	{"top 1001", 8, "N must be", 0},
	{"top 99999999999999999999999", 27, "N must be", 0},
	{"top 5x", 6, "N must be", 0},
	{"top5", 4, "N must be", 0},
	{"TOP 5", 5, "unknown command", 0},
	{"", 0, "unknown command", 0},
	{"release", 7, "unknown command", 0},
    };
    struct ctl_request req;
    const char *err;
    char   *big = xmalloc(CTL_LINE_MAX + 10);

    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
	err = ctl_request_parse(cases[i].line, cases[i].len, &req);
	ok(cases[i].err ? err && strstr(err, cases[i].err) != NULL : err == NULL,
	   "parse %.20s: %s", cases[i].line, cases[i].err ? cases[i].err : "ok");
	if (err == NULL && cases[i].top)
	    is_int(req.top, cases[i].top, "top N");
	ctl_request_free(&req);
    }
    memcpy(big, "show ", 5);
    memset(big + 5, 'k', CTL_LINE_MAX + 4);
    ok(ctl_request_parse(big, CTL_LINE_MAX + 9, &req) != NULL, "a key past CTL_LINE_MAX");
    ok(ctl_request_parse(big, POLICY_LINE_MAX + 5, &req) == NULL && strlen(req.value)
       == POLICY_LINE_MAX, "a key of POLICY_LINE_MAX bytes is taken whole");
    ctl_request_free(&req);
    err = ctl_request_parse(big, POLICY_LINE_MAX + 6, &req);
    ok(err && strstr(err, "KEY longer than 8192 bytes"), "a key of one byte more is refused "
       "(%s)", err ? err : "taken");
    ctl_request_free(&req);
    free(big);
}

/* test_top - 3000 keys, top 3: the three fullest, in order; memory bounded */

static void test_top(void)
{
    struct ctl_top *top = ctl_top_create(3);
    struct store_admin adm;
    struct ctl_out out = {0};
    char   *line;

    memset(&adm, 0, sizeof(adm));
    adm.now = 1e12;
    adm.count = 3001;
    adm.keys = xcalloc(adm.count, sizeof(char *));
    adm.values = xcalloc(adm.count, sizeof(char *));
    for (int i = 0; i < 3000; i++) {		/* i seconds of the hour in use */
	adm.keys[i] = xasprintf("mxrl:{per_user:u%d}:3600000", i);
	adm.values[i] = xasprintf("%.3f", adm.now + i * 1e6);
    }
    adm.keys[3000] = xstrdup("mxrl:q:{abuse:x y}:lock");
    adm.values[3000] = xasprintf("%.0f", adm.now - 5e6);
    ctl_top_add(top, &pc.limits, &adm);
    ctl_top_add(top, &pc.limits, &adm);		/* a walk that met them twice */
    store_admin_clear(&adm);
    ctl_top_finish(&top, &out);
    line = out.text;
    ok(strncmp(line, "locked=abuse:x y locked_for=5s\nused=", 36) == 0,
       "top: locks first, a lock seen twice listed once");
    ok(strstr(line, "used=83% limit=per_user rate=1/1h count=messages remaining=0 of=1 "
	      "time_to_full=2999.0s key=u2999\nused=83% ") != NULL
       && strstr(line, "key=u2998\n") && strstr(line, "key=u2997\nkeys=6002 shown=3\n"),
       "top 3: the three fullest, fullest first, each once though seen twice");
    if (strstr(line, "key=u2997") == NULL)
	diag("%s", line);
    free(out.text);
}

int     main(void)
{
    struct event_base *base = event_base_new();
    struct decide_txn txn;

    msg_init("quarantine_test", MSG_STDERR);
    memset(&txn, 0, sizeof(txn));
    pc.cfg = config_read_buffer("t.conf", conf, strlen(conf), specs);
    ratelimit_load(&pc.limits, pc.cfg);
    is_int(pc.cfg->error_count, 0, "configuration loads");
    is_int(pc.limits.quarantine_count, 2, "two quarantines");
    pc.defer_reply = "450 4.7.1 Rate limit {limit} exceeded for {key}";
    pc.reject_reply = "550 5.7.1 Rate limit {limit} exceeded for {key}";
    store = store_memory_create(base);

    test_config_errors();
    test_lock(&txn);
    test_reconnect();
    test_reconnect_reload();
    test_networks(&txn);
    test_parse();
    test_top();

    decide_txn_free(&txn);
    store_destroy(&store);
    ratelimit_free(&pc.limits);
    config_free(&pc.cfg);
    event_base_free(base);
    return (tap_done());
}
