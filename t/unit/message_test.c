/* message_test - unit tests for milter-dkim/message.c */

#include "build_config.h"

#include <stdlib.h>
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

    /* line lengths as Postfix's smtp client counts them (CRLF excluded) */
    {
	char   *signed_names[] = {"Cc", NULL}, *over[] = {"subject", NULL}, *long_value;
	unsigned char body[3000];
	const char *which;

	long_value = calloc(1, 1100);
	memset(long_value, 'b', 1099);
	message_add_header(&m, "X-Long", long_value, "x");
	memcpy(long_value, " x\r\n ", 5);
	long_value[998] = 0;			/* its fold: " " + 993 'b' = 994 */
	message_add_header(&m, "Cc", long_value, "x");
	long_value[998] = 'b';
	long_value[1003] = 0;			/* 999 */
	message_add_header(&m, "SUBJECT", long_value, "x");
	is_int((int) message_longest_header(&m, signed_names, NULL, &which), 994,
	       "a fold counts alone; an unsigned 1099-octet header does not count");
	is_int((int) message_longest_header(&m, signed_names, over, &which), 999,
	       "oversigned names count too, in any case");
	is_str(which, "SUBJECT", "and the header is named");
	free(long_value);
	memset(body, 'a', sizeof(body));
	memcpy(body + 998, "\r\n", 2);	/* 998 */
	memcpy(body + 1500, "\r", 1);	/* CR ends a chunk: 500 + CR */
	body[1501] = '\n';			/* ... LF at the next one's start */
	message_add_body(&m, body, 1501);
	message_add_body(&m, body + 1501, 1);
	is_int((int) message_longest_body(&m), 998, "CRLF across chunks excluded");
	message_add_body(&m, body, 998);
	message_add_body(&m, (unsigned char *) "\r", 1);
	is_int((int) message_longest_body(&m), 999, "a last line without LF counts, CR too");
	message_add_body(&m, (unsigned char *) "\n", 1);
	is_int((int) message_longest_body(&m), 998, "... until its LF arrives");
	message_reset(&m);
    }
    is_int(m.count, 0, "reset");
    return (tap_done());
}
