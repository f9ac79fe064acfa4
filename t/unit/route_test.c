/* route_test - unit tests for lmtp-webhook/route.c */

#include "build_config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "route.h"
#include "tap.h"

static const char *URL = "https://{1}.pulse.internal/api/bills/inbound";

/* match - "url workspace" for address, or "-" for no match */

static char *match(const char *setting, const char *address)
{
    static char out[512];
    struct webhook_route r;
    char   *url, *ws;
    const char *err;

    if ((err = route_parse(setting, &r)) != NULL) {
	snprintf(out, sizeof(out), "error: %s", err);
	return (out);
    }
    if (route_match(&r, address, &url, &ws)) {
	snprintf(out, sizeof(out), "%s %s", url, ws ? ws : "(none)");
	free(url);
	free(ws);
    } else {
	strcpy(out, "-");
    }
    route_free(&r);
    return (out);
}

/*
 * test_secret_captures - {N} in a secret_file= path (helper-120: one
 * wildcard route signed every workspace with one secret): each match
 * expands it with that address's captures, lower case; {N} past the
 * captures, or no capture at all, is refused.
 */
static void test_secret_captures(void)
{
    struct webhook_route r;
    char   *url, *ws;

    ok(route_parse("bills@*.planapulse.app https://{1}.pulse.internal/ "
		   "secret_file=/etc/dovecot/webhook/{1}.secret "
		   "secret_file=/etc/dovecot/webhook/{1}.next", &r) == NULL,
       "secret_file with {1} parses");
    ok(route_match(&r, "Bills@ACME-2.PlanaPulse.app", &url, &ws)
       && route_expand_secrets(&r, "Bills@ACME-2.PlanaPulse.app"),
       "matched, its secrets expanded");
    is_str(r.secret_files[0], "/etc/dovecot/webhook/acme-2.secret", "the workspace's secret");
    is_str(r.secret_files[1], "/etc/dovecot/webhook/acme-2.next", "and its next one");
    is_str(ws, "acme-2", "workspace");
    free(url);
    free(ws);
    route_free(&r);
    ok(route_parse("in+*@*.example.org http://h/ secret_file=/s/{2}/{1}", &r) == NULL
       && route_expand_secrets(&r, "in+ocr@acme.example.org")
       && strcmp(r.secret_files[0], "/s/acme/ocr") == 0, "two captures in a path");
    route_free(&r);
    ok(!route_parse("bills@x.org http://h/ secret_file=/etc/{1}.secret", &r) == 0,
       "a {1} without a capture: refused");
    is_str(route_parse("bills@*.x.org http://h/ secret_file=/etc/{2}.secret", &r),
	   "secret_file: {N} must name a capture of the pattern ({1}..{9})",
	   "{2} with one capture: refused");
    is_str(route_parse("bills@*.x.org http://h/ secret_file=/etc/{x}.secret", &r),
	   "secret_file: {N} must name a capture of the pattern ({1}..{9})", "{x}: refused");
    ok(route_parse("bills@*.x.org http://h/ secret_file=/etc/{1}.secret", &r) == NULL
       && !route_expand_secrets(&r, "bills@a/b.x.org"), "an address the pattern does not "
       "match ('/' is never captured): nothing expanded");
    route_free(&r);
}

