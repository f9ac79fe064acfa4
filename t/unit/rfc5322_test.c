/* rfc5322_test - unit tests for milter-dkim/rfc5322.c (From: mailbox, A-R authserv-id) */

#include "build_config.h"

#include <stdlib.h>
#include <string.h>

#include "rfc5322.h"
#include "tap.h"

static char buf[512];

static const char *mbox(const char *value)
{
    const char *err = rfc5322_mailbox(value, buf, sizeof(buf));

    return (err ? "(refused)" : buf);
}

static const char *asid(const char *value)
{
    const char *err = rfc8601_authserv_id(value, buf, sizeof(buf));

    return (err ? "(unreadable)" : buf);
}

/*
 * test_utf8_readers - helper-132: what readers show otherwise than this
 * reader reads it is refused; what they show alike is read
 */
static void test_utf8_readers(void)
{
    is_str(mbox("\"\x81\\\" <ceo@bank.example> x\" <user@corp.example>"), "(refused)",
	   "an 8-bit byte before a backslash (Shift_JIS/GBK read ceo@bank.example)");
    is_str(mbox("\"\xe3\x81\x81\\\" <ceo@bank.example> x\" <j\xc3\xb6rg@b\xc3\xbc" "cher.example>"),
	   "(refused)", "and after valid UTF-8 too (U+3041 ends in 0x81)");
    is_str(mbox(" (\xc3\xa9\\) <a@planapulse.ai>"), "(refused)", "in a comment too");
    is_str(mbox("\"a\\\"b \xc3\xa9\" <a@planapulse.ai>"), "a@planapulse.ai",
	   "an escape after ASCII, UTF-8 elsewhere: read");
    is_str(mbox("\"\x1b$B$3$s\x1b(B\" <a@planapulse.ai>"), "(refused)",
	   "ESC (ISO-2022-JP pairs the ASCII after it)");
    is_str(mbox(" a\x7f <a@planapulse.ai>"), "(refused)", "DEL");
    is_str(mbox(" \"J\x01\" <a@planapulse.ai>"), "(refused)", "a C0 control in a quoted string");
    is_str(mbox(" Ops\t(team)\r\n <a@planapulse.ai>"), "a@planapulse.ai",
	   "HTAB and folding are white space, read");
    is_str(mbox(" x@fa\xe1\xba\x9e.de"), "(refused)",
	   "U+1E9E: libidn2 makes fass.de, readers of today fa\xc3\x9f.de");
    is_str(mbox(" x@fa\xc3\x9f.de"), "x@xn--fa-hia.de", "U+00DF: one reading, xn--fa-hia.de");
    is_str(mbox(" \xd7\x90@\xd7\x91.\xd7\x92.com"), "(refused)",
	   "right-to-left letters: shown reordered around the '@'");
    is_str(mbox(" x@\xd7\x91.example"), "(refused)", "a right-to-left domain label");
    is_str(mbox(" a\xd8\x9c@planapulse.ai"), "(refused)", "U+061C, the Arabic letter mark");
    is_str(mbox(" x@xn--bucher-xyd.example"), "(refused)",
	   "A-labels of a decomposed u-umlaut: shown as b\xc3\xbc" "cher, which is xn--bcher-kva");
    is_str(mbox(" x@xn--bcher-2pa.example"), "(refused)", "A-labels of an upper-case U+00DC");
    is_str(mbox(" x@xn--.com"), "(refused)", "an empty A-label");
    is_str(mbox(" x@xn--a.com"), "(refused)", "an A-label that decodes to nothing valid");
    is_str(mbox(" x@xn--paypal-dla.com"), "(refused)", "A-labels of pay\xc2\xb7pal");
    is_str(mbox(" x@XN--BCHER-KVA.Example"), "x@xn--bcher-kva.example",
	   "valid A-labels in any case: read, lower case");
    is_str(mbox(" x@pay\xc2\xb7pal.com"), "(refused)", "U+00B7, a dot look-alike, in the domain");
    is_str(mbox(" a\xc2\xb7" "b@planapulse.ai"), "(refused)", "and in the local part");
    is_str(mbox(" x@pay\xc4\xbf" "al.com"), "(refused)", "U+013F (L with a middle dot)");
    is_str(mbox(" x@a\xef\xbc\xbf" "b.example"), "(refused)", "U+FF3F, an underscore look-alike");
    is_str(mbox(" a\xe3\x85\xa4@planapulse.ai"), "(refused)", "U+3164, a Hangul filler");
    is_str(mbox(" a\xee\x80\x80@planapulse.ai"), "(refused)", "private use");
    is_str(mbox(" a\xef\xb7\x90@planapulse.ai"), "(refused)", "a noncharacter (U+FDD0)");
    is_str(mbox(" a\xef\xb8\x8f@planapulse.ai"), "(refused)", "a variation selector");
    is_str(mbox(" x@paypal.com\xcd\x8f"), "(refused)",
	   "U+034F after the domain (IDNA drops it; shown as nothing)");
    is_str(mbox(" \xe4\xbe\x8b\xe3\x81\x88@\xe4\xbe\x8b\xe3\x81\x88.jp"),
	   "\xe4\xbe\x8b\xe3\x81\x88@xn--r8jz45g.jp", "Japanese local part and domain: read");
}

