/* auth_test - unit tests for milter-dkim/{mdns,spf,dmarc,auth}.c on a dns_test_file */

#include "build_config.h"

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "auth.h"
#include "config.h"
#include "dmarc.h"
#include "mdns.h"
#include "policy.h"
#include "spf.h"
#include "tap.h"
#include "xalloc.h"

#define PSL "/usr/share/publicsuffix/public_suffix_list.dat"

static char zone_path[] = "/tmp/auth_test.XXXXXX";

static const char *zone =
"vendor.test v=spf1 ip4:192.0.2.1 ip6:2001:db8::/32 -all\n"
"mail.vendor.test v=spf1 ip4:192.0.2.1 -all\n"
"_dmarc.vendor.test v=DMARC1; p=reject\n"
"_dmarc.vendor.test something else\n"
"loop1.test v=spf1 include:loop2.test -all\n"
"loop2.test v=spf1 include:loop1.test -all\n"
"ten.test v=spf1 include:i1.test include:i2.test include:i3.test include:i4.test "
"include:i5.test include:i6.test include:i7.test include:i8.test include:i9.test "
"include:i10.test ip4:192.0.2.1 -all\n"
"eleven.test v=spf1 include:i1.test include:i2.test include:i3.test include:i4.test "
"include:i5.test include:i6.test include:i7.test include:i8.test include:i9.test "
"include:i10.test include:i11.test ip4:192.0.2.1 -all\n"
"deep.test v=spf1 include:d1.test ip4:192.0.2.1 -all\n"
"d1.test v=spf1 include:i1.test include:i2.test include:i3.test include:i4.test "
"include:i5.test include:i6.test include:i7.test include:i8.test include:i9.test "
"include:i10.test -all\n"
"void2.test v=spf1 a:nx1.test a:nx2.test ip4:192.0.2.1 -all\n"
"void3.test v=spf1 a:nx1.test a:nx2.test a:nx3.test ip4:192.0.2.1 -all\n"
"syntax.test v=spf1 ip4:192.0.2.300 -all\n"
"_dmarc.multi.test v=DMARC1; p=reject\n"
"_dmarc.multi.test v=DMARC1; p=none\n"
"_dmarc.bad.test v=DMARC1; p=bogus\n"
"_dmarc.parent.test v=DMARC1; p=none; sp=reject\n"
"_dmarc.never.test v=DMARC1; p=reject; pct=0\n"
"_dmarc.strict.test v=DMARC1; p=reject; adkim=s; aspf=s\n";

static void write_zone(void)
{
    int     fd = mkstemp(zone_path);
    char    name[32];

    if (fd < 0 || write(fd, zone, strlen(zone)) != (ssize_t) strlen(zone))
	abort();
    close(fd);
    for (int i = 1; i <= 11; i++) {			/* include targets: no match */
	snprintf(name, sizeof(name), "i%d.test v=spf1 -all\n", i);
	fd = open(zone_path, O_WRONLY | O_APPEND);
	if (fd < 0 || write(fd, name, strlen(name)) < 0)
	    abort();
	close(fd);
    }
}

static const char *spf(struct spf_checker *chk, const char *client, const char *helo,
		               const char *from, char **comment)
{
    static struct spf_result r;

    spf_result_free(&r);
    spf_check(chk, client, helo, from, &r);
    if (comment)
	*comment = r.comment;
    return (r.result);
}

static void test_mdns(struct mdns *dns)
{
    struct dns_answer *ans;

    is_int(mdns_lookup(dns, "_dmarc.vendor.test", DNS_T_TXT, &ans), DNS_OK, "file: TXT found");
    is_int(ans->count, 2, "file: every record of the name");
    dns_answer_free(&ans);
    is_int(mdns_lookup(dns, "VENDOR.test.", DNS_T_TXT, &ans), DNS_OK, "file: case, trailing dot");
    dns_answer_free(&ans);
    is_int(mdns_lookup(dns, "vendor.test", DNS_T_A, &ans), DNS_NODATA, "file: other type: NODATA");
    dns_answer_free(&ans);
    is_int(mdns_lookup(dns, "nothing.test", DNS_T_TXT, &ans), DNS_NXDOMAIN, "file: NXDOMAIN");
    dns_answer_free(&ans);
}

