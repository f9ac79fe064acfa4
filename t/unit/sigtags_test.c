/* sigtags_test - unit tests for milter-dkim/sigtags.c (DKIM-Signature tag-lists) */

#include "build_config.h"

#include <stdio.h>
#include <string.h>

#include "sigtags.h"
#include "tap.h"

#define GOOD_TAIL "a=rsa-sha256; c=relaxed/relaxed; h=from:to; bh=AAAA; b=BBBB"

static struct sigtags_result r;

/* why - "" for a signature a verifier may read, else the reason */

static const char *why(const char *value)
{
    int     status = sigtags_check(value, &r);

    if ((status == 0) != (r.why[0] == 0))
	return ("(status and reason disagree)");
    return (r.why);
}

static void test_valid(void)
{
    is_str(why(" v=1; d=vendor.test; s=sel; " GOOD_TAIL), "", "a plain signature");
    is_str(r.domain, "vendor.test", "its d=");
    is_str(why(" v=1;\r\n\td=vendor.test;s=sel ;" GOOD_TAIL ";"), "",
	   "folding, no space, a trailing ';'");
    is_str(why(" v = 1 ; d=vendor.test; s=s-1_x.sub; " GOOD_TAIL "; x_y1=; z=a|b\r\n c"), "",
	   "white space around '=', an empty value, a folded value, underscores");
    is_str(why(" v=1; d=vendor.test; s=sel; " GOOD_TAIL "; i=b\xc3\xa9@vendor.test"), "",
	   "8-bit in i= (RFC 8616)");
}

static void test_duplicates(void)
{
    is_str(why(" v=1; d=attacker.test; d=vendor.test; s=sel; " GOOD_TAIL),
	   "invalid tag-list (tag d= given twice)", "d= twice (r6)");
    is_str(r.domain, "", "d= twice: no header.d");
    is_str(why(" v=1; d=vendor.test; s=sel; s=a2; " GOOD_TAIL),
	   "invalid tag-list (tag s= given twice)", "s= twice");
    is_str(r.domain, "vendor.test", "s= twice: d= still read for sure");
    is_str(why(" v=1; d=vendor.test; s=sel; h=to; " GOOD_TAIL),
	   "invalid tag-list (tag h= given twice)", "h= twice (r6)");
    is_str(why(" v=1; d=vendor.test; s=sel; D=x; " GOOD_TAIL), "",
	   "tag names are case-sensitive: D= is another tag");
}

static void test_required(void)
{
    is_str(why(" a=rsa-sha256; d=vendor.test; s=sel; h=from; bh=AA; b=BB"),
	   "signature lacks the required tag v=", "no v= (r7)");
    is_str(r.domain, "vendor.test", "no v=: header.d read");
    is_str(why(" v=1; d=vendor.test"), "signature lacks the required tag a=", "d only");
    is_str(why(" v=2; d=vendor.test; s=sel; " GOOD_TAIL), "incompatible version (v= is not 1)",
	   "v=2");
    is_str(why(""), "empty tag-list", "empty value");
    is_str(why(" "), "empty tag-list", "white space only");
    is_str(why(" garbage"), "invalid tag-list (no '=' after garbage)", "garbage");
    is_str(why(" v=1;; d=vendor.test; s=sel; " GOOD_TAIL),
	   "invalid tag-list (a tag-spec without a tag name)", "an empty spec between ';'");
    is_str(why(" v=1; 1d=vendor.test; s=sel; " GOOD_TAIL),
	   "invalid tag-list (a tag-spec without a tag name)", "a tag name starting with a digit");
    is_str(why(" v=1; d=vendor.test; s=sel; " GOOD_TAIL "; x=a\001b"),
	   "invalid tag-list (a control character in x=)", "a control character in a value");
}