/*
 * test_utf8 - RFC 6532 addresses (an SMTPUTF8 sender): UTF-8 in the
 * local part and the domain, the domain given as its A-labels (RFC 8616);
 * refused: bytes that are no UTF-8, and characters readers show as
 * another or as nothing
 */
static void test_utf8(void)
{
    char    small[20];

    is_str(mbox(" caf\xc3\xa9@planapulse.ai"), "caf\xc3\xa9@planapulse.ai",
	   "UTF-8 local part, bytes kept");
    is_str(mbox(" J\xc3\xb6rg <j\xc3\xb6rg@b\xc3\xbc" "cher.example>"),
	   "j\xc3\xb6rg@xn--bcher-kva.example", "UTF-8 local part, U-label domain: A-labels");
    is_str(mbox(" <a@B\xc3\x9c" "CHER.Example>"), "a@xn--bcher-kva.example",
	   "an upper-case U-label: mapped as readers map it (UTS 46)");
    is_str(mbox(" a@xn--bcher-kva.example"), "a@xn--bcher-kva.example", "A-labels as written");
    is_str(mbox(" \"caf\xc3\xa9\"@planapulse.ai"), "caf\xc3\xa9@planapulse.ai",
	   "a quoted UTF-8 local part that needs no quotes");
    is_str(mbox(" \xf0\x9f\x98\x80.\xe4\xbe\x8b@planapulse.ai"),
	   "\xf0\x9f\x98\x80.\xe4\xbe\x8b@planapulse.ai", "4- and 3-byte characters");
    is_str(mbox(" caf\xe9@planapulse.ai"), "(refused)", "Latin-1: no UTF-8");
    is_str(mbox(" a\xc0\xae@planapulse.ai"), "(refused)", "an overlong '.'");
    is_str(mbox(" a\xed\xa0\x80@planapulse.ai"), "(refused)", "a surrogate");
    is_str(mbox(" a\xf4\x90\x80\x80@planapulse.ai"), "(refused)", "past U+10FFFF");
    is_str(mbox(" a\xc3@planapulse.ai"), "(refused)", "a cut sequence");
    is_str(mbox(" a\xc2\x85@planapulse.ai"), "(refused)", "a C1 control (NEL)");
    is_str(mbox(" a\xc2\xa0" "b@planapulse.ai"), "(refused)", "NBSP");
    is_str(mbox(" ceo\xef\xbc\xa0victim.example@planapulse.ai"), "(refused)",
	   "U+FF20, which NFKC makes '@'");
    is_str(mbox(" ceo\xef\xb9\xabvictim.example@planapulse.ai"), "(refused)", "U+FE6B, too");
    is_str(mbox(" a@planapulse\xe3\x80\x82" "ai"), "(refused)", "U+3002 for a dot in the domain");
    is_str(mbox(" a@planapulse\xef\xbc\x8e" "ai"), "(refused)", "U+FF0E, too");
    is_str(mbox(" a\xe2\x80\x8b@planapulse.ai"), "(refused)", "a zero-width space");
    is_str(mbox(" a\xe2\x80\xae@planapulse.ai"), "(refused)", "a right-to-left override");
    is_str(mbox(" a\xef\xbb\xbf@planapulse.ai"), "(refused)", "a byte order mark");
    is_str(mbox(" a@\xe2\x98\x83.example"), "(refused)",
	   "a domain that is no valid IDN (U+2603 is disallowed)");
    is_str(mbox(" a@b\xc3\xbc" "cher"), "a@xn--bcher-kva", "one label: read (no dot needed)");
    ok(rfc5322_mailbox(" a@b\xc3\xbc" "cher.example", small, sizeof(small)) != NULL,
       "A-labels longer than the buffer: refused, not cut");
    ok(rfc5322_mailbox(" a@b\xc3\xbc" "cher.ex", small, sizeof(small)) == NULL
       && strcmp(small, "a@xn--bcher-kva.ex") == 0, "and one that fits: %s", small);
    is_str(mbox(" =?utf-8?q?j=C3=B6rg?=@planapulse.ai"), "(refused)",
	   "an encoded word is still no address");
    test_utf8_readers();
}