/* test_guard - which names draw on the reserve of the DMARC lookups */

static void test_guard(void)
{
    const char *orgs[] = {"vendor.test", "other.example"};

    mdns_guard_set(orgs, 2);
    ok(mdns_guarded("vendor.test"), "guard: the domain itself");
    ok(mdns_guarded("sel._domainkey.VENDOR.test."), "guard: a name under it, case, dot");
    ok(mdns_guarded("_dmarc.other.example"), "guard: the second domain");
    ok(!mdns_guarded("evilvendor.test"), "guard: a suffix that is no label boundary");
    ok(!mdns_guarded("vendor.test.slow.attacker.test"), "guard: the name inside another");
    ok(!mdns_guarded("test"), "guard: its parent");
    mdns_budget_end();
    ok(!mdns_guarded("vendor.test"), "guard: ended with the budget");
}

static void test_spf(struct mdns *dns)
{
    struct spf_checker *chk = spf_checker_create(dns);
    char   *why;

    is_str(spf(chk, "192.0.2.1", "x", "billing@vendor.test", &why), "pass", "SPF pass");
    is_str(why, "192.0.2.1 is permitted by vendor.test", "comment");
    is_str(spf(chk, "192.0.2.2", "x", "billing@vendor.test", NULL), "fail", "SPF fail");
    is_str(spf(chk, "127.0.0.1", "x", "billing@vendor.test", NULL), "fail",
	   "a loopback client gets no free pass");
    is_str(spf(chk, "::1", "x", "billing@vendor.test", NULL), "fail", "nor ::1");
    is_str(spf(chk, "::ffff:192.0.2.1", "x", "billing@vendor.test", NULL), "pass",
	   "IPv4-mapped IPv6 is checked as IPv4");
    is_str(spf(chk, "2001:db8::9", "x", "billing@vendor.test", NULL), "pass", "IPv6 pass");
    is_str(spf(chk, "192.0.2.1", "mail.vendor.test", "", &why), "pass",
	   "null sender: the HELO name");
    is_str(spf(chk, "192.0.2.1", "[192.0.2.1]", "", &why), "none", "HELO literal: none");
    is_str(why, "no valid HELO domain", "comment says why");
    is_str(spf(chk, NULL, "x", "billing@vendor.test", &why), "none", "no client address");
    is_str(spf(chk, "192.0.2.1", "x", "a@-bad..test", NULL), "none", "malformed domain");
    is_str(spf(chk, "192.0.2.1", "x", "a@localhost", NULL), "none", "single-label domain");
    is_str(spf(chk, "192.0.2.1", "x", "a@nothing.test", &why), "none", "no record");
    is_str(spf(chk, "192.0.2.1", "x", "a@loop1.test", NULL), "permerror", "include loop");
    is_str(spf(chk, "192.0.2.1", "x", "a@ten.test", NULL), "pass", "10 includes");
    is_str(spf(chk, "192.0.2.1", "x", "a@eleven.test", &why), "permerror", "11 includes");
    is_str(why, "more than 10 DNS-querying terms", "why");
    is_str(spf(chk, "192.0.2.1", "x", "a@deep.test", NULL), "permerror",
	   "1 + 10 nested: counted across include levels");
    is_str(spf(chk, "192.0.2.1", "x", "a@void2.test", NULL), "pass", "2 void lookups");
    is_str(spf(chk, "192.0.2.1", "x", "a@void3.test", &why), "permerror", "3 void lookups");
    is_str(why, "more than 2 void DNS lookups", "why");
    is_str(spf(chk, "192.0.2.1", "x", "a@syntax.test", &why), "permerror", "syntax error");
    diag("syntax error: %s", why);
    spf(chk, NULL, NULL, NULL, NULL);
    spf_checker_free(&chk);
    ok(chk == NULL, "checker freed");
}

