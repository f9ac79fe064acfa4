/* ratelimit_test - unit tests for policyd-ratelimit/ratelimit.c */

#include "build_config.h"

#include <arpa/inet.h>
#include <locale.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <wchar.h>
#include <wctype.h>

#include "ratelimit.h"
#include "tap.h"

static const struct config_spec specs[] = {
    {"limit", CONFIG_DIRECTIVE, NULL, CONFIG_REPEAT},
    {"override", CONFIG_DIRECTIVE, NULL, CONFIG_REPEAT},
    {"exempt", CONFIG_DIRECTIVE, NULL, CONFIG_REPEAT},
    {"recipient_delimiter", CONFIG_STRING, "+", 0},
    {0},
};

static const char example[] =
"limit per_user   = sasl_username        rate=30/1m,500/1d  count=recipients\n"
"limit per_ip     = client_address/24/64 rate=10/1m         count=messages   unless=sasl_username\n"
"limit per_domain = sender_domain        rate=1000/1h       count=messages   dry_run=yes\n"
"limit big_sender = sasl_username        rate=50M/1h        count=bytes\n"
"limit to_domain  = recipient_domain     rate=5/1s burst=10 action=reject\n"
"limit per_sender = sender               rate=5/1m\n"
"override per_user svc-billing rate=5000/1h,50000/1d\n"
"exempt client_address 127.0.0.0/8 ::1\n"
"exempt sasl_username svc-monitoring\n";

static struct policy_request *request(const char *lines)
{
    static struct policy_request req;
    char    copy[2048];

    policy_request_free(&req);
    policy_request_init(&req);
    snprintf(copy, sizeof(copy), "%s", lines);
    for (char *line = strtok(copy, "\n"); line; line = strtok(NULL, "\n"))
	policy_request_add_line(&req, line, strlen(line));
    return (&req);
}

static const char *key(const struct limit *limit, const char *lines)
{
    static char buf[LIMIT_KEY_MAX];

    return (ratelimit_key(limit, request(lines), buf, sizeof(buf)) ? buf : "(none)");
}

static const char *first_error(const char *text)
{
    static char buf[512];
    struct config *cfg = config_read_buffer("t.conf", text, strlen(text), specs);
    struct limits limits;

    memset(&limits, 0, sizeof(limits));
    ratelimit_load(&limits, cfg);
    snprintf(buf, sizeof(buf), "%s", cfg->error_count ? cfg->errors[0] : "(no error)");
    ratelimit_free(&limits);
    config_free(&cfg);
    return (buf);
}

/* long_key - the key of limit for attribute=value, value of any length */

static const char *long_key(const struct limit *limit, const char *attr, const char *value)
{
    static struct policy_request req;
    static char buf[LIMIT_KEY_MAX];
    char   *line = malloc(strlen(attr) + strlen(value) + 2);

    policy_request_free(&req);
    policy_request_init(&req);
    sprintf(line, "%s=%s", attr, value);
    if (policy_request_add_line(&req, line, strlen(line)) != NULL)
	tap_diag("request refused a %zu-byte line", strlen(line));
    free(line);
    if (!ratelimit_key(limit, &req, buf, sizeof(buf)))
	return ("(none)");
    policy_request_free(&req);
    return (buf);
}

static char *repeat(int ch, size_t len)
{
    char   *text = malloc(len + 1);

    memset(text, ch, len);
    text[len] = 0;
    return (text);
}

/*
 * test_long_keys - every length is limited: plain below 256 bytes,
 * hashed from 256 on (to exactly 256 bytes), never "(none)" as values
 * of 512 bytes and more were before.
 */