static void test_mailbox(void)
{
    char    big[700];

    is_str(mbox(" alerts@PlanaPulse.AI"), "alerts@planapulse.ai", "addr-spec, domain lower");
    is_str(mbox(" Alerts <alerts@planapulse.ai>"), "alerts@planapulse.ai", "name-addr");
    is_str(mbox("<alerts@planapulse.ai>"), "alerts@planapulse.ai", "angle-addr alone");
    is_str(mbox(" \"Ops, <Team>\" <alerts@planapulse.ai>"), "alerts@planapulse.ai",
	   "quoted display name with comma and brackets");
    is_str(mbox(" \"a@b.example\" <alerts@planapulse.ai>"), "alerts@planapulse.ai",
	   "an address inside a quoted display name is only a name");
    is_str(mbox(" John Q. Public <jqp@planapulse.ai>"), "jqp@planapulse.ai",
	   "obs-phrase: a dot in the display name");
    is_str(mbox(" (c1 (nested) \\) ) alerts (c2) @ (c3) planapulse.ai (c4 <x@y.z>)"),
	   "alerts@planapulse.ai", "comments (nested, quoted-pair) around every part");
    is_str(mbox(" Ops\n\t<alerts@planapulse.ai>\n (tail)"), "alerts@planapulse.ai",
	   "folded");
    is_str(mbox(" =?utf-8?q?Caf=C3=A9?= <alerts@planapulse.ai>"), "alerts@planapulse.ai",
	   "encoded word in the display name");
    is_str(mbox(" Caf\xc3\xa9 <alerts@planapulse.ai>"), "alerts@planapulse.ai",
	   "8-bit display name (RFC 6532)");
    is_str(mbox(" \"alerts\"@planapulse.ai"), "alerts@planapulse.ai",
	   "quoted local part that needs no quotes: written unquoted");
    is_str(mbox(" first.last+tag@planapulse.ai"), "first.last+tag@planapulse.ai", "dot-atom");

    /* issue 14 item 3: what another parser reads differently is refused */
    is_str(mbox(" ceo@planapulse.ai <alerts@planapulse.ai>"), "(refused)",
	   "addr-spec as display name (Python reads ceo@)");
    is_str(mbox(" <alerts@planapulse.ai> ceo@other.example"), "(refused)",
	   "text after the angle address");
    is_str(mbox(" x <a@planapulse.ai> <b@other.example>"), "(refused)", "two angle addresses");
    is_str(mbox(" undisclosed: alerts@planapulse.ai;"), "(refused)", "group");
    is_str(mbox(" undisclosed:;"), "(refused)", "empty group");
    is_str(mbox(" a@planapulse.ai, b@other.example"), "(refused)", "list");
    is_str(mbox(" <@route.example:a@planapulse.ai>"), "(refused)", "source route");
    is_str(mbox(" a@[192.0.2.1]"), "(refused)", "domain literal");
    is_str(mbox(" a . b@planapulse.ai"), "(refused)", "obs-local-part");
    is_str(mbox(" \"john doe\"@planapulse.ai"), "(refused)", "quoted local part with space");
    is_str(mbox(" a@planapulse.ai."), "(refused)", "trailing dot");
    is_str(mbox(" a@planapulse..ai"), "(refused)", "empty label");
    test_utf8();
    is_str(mbox(" a@planapulse.ai (unclosed"), "(refused)", "unterminated comment");
    is_str(mbox(" \"unclosed <a@planapulse.ai>"), "(refused)", "unterminated quote");
    is_str(mbox(" Name <a@planapulse.ai"), "(refused)", "angle not closed");
    is_str(mbox(" <>"), "(refused)", "empty angle address");
    is_str(mbox(""), "(refused)", "empty");
    is_str(mbox(" @planapulse.ai"), "(refused)", "empty local part");
    is_str(mbox(" alerts"), "(refused)", "no @");
    is_str(mbox(" a@b\\@c"), "(refused)", "backslash outside quotes");
    is_str(mbox(" John Q.<jqp@planapulse.ai>"), "(refused)",
	   "a dot right before '<' (Python's reader fails on it)");
    is_str(mbox(" John Q. <jqp@planapulse.ai>"), "jqp@planapulse.ai",
	   "a dot, a space, then '<': read");
    is_str(mbox(" =?utf-8?q?ceo?=@planapulse.ai"), "(refused)",
	   "encoded word as the local part (Python decodes it: ceo@)");
    is_str(mbox(" billing@=?utf-8?q?vendor.test?="), "(refused)",
	   "encoded word as the domain (Python decodes it: vendor.test)");
    ok(rfc5322_mailbox(" x: a@b.example;", buf, sizeof(buf)) != NULL
       && strcmp(rfc5322_mailbox(" x: a@b.example;", buf, sizeof(buf)), "group syntax") == 0,
       "the error names group syntax");
    memset(big, 'a', sizeof(big) - 20);
    strcpy(big + sizeof(big) - 20, "@planapulse.ai");
    is_str(mbox(big), "(refused)", "an address longer than the buffer is refused, not cut");
}