static void test_dmarc_parts(const psl_ctx_t *psl)
{
    ok(dmarc_is_record("v=DMARC1; p=none", 16), "v=DMARC1;");
    ok(dmarc_is_record("v = DMARC1 ;p=none", 18), "spaces around = and before ;");
    ok(dmarc_is_record("v=DMARC1", 8), "v=DMARC1 alone");
    ok(!dmarc_is_record("v=DMARC1x; p=none", 17), "v=DMARC1x refused");
    ok(!dmarc_is_record("v=dmarc1; p=none", 16), "lower case refused (%%x44 in the ABNF)");
    ok(!dmarc_is_record(" v=DMARC1; p=none", 17), "leading space refused");
    ok(!dmarc_is_record("v=DMARC1\0; p=none", 17), "a NUL byte refused");
    ok(!dmarc_is_record("", 0), "empty refused");
    ok(dmarc_aligned(psl, "a.vendor.test", "b.vendor.test", 0), "relaxed: same org domain");
    ok(!dmarc_aligned(psl, "a.vendor.test", "b.vendor.test", 1), "strict: not the same name");
    ok(dmarc_aligned(psl, "Vendor.Test.", "vendor.test", 1), "strict: case and trailing dot");
    ok(dmarc_aligned(psl, "x.example.co.uk", "example.co.uk", 0), "co.uk: relaxed");
    ok(!dmarc_aligned(psl, "co.uk", "example.co.uk", 0), "a public suffix aligns with nothing below");
    ok(!dmarc_aligned(psl, "a.github.io", "b.github.io", 0), "private suffixes count (github.io)");
    ok(!dmarc_aligned(psl, "evilvendor.test", "vendor.test", 0), "label boundary");
    is_str(dmarc_org_domain(psl, "a.b.vendor.test"), "vendor.test", "org domain under 'test'");
}

static const char *dmarc(struct mdns *dns, const psl_ctx_t *psl, const char *from,
			         const char *dkim_d, const char *spf_d, struct dmarc_result *d)
{
    struct dmarc_sig sig = {dkim_d, "pass"};
    struct spf_result s = {.result = "pass", .domain = (char *) spf_d};

    dmarc_check(dns, psl, from, &sig, dkim_d ? 1 : 0, spf_d ? &s : NULL, d);
    return (d->result);
}

static void test_dmarc(struct mdns *dns, const psl_ctx_t *psl)
{
    struct dmarc_result d;

    is_str(dmarc(dns, psl, "vendor.test", "vendor.test", NULL, &d), "pass", "DKIM aligned");
    is_int(d.policy, 'r', "p=reject");
    is_str(dmarc(dns, psl, "vendor.test", NULL, "mail.vendor.test", &d), "pass",
	   "SPF relaxed-aligned");
    is_str(dmarc(dns, psl, "vendor.test", "other.test", "other.test", &d), "fail",
	   "neither aligned");
    ok(d.reject && !d.defer, "reject under p=reject");
    is_str(dmarc(dns, psl, "sub.vendor.test", NULL, NULL, &d), "fail",
	   "subdomain without its own record: the org record");
    is_int(d.policy, 'r', "sp absent: p applies");
    is_str(dmarc(dns, psl, "sub.parent.test", NULL, NULL, &d), "fail", "sp=reject applies");
    is_int(d.policy, 'r', "... as reject");
    is_str(dmarc(dns, psl, "parent.test", NULL, NULL, &d), "fail", "org domain itself");
    is_int(d.policy, 'n', "... p=none");
    ok(!d.reject, "p=none: no reject");
    is_str(dmarc(dns, psl, "multi.test", NULL, NULL, &d), "none", "two records: none");
    is_str(dmarc(dns, psl, "bad.test", NULL, NULL, &d), "permerror", "p=bogus: permerror");
    is_str(dmarc(dns, psl, "nothing.test", NULL, NULL, &d), "none", "no record");
    dmarc(dns, psl, "never.test", NULL, NULL, &d);
    ok(strcmp(d.result, "fail") == 0 && !d.reject, "pct=0: fail, never rejected");
    is_str(dmarc(dns, psl, "strict.test", "mail.strict.test", "mail.strict.test", &d), "fail",
	   "adkim=s, aspf=s: subdomains do not align");
    is_str(dmarc(dns, psl, "strict.test", "strict.test", NULL, &d), "pass", "strict: same name");
    is_str(dmarc(dns, psl, "bad name.test", NULL, NULL, &d), "permerror", "invalid From domain");
}