static void test_long_keys(const struct limits *limits)
{
    static const size_t lengths[] = {1, 254, 255, 256, 257, 511, 512, 513, 639, 640, 641,
    1024, 8000};
    const struct limit *per_user = limits->limit, *sender = limits->limit + 5;
    char   *a, *b, prev[LIMIT_KEY_MAX] = "";
    const char *k;

    for (size_t i = 0; i < sizeof(lengths) / sizeof(lengths[0]); i++) {
	size_t  n = lengths[i];

	a = repeat('a', n);
	k = long_key(per_user, "sasl_username", a);
	if (n < RATELIMIT_KEY_PLAIN_MAX)
	    is_str(k, a, "a %zu-byte value is its own key", n);
	else
	    ok(strlen(k) == RATELIMIT_KEY_HASHED && strncmp(k, a, 184) == 0
	       && strncmp(k + 184, "~sha256:", 8) == 0,
	       "a %zu-byte value is limited under a %d-byte hashed key", n,
	       RATELIMIT_KEY_HASHED);
	ok(strcmp(k, prev) != 0, "%zu bytes: a key of its own", n);
	snprintf(prev, sizeof(prev), "%s", k);
	b = strdup(a);
	b[n - 1] = 'b';
	ok(strcmp(long_key(per_user, "sasl_username", b), prev) != 0,
	   "%zu bytes: differing in the last byte is another key", n);
	free(a);
	free(b);
    }
    a = repeat('a', 300);
    memcpy(a + 182, "\xf0\x9f\x98\x80", 4);	/* U+1F600 across byte 184 */
    k = long_key(per_user, "sasl_username", a);
    ok(strlen(k) == RATELIMIT_KEY_HASHED && memcmp(k + 180, "aa~~~sha256:", 12) == 0,
       "a character across the cut is left out whole, the head padded with '~'");
    memcpy(a + 182, "aaaa", 4);
    is_str(long_key(per_user, "sasl_username", a) + 192,
	   "9835fa6bf4e20a9b9ea812506302e98982721a6cf8d2cae67af57129bf21ae90",
	   "the hash is SHA-256 of the whole value");
    a[0] = 'A';
    ok(strcmp(long_key(sender, "sender", a) + 192,
	      "9835fa6bf4e20a9b9ea812506302e98982721a6cf8d2cae67af57129bf21ae90") == 0,
       "sender keys are hashed after lowering case");
    ok(strcmp(long_key(per_user, "sasl_username", a) + 192,
	      "9835fa6bf4e20a9b9ea812506302e98982721a6cf8d2cae67af57129bf21ae90") == 0,
       "sasl_username keys compare without case too");
    free(a);
}

/* test_long_values - overrides and exemptions compare whole values */

static void test_long_values(void)
{
    char   *u600 = repeat('u', 600), *u511 = repeat('u', 511), *conf, keybuf[LIMIT_KEY_MAX];
    struct config *cfg;
    struct limits limits;
    struct policy_request req;
    char   *line;

    conf = malloc(4000);
    snprintf(conf, 4000, "limit per_user = sasl_username rate=1/1m\n"
	     "limit per_sender = sender rate=1/1m\n"
	     "override per_user %s rate=9/1m\n"
	     "override per_sender Alice@Example.NET rate=7/1m\n"
	     "exempt sasl_username %s\n"
	     "exempt sasl_username J\xc3\x96RG \xc8\xba\xc8\xba\n", u600, u511);
    cfg = config_read_buffer("long.conf", conf, strlen(conf), specs);
    memset(&limits, 0, sizeof(limits));
    ratelimit_load(&limits, cfg);
    is_int(cfg->error_count, 0, "overrides and exemptions of long values load");
    ratelimit_canon(u600, 0, keybuf);
    is_int(ratelimit_rates_for(limits.limit, keybuf)->rate[0].count, 9,
	   "an override of a 600-byte value applies to its key");
    is_int(ratelimit_rates_for(limits.limit + 1, "alice@example.net")->rate[0].count, 7,
	   "an override of a sender applies whatever its case");

    policy_request_init(&req);
    line = malloc(700);
    snprintf(line, 700, "sasl_username=%s", u511);
    policy_request_add_line(&req, line, strlen(line));
    ok(ratelimit_exempt(&limits, &req), "a 511-byte exempt value matches itself");
    policy_request_reset(&req);
    snprintf(line, 700, "sasl_username=%sX", u511);
    policy_request_add_line(&req, line, strlen(line));
    ok(!ratelimit_exempt(&limits, &req), "a longer value sharing its first 511 bytes does not");
    policy_request_reset(&req);
    snprintf(line, 700, "sasl_username=j\xc3\xb6rg");
    policy_request_add_line(&req, line, strlen(line));
    ok(ratelimit_exempt(&limits, &req), "exempt JÖRG: jörg is exempt (every letter's case)");
    policy_request_reset(&req);
    snprintf(line, 700, "sasl_username=\xe2\xb1\xa5\xc8\xba");
    policy_request_add_line(&req, line, strlen(line));
    ok(ratelimit_exempt(&limits, &req),
       "a lower case longer than its upper case (U+023A, U+2C65) compares too");
    free(line);
    policy_request_free(&req);
    ratelimit_free(&limits);
    config_free(&cfg);
    free(conf);
    free(u600);
    free(u511);
}