static void test_numbers(void)
{
    static const char *const bad[][2] = {
	{"t=abc", "t"}, {"t=-1", "t"}, {"t=", "t"}, {"x=", "x"}, {"x=-5", "x"},
	{"x=12abc", "x"}, {"x=+99999999999", "x"}, {"x=12 34", "x"},
	{"x=18446744073709551615", "x"}, {"t=18446744073709551616", "t"},
	{"t=1234567890123", "t"}, {"l=", "l"}, {"l=-1", "l"}, {"l=0x10", "l"},
    };
    char    buf[256], want[80];

    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
	snprintf(buf, sizeof(buf), " v=1; d=vendor.test; s=sel; " GOOD_TAIL "; %s", bad[i][0]);
	snprintf(want, sizeof(want), "invalid tag-list (%s= is not 1 to %d digits)", bad[i][1],
		 bad[i][1][0] == 'l' ? 76 : 12);
	is_str(why(buf), want, "%s: a permanent error, not a dropped signature", bad[i][0]);
	is_str(r.domain, "vendor.test", "... header.d read");
    }
    is_str(why(" v=1; d=vendor.test; s=sel; " GOOD_TAIL "; t = 1700000000 ;x=999999999999"),
	   "", "t= and x= of 12 digits at most, white space around");
    is_str(why(" v=1; d=vendor.test; s=sel; " GOOD_TAIL "; l=0; t=0"), "", "l=0, t=0");
}

static void test_names(void)
{
    char    buf[1024];
    char    label[80];

    memset(label, 'x', 70);
    label[70] = 0;
    snprintf(buf, sizeof(buf), " v=1; d=vendor.test; s=%s; " GOOD_TAIL, label);
    is_str(why(buf), "invalid selector (s= is not a DNS name)", "a 70-byte selector label (r1)");
    is_str(r.domain, "vendor.test", "... header.d read");
    is_str(why(" v=1; d=vendor.test; s=a..b; " GOOD_TAIL),
	   "invalid selector (s= is not a DNS name)", "s=a..b (r1)");
    is_str(why(" v=1; d=vendor.test; s=sel.; " GOOD_TAIL),
	   "invalid selector (s= is not a DNS name)", "s=sel. (r1)");
    is_str(why(" v=1; d=vendor.test; s=s\xc3\xa9l; " GOOD_TAIL),
	   "invalid selector (s= is not a DNS name)", "8-bit s= (r7)");
    is_str(why(" v=1; d=vendor.test; s=a\\046b; " GOOD_TAIL),
	   "invalid selector (s= is not a DNS name)", "a backslash in s=");
    is_str(why(" v=1; d=vendor..test; s=sel; " GOOD_TAIL),
	   "invalid domain (d= is not a DNS name)", "d= with an empty label");
    is_str(r.domain, "", "... no header.d");
    memset(label, 'y', 63);
    label[63] = 0;
    snprintf(buf, sizeof(buf), " v=1; d=%s.%s.%s.test; s=%s; " GOOD_TAIL, label, label,
	     label, "abcdefghijklmnopqrstuvwxyzabcdefghijklmnopqrstuvwxyz");
    is_str(why(buf), "invalid selector (the key's name is longer than 253 bytes)",
	   "s._domainkey.d over 253 bytes");
    ok(sigtags_name_ok("a.b-c_d", 7) && !sigtags_name_ok("", 0) && !sigtags_name_ok("a.", 2)
       && !sigtags_name_ok(".a", 2) && !sigtags_name_ok("a b", 3),
       "sigtags_name_ok: labels of letters, digits, '-', '_'");
}

static void test_many(void)
{
    char    buf[4096] = " v=1; d=vendor.test; s=sel; " GOOD_TAIL;

    for (int i = 0; i < 70; i++)
	snprintf(buf + strlen(buf), sizeof(buf) - strlen(buf), "; x%d=1", i);
    is_str(why(buf), "more than 64 tags", "more than SIGTAGS_TAGS_MAX tags");
}

int     main(void)
{
    test_valid();
    test_duplicates();
    test_required();
    test_numbers();
    test_names();
    test_many();
    return (tap_done());
}