int     main(void)
{
    char    setting[256];
    struct webhook_route r;

    test_secret_captures();

    snprintf(setting, sizeof(setting), "bills@*.planapulse.app %s", URL);
    is_str(match(setting, "bills@acme.planapulse.app"),
	   "https://acme.pulse.internal/api/bills/inbound acme", "the issue's route");
    is_str(match(setting, "Bills@ACME.PlanaPulse.app"),
	   "https://acme.pulse.internal/api/bills/inbound acme",
	   "case-insensitive; the capture is lower-cased");
    is_str(match(setting, "bills@evil.acme.planapulse.app"), "-",
	   "'*' does not cross a dot");
    is_str(match(setting, "bills@evil.com#.planapulse.app"), "-",
	   "'*' captures no URL syntax");
    is_str(match(setting, "bills@.planapulse.app"), "-", "'*' needs one character");
    is_str(match(setting, "alice@acme.planapulse.app"), "-", "other local part");
    is_str(match(setting, "bills@acme.planapulse.app.evil"), "-", "anchored at the end");
    is_str(match(setting, "bills@acme-2_x.planapulse.app"),
	   "https://acme-2_x.pulse.internal/api/bills/inbound acme-2_x",
	   "'-' and '_' are captured");
    is_str(match("in+*@*.example.org http://h/{2}/{1}", "in+ocr@acme.example.org"),
	   "http://h/acme/ocr ocr", "two captures, used out of order; workspace = {1}");
    is_str(match("bills@acme.example.org http://h/x", "bills@acme.example.org"),
	   "http://h/x (none)", "no capture: no workspace");
    is_str(match("bills@acme.example.org  \t http://h/x", "bills@acme.example.org"),
	   "http://h/x (none)", "any white space between pattern and URL");
    is_str(match("bills@*.x https://{2}.y/", "bills@a.x"),
	   "error: URL: {N} must name a capture of the pattern ({1}..{9})",
	   "{2} without a second capture");
    is_str(match("bills@*.x https://{0}.y/", "bills@a.x"),
	   "error: URL: {N} must name a capture of the pattern ({1}..{9})", "{0}");
    is_str(match("bills@*.x https://{1.y/", "bills@a.x"),
	   "error: URL: {N} must name a capture of the pattern ({1}..{9})", "unclosed {");
    is_str(match("bills@*x.y https://h/", "bills@ax.y"),
	   "error: '*' must be followed by a character it cannot capture (such as '.', '@' "
	   "or '+'), or end the pattern", "'*' followed by a capture character");
    is_str(match("bills@** https://h/", "bills@a"),
	   "error: '*' must be followed by a character it cannot capture (such as '.', '@' "
	   "or '+'), or end the pattern", "\"**\"");
    is_str(match("bills@*.x HTTP://{1}.h/c", "bills@a.x"), "http://a.h/c a",
	   "a scheme in capitals: accepted, lowered (helper-115: the recipient tempfailed)");
    is_str(match("bills@*.x hTtPs://h/C", "bills@a.x"), "https://h/C a",
	   "... mixed case; the rest of the URL as written");
    is_str(match("bills@*.x ftp://h/", "bills@a.x"),
	   "error: URL must start with http:// or https://", "ftp URL");
    is_str(match("bills.example.org https://h/", "x"),
	   "error: pattern must be an address (local@domain)", "pattern without '@'");
    is_str(match("bills@x", "x"), "error: expected \"PATTERN URL\"", "no URL");
    is_str(match("bills@x https://h/ extra", "x"),
	   "error: unknown option after the URL (secret_file=, raw_message=)",
	   "a third word that is no option");
    is_str(match("*@*.*.*.*.*.*.*.*.* https://h/", "x"), "error: more than 9 '*' in pattern",
	   "ten captures");
    is_str(match("bills@* https://h/{1}", "bills@abc"), "https://h/abc abc",
	   "'*' at the end of the pattern");
    ok(route_parse("", &r) != NULL, "empty setting is an error");
    /* a route that does not parse: whom may it be meant for? */
    ok(route_could_match("pay@*.planapulse.app ftp://x", "pay@acme.planapulse.app"),
       "a refused route's pattern matches: it may be meant for the recipient");
    ok(route_could_match("PAY@*.planapulse.app ftp://x", "pay@Acme.planapulse.app"),
       "in any case");
    ok(!route_could_match("pay@*.planapulse.app ftp://x", "alice@mxkit.test"),
       "its pattern does not match another recipient");
    ok(!route_could_match("  pay@*.planapulse.app", "bills@acme.planapulse.app"),
       "a route with no URL still has a pattern to match");
    ok(route_could_match("nopattern https://x", "alice@mxkit.test"),
       "no address for a pattern: it may be meant for anyone");
    ok(route_could_match("", "alice@mxkit.test"), "nothing at all: anyone");
    ok(route_could_match("*@*x.example https://x", "alice@mxkit.test"),
       "a pattern route_parse() refuses ('*' before a capturable character): anyone");
    ok(route_could_match("*@*.*.*.*.*.*.*.*.*.x https://x", "a@b.c"),
       "more than 9 captures: anyone");
    /* issue 16: a secret per route, two while rotating; raw_message */
    ok(route_parse("bills@*.x https://{1}.y/ \tsecret_file=/etc/a.secret  "
		   "secret_file=/etc/b.secret raw_message=yes ", &r) == NULL,
       "route with two secret files and raw_message=yes");
    is_int(r.secret_count, 2, "two secret files");
    is_str(r.secret_files[0], "/etc/a.secret", "first secret file");
    is_str(r.secret_files[1], "/etc/b.secret", "second secret file");
    is_int(r.raw_message, 1, "raw_message=yes");
    is_str(r.url, "https://{1}.y/", "the URL ends before the options");
    route_free(&r);
    ok(route_parse("bills@*.x https://{1}.y/", &r) == NULL && r.secret_count == 0
       && r.raw_message == 0, "no option: the global secret, no raw message");
    route_free(&r);
    ok(route_parse("bills@*.x https://{1}.y/ raw_message=no", &r) == NULL
       && r.raw_message == 0, "raw_message=no");
    route_free(&r);
    is_str(match("bills@x https://h/ secret_file=a /b", "x"),
	   "error: secret_file must be an absolute path", "relative secret_file");
    is_str(match("bills@x https://h/ secret_file=/etc/caf\xe9.secret", "x"),
	   "error: secret_file: printable ASCII only", "an 8-bit secret_file path");
    is_str(match("bills@x https://h/ secret_file=/etc/a\001b", "x"),
	   "error: secret_file: printable ASCII only", "a control character in the path");
    is_str(match("bills@x https://h/ secret_file=/a secret_file=/b secret_file=/c", "x"),
	   "error: at most two secret_file per route (the current and the next)",
	   "three secret files");
    is_str(match("bills@x https://h/ secret_file=", "x"),
	   "error: unknown option after the URL (secret_file=, raw_message=)",
	   "secret_file with no path");
    is_str(match("bills@x https://h/ raw_message=1", "x"),
	   "error: raw_message must be yes or no", "raw_message=1");
    is_str(match("bills@x https://h/ raw_message=yess", "x"),
	   "error: raw_message must be yes or no", "raw_message=yess");
    is_str(match("bills@x https://h/ Secret_File=/a", "x"),
	   "error: unknown option after the URL (secret_file=, raw_message=)",
	   "options are lower case");
    is_str(match("bills@* https://h/{1} secret_file=/{1}", "bills@abc"),
	   "https://h/abc abc", "{N} in an option is not part of the URL");
    /* issue 14 item 8: the detail is cut where Dovecot cuts it */
    is_int(route_detail_cut("bills+tag", "+"), 5, "detail: bills+tag is bills");
    is_int(route_detail_cut("bills+a+b", "+"), 5, "detail: at the first delimiter");
    is_int(route_detail_cut("bills-x+y", "+-"), 5, "detail: any of several delimiters");
    is_int(route_detail_cut("bills", "+"), 0, "no delimiter in the address: no detail");
    is_int(route_detail_cut("bills+tag", ""), 0, "recipient_delimiter empty: no detail");
    is_int(route_detail_cut("bills+tag", NULL), 0, "recipient_delimiter unset: no detail");
    is_int(route_detail_cut("+tag", "+"), 0, "nothing before the delimiter: no detail");
    is_int(route_detail_before("in+acme+ref42", "+", 13), 7, "before: in+acme+ref42 is in+acme");
    is_int(route_detail_before("in+acme+ref42", "+", 7), 2, "then in");
    is_int(route_detail_before("in+acme+ref42", "+", 2), 0, "then nothing more");
    is_int(route_detail_before("a-b+c", "+-", 5), 3, "before: any of several delimiters");
    is_int(route_detail_before("a++b", "+", 4), 2, "a++b is a+");
    is_int(route_detail_before("a++b", "+", 2), 1, "then a");
    is_int(route_detail_before("a++b", "+", 1), 0, "then nothing more");
    is_int(route_detail_before("+tag", "+", 4), 0, "before: nothing before the delimiter");
    is_int(route_detail_before("bills", "+", 5), 0, "before: no delimiter");
    is_int(route_detail_before("bills+x", NULL, 7), 0, "before: recipient_delimiter unset");
    is_int(route_detail_before("", "+", 0), 0, "before: an empty local part");
    /* credentials in a URL stay out of logs */
    {
	static const char *const cases[][2] = {
	    {"https://h.example/api/x", "https://h.example/api/x"},
	    {"https://u:p@h.example:8443/x?token=t#f", "https://***@h.example:8443/x?***"},
	    {"http://a@b@h/x", "http://***@h/x"},
	    {"https://h/x?t=1@2", "https://h/x?***"},
	    {"https://u:p@h", "https://***@h"},
	    {"http://u:pa/ss@h/x", "http://***@h/x"},
	    {"http://u:p#w@h/x", "http://***@h/x"},
	    {"http://u:p?w@h/x?q", "http://***@h/x?***"},
	    {"https://h/p#frag", "https://h/p"},
	    {"no-scheme@h/x", "***@h/x"},
	    {"", ""},
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
	    char   *shown = route_url_redact(cases[i][0]);

	    is_str(shown, cases[i][1], "redacted: %s", cases[i][0]);
	    free(shown);
	}
    }
    /* URLs libcurl can never post, options given twice: refused now */
    is_str(match("bills@*.x https://u:pw@{1}.hook.internal:99999/api/in", "bills@a.x"),
	   "error: URL cannot be posted: port must be from 1 to 65535", "port 99999");
    is_str(match("bills@x https://h:0/in", "bills@x"),
	   "error: URL cannot be posted: port must be from 1 to 65535", "port 0");
    is_str(match("bills@x https://bad_host!/api/in", "bills@x"),
	   "error: URL cannot be posted: Bad hostname", "a host name with '!'");
    is_str(match("bills@x http://::1:8080/in", "bills@x"),
	   "error: URL: an IPv6 address must be in brackets (http://[::1]:8080/)",
	   "IPv6 without brackets");
    is_str(match("bills@x http://u:p@fe80::1/in", "bills@x"),
	   "error: URL: an IPv6 address must be in brackets (http://[::1]:8080/)",
	   "IPv6 without brackets, after a user and password");
    is_str(match("bills@x http://[::1]:8080/in", "bills@x"), "http://[::1]:8080/in (none)",
	   "IPv6 in brackets");
    is_str(match("bills@*.x https://{1}.h:8443/a?t=%2F#f", "bills@a_b.x"),
	   "https://a_b.h:8443/a?t=%2F#f a_b", "a capture in the host, a port, a query");
    is_str(match("bills@x https://hook:pa%3Ass@h/in", "bills@x"),
	   "https://hook:pa%3Ass@h/in (none)", "a percent-encoded password");
    is_str(match("bills@x http://h/in raw_message=yes raw_message=no", "bills@x"),
	   "error: raw_message given twice", "raw_message twice");
    is_str(match("bills@x http://h/in raw_message=no raw_message=no", "bills@x"),
	   "error: raw_message given twice", "raw_message twice, the same");
    is_str(match("bills@x http://h/in secret_file=/a secret_file=/a", "bills@x"),
	   "error: the same secret_file given twice", "the same secret_file twice");
    /* the numbering the plugin reads, which check-routes judges by too */
    {
	const char *gap[] = {"lmtp_webhook_route", "lmtp_webhook_route3"};
	const char *full[] = {"lmtp_webhook_route2", "lmtp_webhook_route"};
	const char *one[] = {"lmtp_webhook_route1"};
	char    why[512], name[64];

	is_str(route_setting_name(1, name, sizeof(name)), "lmtp_webhook_route", "route 1's name");
	is_str(route_setting_name(7, name, sizeof(name)), "lmtp_webhook_route7", "route 7's name");
	ok(route_next(gap, 2) == 2, "route and route3: reading stops at route2");
	ok(route_next(full, 2) == 3, "route and route2, in any order: read up to route3");
	ok(route_next(one, 1) == 1, "route1 alone: lmtp_webhook_route is not set");
	ok(route_unread("lmtp_webhook_route", 2, why, sizeof(why)) == NULL, "route is read");
	ok(route_unread("lmtp_webhook_route2", 3, why, sizeof(why)) == NULL, "route2 is read");
	ok(route_unread("lmtp_webhook_spool_dir", 1, why, sizeof(why)) == NULL,
	   "no route setting: not judged");
	is_str(route_unread("lmtp_webhook_route3", 2, why, sizeof(why)),
	       "lmtp_webhook_route3 is never read: routes are lmtp_webhook_route, "
	       "lmtp_webhook_route2, lmtp_webhook_route3, ... numbered without a gap "
	       "(lmtp_webhook_route2 is not set)", "route3 after no route2");
	is_str(route_unread("lmtp_webhook_route1", 1, why, sizeof(why)),
	       "lmtp_webhook_route1 is never read: routes are lmtp_webhook_route, "
	       "lmtp_webhook_route2, lmtp_webhook_route3, ... numbered without a gap "
	       "(no 1 and no leading zero)", "route1");
	ok(route_unread("lmtp_webhook_route02", 9, why, sizeof(why)) != NULL,
	   "route02: never read");
	ok(route_unread("lmtp_webhook_route2", 1, why, sizeof(why)) != NULL
	   && strstr(why, "(lmtp_webhook_route is not set)") != NULL,
	   "route2 without route: lmtp_webhook_route is not set");
    }
    return (tap_done());
}