/*
 * test_delimiter - recipient_delimiter (helper-122): an address's
 * extension is no key of its own; the local part is cut at its first
 * delimiter character, as Postfix delivers it (not at a first one:
 * "+x@" is no extension), for recipient and sender keys, overrides and
 * exemptions; "" turns it off; '@', quotes and white space are refused.
 */
static void test_delimiter(void)
{
    static const char conf[] = "limit r = recipient rate=1/1m\nlimit s = sender rate=1/1m\n"
	"limit d = recipient_domain rate=1/1m\nlimit u = sasl_username rate=1/1m\n"
	"override r Bob+VIP@Example.COM rate=9/1m\nexempt recipient carol-x@example.com\n";
    static const struct {
	const char *delim, *line, *want;
    }       cases[] = {
	{"+", "recipient=alice+1@example.com", "alice@example.com"},
	{"+", "recipient=Alice+tag+more@Example.COM.", "alice@example.com"},
	{"+", "recipient=alice+@example.com", "alice@example.com"},
	{"+", "recipient=+alice@example.com", "+alice@example.com"},
	{"+", "recipient=alice@exa+mple.com", "alice@exa+mple.com"},
	{"+", "recipient=alice-1@example.com", "alice-1@example.com"},
	{"+-", "recipient=alice-1@example.com", "alice@example.com"},
	{"+-", "recipient=alice+a-b@example.com", "alice@example.com"},
	{"", "recipient=alice+1@example.com", "alice+1@example.com"},
	/* no domain: Postfix delivers it to alice@$myorigin (helper-125) */
	{"+", "recipient=alice+1", "alice"},
	{"+", "recipient=Alice+4", "alice"},
	{"+", "recipient=+x", "+x"},
	/* as Postfix's split_addr(): never split, and with '-' a
	   delimiter owner-* and *-request are mailboxes (helper-129) */
	{"+-", "recipient=list-request@lists.example", "list-request@lists.example"},
	/* split_addr() looks at the whole local part: "+x" after it splits */
	{"+-", "recipient=List-REQUEST+x@lists.example", "list@lists.example"},
	{"+-", "recipient=owner-list@lists.example", "owner-list@lists.example"},
	{"+-", "recipient=owner-@lists.example", "owner-@lists.example"},
	{"+-", "recipient=-request@lists.example", "-request@lists.example"},
	{"+-", "recipient=x-request-y@lists.example", "x@lists.example"},
	{"+", "recipient=list-request+x@lists.example", "list-request@lists.example"},
	{"-", "recipient=MAILER-DAEMON@example.com", "mailer-daemon@example.com"},
	{"-", "recipient=double-bounce@example.com", "double-bounce@example.com"},
	{"-", "recipient=double-bounce-x@example.com", "double@example.com"},
	{"+", "recipient=postmaster@example.com", "postmaster@example.com"},
    };
    char    text[512], buf[LIMIT_KEY_MAX];

    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
	struct config *cfg;
	struct limits limits;

	snprintf(text, sizeof(text), "%srecipient_delimiter = %s\n", conf, cases[i].delim);
	cfg = config_read_buffer("d.conf", text, strlen(text), specs);
	memset(&limits, 0, sizeof(limits));
	ratelimit_load(&limits, cfg);
	is_str(key(limits.limit, cases[i].line), cases[i].want, "delimiter \"%s\": %s",
	       cases[i].delim, cases[i].line);
	if (i == 0) {
	    is_str(key(limits.limit + 1, "sender=alice+news@example.com"), "alice@example.com",
		   "a sender's extension too");
	    is_str(key(limits.limit + 1, "sender=alice+news"), "alice",
		   "an unqualified sender's too (helper-125)");
	    is_str(key(limits.limit + 2, "recipient=alice+1@example.com"), "example.com",
		   "recipient_domain: unchanged");
	    is_str(key(limits.limit + 3, "sasl_username=svc+1@example.com"),
		   "svc+1@example.com", "sasl_username: not an address Postfix delivers");
	    is_int(ratelimit_rates_for(limits.limit, key(limits.limit,
		   "recipient=bob+other@example.com"))->rate[0].count, 9,
		   "an override names the mailbox: bob+VIP's applies to bob+other");
	    ok(ratelimit_exempt(&limits, request("recipient=carol-x@example.com")),
	       "an exemption without an extension (- is no delimiter here)");
	    (void) buf;
	}
	ratelimit_free(&limits);
	config_free(&cfg);
    }
    is_str(first_error("recipient_delimiter = @\n"), "t.conf:1: recipient_delimiter: \"@\": "
	   "delimiter characters (Postfix's recipient_delimiter), not '@', a quote, a backslash "
	   "or white space", "'@' refused");
    ok(strstr(first_error("recipient_delimiter = \"+\"\n"), "recipient_delimiter") != NULL,
       "a quote refused");
}

