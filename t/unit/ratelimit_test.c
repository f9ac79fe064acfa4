/* ratelimit_test - unit tests for policyd-ratelimit/ratelimit.c */

#include "build_config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ratelimit.h"
#include "tap.h"

static const struct config_spec specs[] = {
    {"limit", CONFIG_DIRECTIVE, NULL, CONFIG_REPEAT},
    {"override", CONFIG_DIRECTIVE, NULL, CONFIG_REPEAT},
    {"exempt", CONFIG_DIRECTIVE, NULL, CONFIG_REPEAT},
    {0},
};

static const char example[] =
"limit per_user   = sasl_username        rate=30/1m,500/1d  count=recipients\n"
"limit per_ip     = client_address/24/64 rate=10/1m         count=messages   unless=sasl_username\n"
"limit per_domain = sender_domain        rate=1000/1h       count=messages   dry_run=yes\n"
"limit big_sender = sasl_username        rate=50M/1h        count=bytes\n"
"limit to_domain  = recipient_domain     rate=5/1s burst=10 action=reject\n"
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

int     main(void)
{
    struct config *cfg = config_read_buffer("ex.conf", example, strlen(example), specs);
    struct limits limits;
    struct limit_rates rates;
    const struct limit_rates *r;

    memset(&limits, 0, sizeof(limits));
    ratelimit_load(&limits, cfg);
    is_int(cfg->error_count, 0, "the example loads without errors");
    if (cfg->error_count)
	diag("%s", cfg->errors[0]);
    is_int(limits.limit_count, 5, "five limits");
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
    is_str(key(limits.limit + 1, "client_address=192.0.2.77"), "192.0.2.0/24", "IPv4 /24");
    is_str(key(limits.limit + 1, "client_address=2001:db8:1:2:3:4:5:6"), "2001:db8:1:2::/64",
	   "IPv6 /64");
    is_str(key(limits.limit + 1, "client_address=192.0.2.77\nsasl_username=bob"), "(none)",
	   "unless=sasl_username skips authenticated clients");
    is_str(key(limits.limit + 1, "client_address=not-an-ip"), "(none)", "garbage address");
    is_str(key(limits.limit + 2, "sender=Alice@PlanaPulse.AI"), "planapulse.ai",
	   "sender_domain, lower case");
    is_str(key(limits.limit + 2, "sender="), "(none)", "null sender: no domain key");
    is_str(key(limits.limit + 4, "recipient=x@Example.NET"), "example.net", "recipient_domain");

    ok(ratelimit_exempt(&limits, request("client_address=127.0.0.2")), "127.0.0.2 exempt");
    ok(ratelimit_exempt(&limits, request("client_address=::1")), "::1 exempt");
    ok(!ratelimit_exempt(&limits, request("client_address=10.0.0.1")), "10.0.0.1 not exempt");
    ok(ratelimit_exempt(&limits, request("client_address=10.0.0.1\nsasl_username=svc-monitoring")),
       "exempt by sasl_username");

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

    ratelimit_free(&limits);
    config_free(&cfg);
    policy_request_free(request(""));
    return (tap_done());
}
