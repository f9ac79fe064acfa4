/* message_test - unit tests for milter-dkim/message.c */

#include "build_config.h"

#include <string.h>

#include "message.h"
#include "tap.h"

static const char *addr(const char *value)
{
    static char buf[512];

    return (message_parse_address(value, buf, sizeof(buf)) == NULL ? buf : "(none)");
}

int     main(void)
{
    struct message m;

    is_str(addr(" Billing <noreply@PlanaPulse.AI>"), "noreply@planapulse.ai",
	   "name-addr, domain lower-cased");
    is_str(addr(" noreply@planapulse.ai (Billing)"), "noreply@planapulse.ai",
	   "addr-spec with comment");
    is_str(addr(" \"Billing, <Dept>\" <noreply@planapulse.ai>"), "noreply@planapulse.ai",
	   "quoted display name with comma and brackets");
    is_str(addr(" a@x.example, b@y.example"), "(none)", "two addresses refused");
    is_str(addr(" undisclosed:;"), "(none)", "group refused");
    is_str(addr(" <a@x> <b@y>"), "(none)", "two angle addresses refused");
    is_str(addr(" no-at-sign"), "(none)", "no '@'");
    is_str(addr(" <@x.example>"), "(none)", "empty local part");
    is_str(addr(""), "(none)", "empty");

    memset(&m, 0, sizeof(m));
    message_add_header(&m, "From", " A <a@planapulse.ai>", "mx.example");
    message_add_header(&m, "Authentication-Results", " other.example; spf=pass", "mx.example");
    message_add_header(&m, "Authentication-Results", " MX.example; dkim=pass", "mx.example");
    message_add_header(&m, "Authentication-Results", " mx.example.evil; dkim=pass",
		       "mx.example");
    message_add_header(&m, "Authentication-Results", " mx.example;dkim=pass", "mx.example");
    is_int(m.from_count, 1, "one From counted");
    is_str(m.from, "a@planapulse.ai", "From address kept");
    is_int(m.ar_count, 4, "four A-R headers seen");
    is_int(m.forged_count, 2, "two claim our authserv-id");
    ok(m.forged_count == 2 && m.forged[0] == 2 && m.forged[1] == 4,
       "by A-R position (2 and 4), not a look-alike id");
    message_reset(&m);

    /* regression: 00f9dfc kept at most 32 positions; the 33rd survived */
    for (int i = 0; i < 1000; i++)
	message_add_header(&m, "Authentication-Results", i % 2 ? " mx.example; dkim=pass"
			   : " (c) \"MX.EXAMPLE\" 1; none", "mx.example");
    is_int(m.forged_count, 1000, "1000 forged A-R headers: every position kept");
    ok(m.forged[999] == 1000 && m.forged[32] == 33, "positions 33 and 1000 included");
    message_add_header(&m, "Authentication-Results", " mx.example/1; dkim=pass", "mx.example");
    message_add_header(&m, "authentication-results", " x.example; dkim=pass", "mx.example");
    is_int(m.unreadable, 1, "an unreadable authserv-id counts as forged (and unreadable)");
    is_int(m.forged_count, 1001, "a lower-case header name is an A-R too; foreign kept");
    message_reset(&m);
    message_add_header(&m, "From", " ceo@planapulse.ai <alerts@planapulse.ai>", "x");
    ok(m.from_error != NULL && m.from[0] == 0, "an addr-spec as display name: no address");
    message_add_header(&m, "from", " b@x.example", "mx.example");
    is_int(m.from_count, 2, "a second From is counted (then: not signed)");
    message_reset(&m);
    is_int(m.count, 0, "reset");
    return (tap_done());
}