static void test_authserv(void)
{
    char   *v;

    is_str(asid(" mx.example; dkim=pass"), "mx.example", "plain");
    is_str(asid(" mx.example;dkim=pass"), "mx.example", "no space");
    is_str(asid(" (comment) mx.example; dkim=pass"), "mx.example", "comment before the id");
    is_str(asid(" (a (nested) \\) c) mx.example (x) ; none"), "mx.example",
	   "nested comment, quoted-pair");
    is_str(asid(" \"mx.example\"; dkim=pass"), "mx.example", "quoted id");
    is_str(asid(" \"mx\\.example\"; dkim=pass"), "mx.example", "quoted id with quoted-pair");
    is_str(asid(" mx.example 1; dkim=pass"), "mx.example", "version number");
    is_str(asid(" mx.example (c) 1 (d); none"), "mx.example", "version with comments");
    is_str(asid("\n\tmx.example\n\t;\n\tdkim=pass"), "mx.example", "folded");
    is_str(asid(" mx.example/1; dkim=pass"), "(unreadable)", "tspecial in the id");
    is_str(asid(" \"mx.example \"; dkim=pass"), "(unreadable)", "quoted id with a space");
    is_str(asid(" \"mx.example;\"; dkim=pass"), "(unreadable)", "quoted id with ';'");
    is_str(asid(" mx.example\xc2\xa0; dkim=pass"), "(unreadable)", "8-bit (NBSP) after the id");
    is_str(asid(" =?utf-8?b?bXguZXhhbXBsZQ==?=; dkim=pass"), "(unreadable)",
	   "encoded word (a decoding parser reads mx.example)");
    is_str(asid(" (unclosed mx.example; dkim=pass"), "(unreadable)", "unterminated comment");
    is_str(asid(" mx.example"), "(unreadable)", "no ';'");
    is_str(asid(" mx.example foo; dkim=pass"), "(unreadable)", "a word after the id");
    is_str(asid(" ; dkim=pass"), "(unreadable)", "no id");
    is_str(asid(""), "(unreadable)", "empty");
    ok(rfc8601_same_id("MX.Example.", "mx.example"), "ids: case and trailing dot ignored");
    ok(!rfc8601_same_id("mx.example.evil", "mx.example"), "ids: a longer id differs");

    is_str(v = rfc8601_value("partner.example"), "partner.example", "token value as is");
    free(v);
    is_str(v = rfc8601_value("a dkim=pass"), "\"a dkim=pass\"", "space: quoted");
    free(v);
    is_str(v = rfc8601_value("x\"y\\z\n\xff"), "\"x\\\"y\\\\z??\"", "escapes, CTL and 8-bit");
    free(v);
    is_str(v = rfc8601_value(""), "\"\"", "empty: quoted");
    free(v);
}

int     main(void)
{
    test_mailbox();
    test_authserv();
    return (tap_done());
}