/*
 * test_address_keys - an address's key is written without printf (issue
 * 18): for IPv4 addresses of every digit count and for prefixes 0-32 and
 * none, it must be byte for byte what inet_ntop() and "%s/%d" gave.
 */
static void test_address_keys(void)
{
    static const char text[] = "limit host = client_address rate=1/1m\n"
	"limit p0 = client_address/0/0 rate=1/1m\n"
	"limit p7 = client_address/7/13 rate=1/1m\n"
	"limit p24 = client_address/24/64 rate=1/1m\n"
	"limit p32 = client_address/32/128 rate=1/1m\n";
    struct config *cfg = config_read_buffer("a.conf", text, strlen(text), specs);
    struct limits limits;
    unsigned seed = 18, mismatches = 0, checked = 0;
    static const unsigned fixed[] = {0, 0xffffffffu, 0x0a000001u, 0x01020304u, 0xc0000209u,
    0x64646464u, 0x09090909u, 0x7f000001u};

    memset(&limits, 0, sizeof(limits));
    ratelimit_load(&limits, cfg);
    is_int(cfg->error_count, 0, "address limits load");
    for (int n = 0; n < 3000; n++) {
	unsigned addr = n < 8 ? fixed[n] : (unsigned) rand_r(&seed) * 2654435761u ^ (unsigned) n;
	unsigned char bytes[4] = {addr >> 24, addr >> 16, addr >> 8, addr};
	char    line[64], want[64], ntop[INET_ADDRSTRLEN];

	snprintf(line, sizeof(line), "client_address=%u.%u.%u.%u", bytes[0], bytes[1],
		 bytes[2], bytes[3]);
	for (int l = 0; l < limits.limit_count; l++) {
	    int     prefix = limits.limit[l].v4_prefix;
	    unsigned char masked[4];

	    memcpy(masked, bytes, 4);
	    for (int bit = prefix; prefix >= 0 && bit < 32; bit++)
		masked[bit / 8] &= (unsigned char) ~(0x80 >> (bit % 8));
	    inet_ntop(AF_INET, masked, ntop, sizeof(ntop));
	    if (prefix >= 0)
		snprintf(want, sizeof(want), "%s/%d", ntop, prefix);
	    else
		snprintf(want, sizeof(want), "%s", ntop);
	    checked++;
	    if (strcmp(key(limits.limit + l, line), want) != 0 && mismatches++ < 5)
		diag("%s, limit %s: %s, want %s", line, limits.limit[l].name,
		     key(limits.limit + l, line), want);
	}
    }
    is_int(mismatches, 0, "%u IPv4 keys as inet_ntop() and \"%%s/%%d\" wrote them", checked);
    is_str(key(limits.limit + 3, "client_address=2001:db8:1:2:3:4:5:6"), "2001:db8:1:2::/64",
	   "IPv6 keys still through inet_ntop()");
    is_str(key(limits.limit + 4, "client_address=::ffff:192.0.2.1"), "192.0.2.1/32",
	   "an IPv4-mapped IPv6 address is counted as its IPv4 address, with the V4LEN");
    ratelimit_free(&limits);
    config_free(&cfg);
}

