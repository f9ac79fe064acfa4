/* store_resolve_test - unit tests for policyd-ratelimit/store_resolve.c
 *
 * Lookups answered by a hosts file and by evdns itself (numeric), a
 * lookup to a DNS "server" that never answers (a bound UDP socket
 * nobody reads), cancelled at every stage: fn runs exactly once, never
 * inside resolve_start(), never after resolve_cancel(), and (under
 * ASan) nothing leaks. resolve_check() and resolve_literal() too.
 */

#include "build_config.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "store_resolve.h"
#include "tap.h"

struct seen {
    int     calls;
    struct resolve_result result;
};

static int starting;			/* inside resolve_start() */
static int called_while_starting;

static void got(void *context, const struct resolve_result *result)
{
    struct seen *seen = context;

    if (starting)
	called_while_starting = 1;
    seen->calls++;
    seen->result = *result;
}

static struct resolve_req *start(struct resolve *r, const char *name, struct seen *seen)
{
    struct resolve_req *req;

    starting = 1;
    req = resolve_start(r, name, got, seen);
    starting = 0;
    return (req);
}

static char *write_file(const char *text)
{
    char   *path = strdup("/tmp/resolve_test.XXXXXX");
    int     fd = mkstemp(path);

    if (fd < 0 || write(fd, text, strlen(text)) != (ssize_t) strlen(text))
	abort();
    close(fd);
    return (path);
}

/* run - the loop until seen has a call or ms passed */

static void run(struct event_base *base, struct seen *seen, int ms)
{
    struct timespec t0, t;

    clock_gettime(CLOCK_MONOTONIC, &t0);
    do {
	event_base_loop(base, EVLOOP_ONCE | EVLOOP_NONBLOCK);
	usleep(2000);
	clock_gettime(CLOCK_MONOTONIC, &t);
    } while ((seen == NULL || seen->calls == 0)
	     && (t.tv_sec - t0.tv_sec) * 1000 + (t.tv_nsec - t0.tv_nsec) / 1000000 < ms);
}

static void literals(void)
{
    ok(resolve_literal("127.0.0.1") && resolve_literal("::1") && resolve_literal("fe80::1%eth0")
       && resolve_literal("2001:db8::7"), "IPv4 and IPv6 addresses are literals");
    ok(!resolve_literal("redis") && !resolve_literal("127.0.0.1.nip.io")
       && !resolve_literal("1.2.3") && !resolve_literal("127.0.0.256"),
       "names (and what only looks like an address) are not");
}

static void checks(const char *good, const char *hosts)
{
    char   *empty = write_file("search example.test\noptions ndots:2\n");
    const char *err;

    ok(resolve_check(NULL, NULL) == NULL, "check: nothing set is fine");
    ok(resolve_check(good, hosts) == NULL, "check: good files pass");
    err = resolve_check("/nonexistent/resolv.conf", NULL);
    ok(err && strstr(err, "resolv_conf: cannot open /nonexistent/resolv.conf: No such file"),
       "check: missing resolv_conf (%s)", err ? err : "OK");
    err = resolve_check(NULL, "/nonexistent/hosts");
    ok(err && strstr(err, "hosts_file: cannot open /nonexistent/hosts"),
       "check: missing hosts_file (%s)", err ? err : "OK");
    err = resolve_check(NULL, "/tmp");
    ok(err && strstr(err, "hosts_file: cannot open /tmp: not a regular file"), "check: a directory as hosts_file "
       "(%s)", err ? err : "OK");
    err = resolve_check("/tmp", NULL);
    ok(err && strstr(err, "resolv_conf: cannot open /tmp: not a regular file"), "check: a directory as "
       "resolv_conf (%s)", err ? err : "OK");
    err = resolve_check(empty, NULL);
    ok(err && strstr(err, "names no usable nameserver"), "check: no nameserver (%s)",
       err ? err : "OK");
    unlink(empty);
    free(empty);
}

int     main(void)
{
    struct event_base *base = event_base_new();
    union {
	struct sockaddr sa;
	struct sockaddr_in in;
    }       sin = {.in = {.sin_family = AF_INET}};
    socklen_t len = sizeof(sin);
    int     hole = socket(AF_INET, SOCK_DGRAM, 0);
    char    text[200];
    char   *resolv, *hosts;
    struct resolve *r;
    struct resolve_req *req;
    struct seen seen;

    /* a DNS server that reads nothing and answers nothing */
    sin.in.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (hole < 0 || bind(hole, &sin.sa, sizeof(sin.in)) != 0
	|| getsockname(hole, &sin.sa, &len) != 0)
	abort();
    snprintf(text, sizeof(text), "nameserver 127.0.0.1:%d\noptions timeout:1 attempts:1\n",
	     ntohs(sin.in.sin_port));
    resolv = write_file(text);
    hosts = write_file("# a comment\n::5 h.test\n127.0.0.5 h.test alias.test\n"
		       "192.0.2.1 other.test\n");
    literals();
    checks(resolv, hosts);
    r = resolve_create(base, resolv, hosts);

    memset(&seen, 0, sizeof(seen));
    req = start(r, "alias.test", &seen);
    ok(req != NULL && seen.calls == 0 && !called_while_starting,
       "hosts file: answered later, not inside resolve_start()");
    run(base, &seen, 1000);
    ok(seen.calls == 1 && seen.result.count == 1
       && strcmp(seen.result.addr[0], "127.0.0.5") == 0,
       "hosts file: an alias (%d: %s)", seen.result.count,
       seen.result.count ? seen.result.addr[0] : seen.result.why);
    memset(&seen, 0, sizeof(seen));
    req = start(r, "H.TEST", &seen);
    run(base, &seen, 1000);
    ok(seen.calls == 1 && seen.result.count == 2 && strcmp(seen.result.addr[0], "::5") == 0
       && strcmp(seen.result.addr[1], "127.0.0.5") == 0,
       "hosts file: every address of a name, any case, in the file's order (%d)",
       seen.result.count);

    memset(&seen, 0, sizeof(seen));
    req = start(r, "alias.test", &seen);
    resolve_cancel(&req);
    run(base, NULL, 50);
    ok(req == NULL && seen.calls == 0, "cancelled after the answer, before delivery: no call");

    memset(&seen, 0, sizeof(seen));
    req = start(r, "silent.example.test", &seen);
    run(base, NULL, 100);
    ok(seen.calls == 0, "silent server: nothing yet");
    resolve_cancel(&req);
    run(base, NULL, 200);			/* evdns's own cancel callback */
    ok(seen.calls == 0, "cancelled while evdns waits: fn never called");

    memset(&seen, 0, sizeof(seen));
    req = start(r, "silent.example.test", &seen);
    run(base, &seen, RESOLVE_MS + 2000);
    ok(seen.calls == 1 && seen.result.count == 0 && seen.result.why[0],
       "silent server: one call, no address, why: %s", seen.result.why);
    run(base, NULL, 100);
    ok(seen.calls == 1, "and only one");

    /* one still under way when everything is freed */
    memset(&seen, 0, sizeof(seen));
    req = start(r, "late.example.test", &seen);
    run(base, NULL, 50);
    resolve_cancel(&req);
    resolve_free(&r);
    run(base, NULL, 200);
    ok(r == NULL && seen.calls == 0, "freed with a cancelled lookup: no call");
    event_base_free(base);
    close(hole);
    unlink(resolv);
    unlink(hosts);
    free(resolv);
    free(hosts);
    return (tap_done());
}
