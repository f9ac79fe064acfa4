/* listener_test - unit tests for proxyv2-shim/listener.c */

#include "build_config.h"

#include <string.h>

#include "shim.h"
#include "tap.h"

static void test_good(void)
{
    struct shim_listener l;

    is_str(listener_parse("0.0.0.0:25 backend=127.0.0.1:2525 mode=xclient "
			  "trusted=10.0.20.0/24", &l), NULL, "the issue's xclient line");
    ok(l.mode == SHIM_XCLIENT && l.listen.family == AF_INET && l.backend.family == AF_INET,
       "mode and families");
    ok(cidr_list_match_str(l.trusted, "10.0.20.7") && !cidr_list_match_str(l.trusted, "10.0.21.7"),
       "trusted list");
    listener_free(&l);
    ok(l.trusted == NULL && l.spec == NULL, "free clears");
    is_str(listener_parse("[::]:993 backend=127.0.0.1:10993 mode=transparent "
			  "trusted=10.0.20.0/24,fd00::/8 header_timeout=500ms mark=123", &l),
	   NULL, "the issue's transparent line, with options");
    ok(l.listen.family == AF_INET6 && l.header_timeout_ms == 500 && l.mark == 123,
       "IPv6 listener, header_timeout, mark");
    ok(cidr_list_match_str(l.trusted, "fd00::5"), "IPv6 trusted network");
    listener_free(&l);
    is_str(listener_parse("127.0.0.1:143 backend=unix:/run/dovecot/imap mode=proxy-v1 "
			  "trusted=127.0.0.1", &l), NULL, "proxy-v1 to a UNIX backend");
    is_str(listener_mode_name(l.mode), "proxy-v1", "mode name");
    listener_free(&l);
    is_str(listener_parse("[::ffff:127.0.0.1]:25 backend=[::ffff:127.0.0.1]:2525 mode=xclient "
			  "trusted=127.0.0.1", &l), NULL, "IPv4-mapped listener and backend");
    ok(l.listen.family == AF_INET && l.backend.family == AF_INET,
       "are the IPv4 addresses they are (an IPv6-only socket refused them)");
    listener_free(&l);
}

static void test_bad(void)
{
    static const struct {
	const char *line;
	const char *error;
    }       cases[] = {
	{"", "listener needs an address"},
	{"backend=127.0.0.1:1 mode=xclient trusted=10.0.0.0/8",
	"listener must start with the address to listen on"},
	{"127.0.0.1:25 mode=xclient trusted=10.0.0.0/8", "listener needs backend="},
	{"127.0.0.1:25 backend=127.0.0.1:1 trusted=10.0.0.0/8", "listener needs mode="},
	{"127.0.0.1:25 backend=127.0.0.1:1 mode=xclient",
	"listener needs trusted= (the load balancers allowed to send PROXY headers)"},
	{"127.0.0.1:25 backend=127.0.0.1:1 mode=smtp trusted=10.0.0.0/8",
	"mode must be xclient, transparent, proxy-v1 or proxy-v2"},
	{"127.0.0.1:25 backend=127.0.0.1:1 mode=xclient trusted=10.0.0.0/8 color=red",
	"unknown listener option (want backend=, mode=, trusted=, header_timeout=, mark=)"},
	{"127.0.0.1:25 backend=127.0.0.1:1 mode=xclient trusted=10.0.0.0/8 header_timeout=2m",
	"header_timeout must be between 1ms and 60s"},
	{"127.0.0.1:25 backend=unix:/x mode=transparent trusted=10.0.0.0/8",
	"transparent mode needs a TCP backend"},
	{"127.0.0.1:25 backend=127.0.0.1:1 mode=xclient trusted", "listener options are name=value"},
	{"[::]:25 backend=127.0.0.1:1 mode=xclient trusted=10.0.0.0/8,::ffff:10.0.0.0/104",
	"trusted: \"10.0.0.0/8\", \"::ffff:10.0.0.0/104\" can never match: a listener on an "
	"IPv6 address accepts IPv6 connections only"},
	{"[::]:25 backend=127.0.0.1:1 mode=xclient trusted=::ffff:0:0/96",
	"trusted: \"::ffff:0:0/96\" can never match: a listener on an IPv6 address accepts IPv6 "
	"connections only"},
	{"0.0.0.0:25 backend=127.0.0.1:1 mode=xclient trusted=fd00::/8",
	"trusted: \"fd00::/8\" can never match: a listener on an IPv4 address accepts IPv4 "
	"connections only"},
	/* an IPv4-mapped address is the IPv4 address it is (common/addr.c) */
	{"[::ffff:127.0.0.1]:25 backend=127.0.0.1:1 mode=xclient trusted=::1",
	"trusted: \"::1\" can never match: a listener on an IPv4 address accepts IPv4 "
	"connections only"},
    };
    struct shim_listener l;

    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
	is_str(listener_parse(cases[i].line, &l), cases[i].error, "refused: \"%s\"", cases[i].line);
    ok(listener_parse("127.0.0.1:25 backend=127.0.0.1:1 mode=xclient trusted=10.0.0.300/8", &l)
       != NULL, "a bad trusted network is refused");
    /* networks that reach the listener's family, in the IPv4-mapped part or around it */
    is_str(listener_parse("0.0.0.0:25 backend=127.0.0.1:1 mode=xclient "
			  "trusted=::/0,::ffff:10.0.0.0/104,::ffff:0:0/96", &l), NULL,
	   "IPv4 listener: IPv6 networks that hold IPv4 addresses");
    ok(l.dead_trusted == NULL, "none of them is named");
    listener_free(&l);
    is_str(listener_parse("[::]:25 backend=127.0.0.1:1 mode=xclient trusted=10.0.0.0/8,fd00::/8",
			  &l), NULL, "IPv6 listener, a mixed list: accepted");
    is_str(l.dead_trusted, "trusted: \"10.0.0.0/8\" can never match: a listener on an IPv6 "
	   "address accepts IPv6 connections only", "the IPv4 part is named for a warning");
    listener_free(&l);
    ok(l.dead_trusted == NULL, "free clears it");
}

int     main(void)
{
    test_good();
    test_bad();
    return (tap_done());
}