int     main(void)
{
    test_delimiter();
    struct config *cfg = config_read_buffer("ex.conf", example, strlen(example), specs);
    struct limits limits;
    struct limit_rates rates;
    const struct limit_rates *r;

    memset(&limits, 0, sizeof(limits));
    ratelimit_load(&limits, cfg);
    is_int(cfg->error_count, 0, "the example loads without errors");
    if (cfg->error_count)
	diag("%s", cfg->errors[0]);
    is_int(limits.limit_count, 6, "six limits");
    is_int(limits.limit[0].rates.count, 2, "per_user has two rates");
    is_int(limits.limit[0].rates.rate[1].count, 500, "500/1d: count");
    is_int(limits.limit[0].rates.rate[1].period_ms, 86400000, "500/1d: period");
    is_int(limits.limit[0].count, COUNT_RECIPIENTS, "count=recipients");
    is_int(limits.limit[3].rates.rate[0].count, 50LL * 1024 * 1024, "50M is 50 MiB");
    is_int(limits.limit[1].v4_prefix * 1000 + limits.limit[1].v6_prefix, 24064,
	   "client_address/24/64 prefixes");
    ok(limits.limit[2].dry_run, "dry_run=yes");
    is_int(limits.limit[4].rates.rate[0].burst, 10, "burst=10");
    is_int(limits.limit[4].action, ACTION_REJECT, "action=reject");

    r = ratelimit_rates_for(limits.limit, "svc-billing");
    is_int(r->rate[0].count, 5000, "override applies to svc-billing");
    r = ratelimit_rates_for(limits.limit, "svc-alerts");
    is_int(r->rate[0].count, 30, "others get the limit's own rates");

    is_str(key(limits.limit, "sasl_username=svc-alerts"), "svc-alerts", "attribute key");
    is_str(key(limits.limit, "sasl_username="), "(none)", "empty attribute: no key");
    is_str(key(limits.limit, "sasl_username=Alice@Example.COM"), "alice@example.com",
	   "sasl_username: any case is one login");
    /* Unicode letters too, as LDAP's caseIgnoreMatch and SQL collations do */
    is_str(key(limits.limit, "sasl_username=J\xc3\x96RG"), "j\xc3\xb6rg",
	   "sasl_username: JÖRG is jörg");
    is_str(key(limits.limit, "sasl_username=\xc3\x89LODIE"), "\xc3\xa9lodie",
	   "sasl_username: ÉLODIE is élodie");
    is_str(key(limits.limit, "sasl_username=\xce\xa3\xce\x9f\xce\xa6\xce\x99\xce\x91"),
	   "\xcf\x83\xce\xbf\xcf\x86\xce\xb9\xce\xb1", "sasl_username: Greek upper case");
    is_str(key(limits.limit, "sasl_username=\xd0\x98\xd0\xb2\xd0\x90\xd0\x9d"),
	   "\xd0\xb8\xd0\xb2\xd0\xb0\xd0\xbd", "sasl_username: Cyrillic upper case");
    is_str(key(limits.limit, "sasl_username=A\xff\xc3" "B\xc3\x96"), "a\xff\xc3" "b\xc3\xb6",
	   "bytes that are not UTF-8 are kept, the rest lowered");
    is_str(key(limits.limit, "sasl_username=\xe2\x84\xaa"), "k",
	   "the Kelvin sign is k (a shorter lower case)");
    is_str(key(limits.limit + 5, "sender=\xc3\x85SA@example.com"), "\xc3\xa5sa@example.com",
	   "sender: the local part's Unicode letters lowered too");
    is_str(key(limits.limit, "sasl_username=alice."), "alice.",
	   "sasl_username keeps a trailing dot (a name, not a domain)");
    is_str(key(limits.limit + 1, "client_address=192.0.2.77"), "192.0.2.0/24", "IPv4 /24");
    is_str(key(limits.limit + 1, "client_address=2001:db8:1:2:3:4:5:6"), "2001:db8:1:2::/64",
	   "IPv6 /64");
    is_str(key(limits.limit + 1, "client_address=::ffff:192.0.2.77"), "192.0.2.0/24",
	   "IPv4-mapped IPv6 is the IPv4 address (one client, one key)");
    is_str(key(limits.limit + 1, "client_address=::FFFF:c000:024d"), "192.0.2.0/24",
	   "so is its hex form");
    is_str(key(limits.limit + 1, "client_address=fe80::1:2:3:4%eth0"), "fe80::/64",
	   "an IPv6 zone names this host's interface, not the client: dropped");
    is_str(key(limits.limit + 1, "client_address=192.0.2.77\nsasl_username=bob"), "(none)",
	   "unless=sasl_username skips authenticated clients");
    is_str(key(limits.limit + 1, "client_address=unknown"), "unknown",
	   "client_address=unknown (XCLIENT [UNAVAILABLE]) is limited, not skipped");
    is_str(key(limits.limit + 1, "client_address=Not-An-IP"), "not-an-ip",
	   "any non-address is counted as itself");
    is_str(key(limits.limit + 2, "sender=bob"), "[unqualified]",
	   "an unqualified sender counts for one shared domain key");
    is_str(key(limits.limit + 2, "sender=bob@"), "[unqualified]", "so does user@");
    is_str(key(limits.limit + 2, "sender=Alice@PlanaPulse.AI"), "planapulse.ai",
	   "sender_domain, lower case");
    is_str(key(limits.limit + 2, "sender="), "(none)", "null sender: no domain key");
    is_str(key(limits.limit + 4, "recipient=x@Example.NET"), "example.net", "recipient_domain");
    is_str(key(limits.limit + 4, "recipient=x@Example.NET."), "example.net",
	   "recipient_domain: one trailing dot is the same domain");
    is_str(key(limits.limit + 2, "sender=a@x.example.."), "x.example..",
	   "two trailing dots are left alone");
    is_str(key(limits.limit + 5, "sender=A@X.Example."), "a@x.example",
	   "sender: one trailing dot is the same address");
    is_str(key(limits.limit + 5, "sender=a@."), "a@.", "\"a@.\" keeps its dot");
    is_str(key(limits.limit + 2, "sender=a@B\xc3\x9c""cher.example."), "xn--bcher-kva.example",
	   "sender_domain: an IDN domain in upper case U-labels is its A-labels");
    is_str(key(limits.limit + 5, "sender=A@b\xc3\xbc""cher.example"), "a@xn--bcher-kva.example",
	   "sender: the domain in A-labels, the local part lowered");
    is_str(key(limits.limit + 4, "recipient=x@XN--BCHER-KVA.example"), "xn--bcher-kva.example",
	   "recipient_domain: A-labels in any case");
    is_str(key(limits.limit + 2, "sender=a@b\xc3\xbc""xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx.example"),
	   "b\xc3\xbc""xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx.example",
	   "a name IDNA refuses (a label over 63 bytes) is counted as written");
    is_str(key(limits.limit + 2, "sender=bob@."), ".", "so does the domain \".\"");
    /* helper-116: libidn2 and towlower() disagree on 42 letters */
    is_str(key(limits.limit + 2, "sender=a@d\xe1\x82\xa0.example"), "xn--d-9us.example",
	   "sender_domain: Georgian capital U+10A0 is its small letter's A-labels");
    is_str(key(limits.limit + 2, "sender=a@d\xe2\xb4\x80.example"), "xn--d-9us.example",
	   "sender_domain: ... as the small letter U+2D00 is");
    {
	/* every letter with a lower case: both spellings, one key */
	int     split = 0, tried = 0;
	char    up[64], low[64], k_up[512], k_low[512], first[1100] = "";

	(void) setlocale(LC_CTYPE, "C.UTF-8");	/* the daemon's case, here too */

	for (wint_t c = 0x80; c < 0x20000; c++) {
	    wint_t  l = towlower(c);
	    mbstate_t s1, s2;
	    char    u8[8], l8[8];
	    size_t  n1, n2;

	    if (l == c || (c >= 0xd800 && c < 0xe000))
		continue;
	    memset(&s1, 0, sizeof(s1));
	    memset(&s2, 0, sizeof(s2));
	    if ((n1 = wcrtomb(u8, (wchar_t) c, &s1)) == (size_t) -1
		|| (n2 = wcrtomb(l8, (wchar_t) l, &s2)) == (size_t) -1)
		continue;
	    snprintf(up, sizeof(up), "sender=a@d%.*s.example", (int) n1, u8);
	    snprintf(low, sizeof(low), "sender=a@d%.*s.example", (int) n2, l8);
	    snprintf(k_up, sizeof(k_up), "%s", key(limits.limit + 2, up));
	    snprintf(k_low, sizeof(k_low), "%s", key(limits.limit + 2, low));
	    tried++;
	    if (strcmp(k_up, k_low) != 0 && split++ == 0)
		snprintf(first, sizeof(first), "U+%04X: %s / %s", (unsigned) c, k_up, k_low);
	}
	ok(tried > 1000 && split == 0, "sender_domain: each of %d letters and its lower case are "
	   "one key (%d split%s%s)", tried, split, split ? ", first " : "", first);
    }
    ok(strstr(first_error("limit a = sender rate=1/1m count=messages rate=9/1h\n"),
	      "rate= is given twice") != NULL, "a limit's rate= given twice is refused");
    ok(strstr(first_error("limit a = sender rate=1/1m\noverride a x rate=2/1m burst=1 burst=2\n"),
	      "burst= is given twice") != NULL, "an override's burst= given twice is refused");
    ok(strstr(first_error("limit a = client_address/24/64 rate=1/1m\n"
			  "override a 192.0.2.0/16 rate=2/1m\n"), "V4LEN") != NULL,
       "an override network of another length is refused");
    ok(strstr(first_error("limit a = client_address rate=1/1m\n"
			  "override a 2001:db8::/64 rate=2/1m\n"), "not a network") != NULL,
       "a network on a per-address limit is refused");
    {
	const char *text = "limit a = client_address/24/64 rate=1/1m\n"
	    "limit b = client_address rate=1/1m\n"
	    "override a 2001:DB8:0:1::9/64 rate=2/1m\n"
	    "override a 192.0.2.9 rate=3/1m\n"
	    "override b 2001:DB8:0:0::7 rate=4/1m\n"
	    "override b UNKNOWN rate=5/1m\n";
	struct config *c = config_read_buffer("t.conf", text, strlen(text), specs);
	struct limits l;

	memset(&l, 0, sizeof(l));
	ratelimit_load(&l, c);
	is_int(c->error_count, 0, "address overrides in any form load");
	is_int(ratelimit_rates_for(l.limit, "2001:db8:0:1::/64")->rate[0].count, 2,
	       "an IPv6 override applies to the network's key");
	is_int(ratelimit_rates_for(l.limit, "192.0.2.0/24")->rate[0].count, 3,
	       "an IPv4 address names its /24");
	is_int(ratelimit_rates_for(l.limit + 1, "2001:db8::7")->rate[0].count, 4,
	       "an address override in inet_ntop() form");
	is_int(ratelimit_rates_for(l.limit + 1, "unknown")->rate[0].count, 5,
	       "\"unknown\" in any case");
	ratelimit_free(&l);
	config_free(&c);
    }

    ok(ratelimit_exempt(&limits, request("client_address=127.0.0.2")), "127.0.0.2 exempt");
    ok(ratelimit_exempt(&limits, request("client_address=::1")), "::1 exempt");
    ok(ratelimit_exempt(&limits, request("client_address=::1%lo")),
       "::1%%lo exempt: the zone is dropped, as the limits drop it");
    ok(ratelimit_exempt(&limits, request("client_address=::ffff:127.0.0.9%2")),
       "::ffff:127.0.0.9%%2 exempt");
    ok(!ratelimit_exempt(&limits, request("client_address=::2%lo")), "::2%%lo not exempt");
    ok(!ratelimit_exempt(&limits, request("client_address=10.0.0.1")), "10.0.0.1 not exempt");
    ok(ratelimit_exempt(&limits, request("client_address=10.0.0.1\nsasl_username=svc-monitoring")),
       "exempt by sasl_username");
    {
	const char *text = "exempt sender_domain Partner.Example.\n";
	struct config *c = config_read_buffer("t.conf", text, strlen(text), specs);
	struct limits l;

	memset(&l, 0, sizeof(l));
	ratelimit_load(&l, c);
	ok(ratelimit_exempt(&l, request("sender=a@PARTNER.example")),
	   "exempt sender_domain: the sender's domain, any case, no trailing dot");
	ok(!ratelimit_exempt(&l, request("sender=a@partner.example.net")),
	   "exempt sender_domain: another domain is not exempt");
	ratelimit_free(&l);
	config_free(&c);
    }

    ok(ratelimit_parse_rates("30/1m", &rates) == NULL, "30/1m parses");
    ok(ratelimit_parse_rates("30/0s", &rates) != NULL, "zero period refused");
    ok(ratelimit_parse_rates("0/1m", &rates) != NULL, "zero count refused");
    ok(ratelimit_parse_rates("30", &rates) != NULL, "missing period refused");
    ok(ratelimit_parse_rates("1/1m,2/1m,3/1m,4/1m,5/1m", &rates) != NULL,
       "more than %d rates refused", LIMIT_RATES_MAX);

    ok(strstr(first_error("limit a = sasl_username rate=1/1m count=letters\n"), "t.conf:1:")
       != NULL, "errors are file:line");
    ok(strstr(first_error("limit a = sasl_username rate=1/1m\nlimit a = sender rate=1/1m\n"),
	      "t.conf:2:") != NULL, "duplicate limit name refused on its line");
    ok(strstr(first_error("limit a = sasl_username rate=1/1m unless=\n"), "unless") != NULL,
       "empty unless= refused");
    ok(strstr(first_error("exempt client_address 300.1.1.1\n"), "300.1.1.1") != NULL,
       "bad CIDR names the value");
    ok(strstr(first_error("override a b rate=1/1m\n"), "unknown limit") != NULL,
       "override of an unknown limit refused");

    ok(strstr(first_error("limit a12345678901234567890123456789012345678901234567890123456789"
			  "012345 = sender rate=1/1m\n"), "64") != NULL,
       "a limit name over 64 characters refused");
    test_long_keys(&limits);
    test_long_values();
    test_address_keys();

    ratelimit_free(&limits);
    config_free(&cfg);
    policy_request_free(request(""));
    return (tap_done());
}