static void test_auth(void)
{
    char   *text = xasprintf("mode = verify\ndns_test_file = %s\ndmarc_reject = yes\n"
			     "authserv_id = mx.test\n", zone_path);
    struct config *cfg = config_read_buffer("t", text, strlen(text), policy_specs);
    DKIM_LIB *lib = dkim_init(NULL, NULL);
    struct auth_conf *a = NULL;
    struct auth_session s = {"192.0.2.9", "mail.example", "billing@vendor.test"};
    struct message m;
    const char *code, *dsn, *reply = NULL;
    char   *results;
    enum auth_verdict v;

    auth_load(cfg, lib, 1, &a);
    is_int(cfg->error_count, 0, "auth_load: no errors");
    memset(&m, 0, sizeof(m));
    message_add_header(&m, "From", " Billing <billing@vendor.test>", "mx.test");
    results = xstrdup(" mx.test;\n\tdkim=none");
    auth_begin(a, &m);
    ok(mdns_guarded("_dmarc.vendor.test"), "auth_begin: the From: domain is guarded");
    ok(!mdns_guarded("_dmarc.attacker.test"), "auth_begin: no other domain");
    v = auth_evaluate(a, NULL, DKIM_STAT_NOSIG, &m, &s, &results, &code, &dsn, &reply);
    auth_end();
    is_int(v, AUTH_REJECT, "spoof under dmarc_reject: reject");
    is_str(code, "550", "550");
    is_str(dsn, "5.7.1", "5.7.1");
    is_str(results, " mx.test;\n\tdkim=none;\n\tspf=fail (192.0.2.9 is not permitted by "
	   "vendor.test) smtp.mailfrom=billing@vendor.test;\n\tdmarc=fail (p=reject sp=reject "
	   "pct=100 adkim=r aspf=r, dkim not aligned, spf not aligned) header.from=vendor.test "
	   "policy.dmarc=reject", "the A-R text, exactly");
    free(results);
    s.mail_from = "\"a (b) \\\" c\"@vendor.test";
    s.client = "192.0.2.1";
    results = xstrdup(" mx.test");
    v = auth_evaluate(a, NULL, DKIM_STAT_NOSIG, &m, &s, &results, &code, &dsn, &reply);
    ok(v == AUTH_ACCEPT && strstr(results, "spf=pass (192.0.2.1 is permitted by vendor.test) "
				   "smtp.mailfrom=vendor.test;")
       && strstr(results, "dmarc=pass"), "a MAIL FROM that needs quoting: its domain; pass");
    ok(strchr(results, '"') == NULL, "nothing quoted in our A-R");
    free(results);
    message_add_header(&m, "From", " x@spoof.test", "mx.test");
    results = xstrdup(" mx.test");
    v = auth_evaluate(a, NULL, DKIM_STAT_NOSIG, &m, &s, &results, &code, &dsn, &reply);
    ok(v == AUTH_REJECT && strstr(results, "dmarc=permerror (2 From: headers)"),
       "two From: headers: permerror, rejected under dmarc_reject");
    free(results);
    message_reset(&m);
    auth_free(&a);
    ok(a == NULL, "auth freed");
    dkim_close(lib);
    config_free(&cfg);
    free(text);
}

int     main(void)
{
    struct mdns *dns = NULL;
    psl_ctx_t *psl = psl_load_file(PSL);

    write_zone();
    is_str(mdns_create(NULL, 1000, "/nonexistent/zone", &dns), "cannot open dns_test_file",
	   "missing file: error");
    if (!ok(mdns_create(NULL, 1000, zone_path, &dns) == NULL, "mdns on a test file"))
	return (tap_done());
    ok(psl != NULL, "public suffix list loaded from %s", PSL);
    test_mdns(dns);
    test_guard();
    test_spf(dns);
    test_dmarc_parts(psl);
    test_dmarc(dns, psl);
    test_auth();
    mdns_free(&dns);
    psl_free(psl);
    unlink(zone_path);
    return (tap_done());
}
