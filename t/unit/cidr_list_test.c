/* cidr_list_test - unit tests for common/cidr_list.c */


#include "build_config.h"
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "addr.h"
#include "cidr_list.h"
#include "tap.h"

static void test_match(void)
{
    struct cidr_list *list = cidr_list_create();
    char   *bad = NULL;
    union addr_sockaddr sa;

    ok(cidr_list_parse(list, "127.0.0.0/8, ::1 10.0.20.0/24,fd00::/8 192.0.2.7", &bad) == NULL,
       "parse a mixed list");
    is_int(cidr_list_count(list), 5, "five entries");
    ok(cidr_list_match_str(list, "127.1.2.3"), "127.1.2.3 in 127.0.0.0/8");
    ok(cidr_list_match_str(list, "10.0.20.255"), "10.0.20.255 in 10.0.20.0/24");
    ok(!cidr_list_match_str(list, "10.0.21.1"), "10.0.21.1 not in 10.0.20.0/24");
    ok(cidr_list_match_str(list, "192.0.2.7"), "single host matches");
    ok(!cidr_list_match_str(list, "192.0.2.8"), "neighbour of single host does not");
    ok(cidr_list_match_str(list, "::1"), "::1");
    ok(!cidr_list_match_str(list, "::2"), "::2 not listed");
    ok(cidr_list_match_str(list, "fdab:1::5"), "fd00::/8");
    ok(!cidr_list_match_str(list, "fe80::1"), "fe80::1 not in fd00::/8");
    ok(cidr_list_match_str(list, "::ffff:10.0.20.9"), "IPv4-mapped IPv6 matches IPv4 entry");
    ok(!cidr_list_match_str(list, "not-an-ip"), "garbage never matches");
    memset(&sa, 0, sizeof(sa));
    sa.in.sin_family = AF_INET;
    inet_pton(AF_INET, "10.0.20.1", &sa.in.sin_addr);
    ok(cidr_list_match_addr(list, &sa.sa), "sockaddr_in match");
    cidr_list_destroy(&list);
    ok(list == NULL, "destroy sets NULL");
}

static void test_errors(void)
{
    struct cidr_list *list = cidr_list_create();
    char   *bad = NULL;

    is_str(cidr_list_add(list, "10.0.0.1/8"), "host bits set beyond the prefix length",
	   "host bits refused");
    is_str(cidr_list_add(list, "10.0.0.0/33"), "bad prefix length", "/33 refused");
    is_str(cidr_list_add(list, "10.0.0.0/08"), "bad prefix length", "leading zero refused");
    is_str(cidr_list_add(list, "10.0.0.0/-1"), "bad prefix length", "negative refused");
    is_str(cidr_list_add(list, "::/129"), "bad prefix length", "/129 refused");
    is_str(cidr_list_add(list, "300.1.1.1"), "bad network address", "bad octet refused");
    is_str(cidr_list_parse(list, "10.0.0.0/8 nonsense", &bad), "bad network address",
	   "list with garbage refused");
    is_str(bad, "nonsense", "the bad item is reported");
    free(bad);
    ok(cidr_list_add(list, "0.0.0.0/0") == NULL, "0.0.0.0/0 accepted");
    ok(cidr_list_match_str(list, "203.0.113.1"), "0.0.0.0/0 matches any IPv4");
    ok(!cidr_list_match_str(list, "2001:db8::1"), "0.0.0.0/0 does not match IPv6");
    cidr_list_destroy(&list);
}

static void test_many(void)
{
    struct cidr_list *list = cidr_list_create();
    char    text[64];
    int     misses = 0;

    for (int i = 0; i < 10000; i++) {
	snprintf(text, sizeof(text), "10.%d.%d.0/24", i / 256, i % 256);
	if (cidr_list_add(list, text) != NULL)
	    misses++;
    }
    is_int(misses, 0, "10,000 /24 networks added");
    for (int i = 0; i < 10000; i += 97) {
	snprintf(text, sizeof(text), "10.%d.%d.42", i / 256, i % 256);
	if (!cidr_list_match_str(list, text))
	    misses++;
    }
    is_int(misses, 0, "every probed network matches");
    ok(!cidr_list_match_str(list, "10.200.0.1"), "address past the list does not match");
    cidr_list_destroy(&list);
}

/* cidr_split - v4 network net/len cut into random pieces, added but one */

static int cidr_split(struct cidr_list *list, unsigned net, int len, int skip, int *seen,
		              unsigned *skipped)
{
    char    text[64];

    if (len < 3 || (len < 24 && rand() % 5 < 2)) {
	unsigned half = 1u << (31 - len);

	return (cidr_split(list, net, len + 1, skip, seen, skipped)
		+ cidr_split(list, net | half, len + 1, skip, seen, skipped));
    }
    if ((*seen)++ == skip) {
	*skipped = net;
	return (0);
    }
    snprintf(text, sizeof(text), "%u.%u.%u.%u/%d", net >> 24, (net >> 16) & 255,
	     (net >> 8) & 255, net & 255, len);
    return (cidr_list_add(list, text) == NULL);
}

static void test_covers(void)
{
    static const struct {
	const char *list;
	int     v4, v6;
    }       cases[] = {
	{"0.0.0.0/0", 1, 0},
	{"::/0", 1, 1},
	{"::ffff:0:0/96", 1, 0},
	{"::/8", 1, 0},
	{"0.0.0.0/1, 128.0.0.0/1", 1, 0},
	{"128.0.0.0/1, 10.0.0.0/8, 0.0.0.0/2, 64.0.0.0/2", 1, 0},
	{"0.0.0.0/1, 128.0.0.0/2, 192.0.0.0/3, 224.0.0.0/4, 240.0.0.0/5, 248.0.0.0/6, "
	"252.0.0.0/7, 254.0.0.0/8, 255.0.0.0/9, 255.128.0.0/9", 1, 0},
	{"0.0.0.0/1, 128.0.0.0/2, 192.0.0.0/3, 224.0.0.0/4, 240.0.0.0/5, 248.0.0.0/6, "
	"252.0.0.0/7, 254.0.0.0/8, 255.0.0.0/9, 255.128.0.0/10", 0, 0},
	{"::/1, 8000::/1", 1, 1},
	{"::/1", 1, 0},
	{"8000::/1", 0, 0},
	{"0.0.0.0/1", 0, 0},
	{"10.0.0.0/8, 127.0.0.1, ::1", 0, 0},
	{"255.255.255.255, 0.0.0.0/1, 128.0.0.0/2, 192.0.0.0/2", 1, 0},
    };
    int     bad = 0;

    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
	struct cidr_list *list = cidr_list_create();

	ok(cidr_list_parse(list, cases[i].list, NULL) == NULL
	   && cidr_list_covers(list, AF_INET) == cases[i].v4
	   && cidr_list_covers(list, AF_INET6) == cases[i].v6,
	   "\"%s\" covers IPv4 %s, IPv6 %s", cases[i].list, cases[i].v4 ? "yes" : "no",
	   cases[i].v6 ? "yes" : "no");
	cidr_list_destroy(&list);
    }
    /* property: IPv4 cut into random pieces is covered, and not with one left out */
    srand(7);
    for (int round = 0; round < 200; round++) {
	struct cidr_list *whole = cidr_list_create(), *holed = cidr_list_create();
	int     pieces = 0, seen = 0, added;
	unsigned skipped = 0;
	char    text[32];

	added = cidr_split(whole, 0, 0, -1, &pieces, &skipped);
	srand(7 + round);			/* the same cut again, one piece left out */
	cidr_split(holed, 0, 0, round % pieces, &seen, &skipped);
	snprintf(text, sizeof(text), "%u.%u.%u.%u", skipped >> 24, (skipped >> 16) & 255,
		 (skipped >> 8) & 255, skipped & 255);
	if (added != pieces || !cidr_list_covers(whole, AF_INET)
	    || cidr_list_covers(holed, AF_INET) || cidr_list_match_str(holed, text))
	    bad++;
	srand(8 + round);
	cidr_list_destroy(&whole);
	cidr_list_destroy(&holed);
    }
    is_int(bad, 0, "200 random cuts of IPv4: each whole covers it, each with a piece left "
	   "out does not");
}

/* test_link_local - entries within fe80::/10, however written */

static void test_link_local(void)
{
    static const struct {
	const char *list;
	int     link_local;
    }       cases[] = {
	{"fe80::1", 1}, {"FE80::1/128", 1}, {"fe80::/10", 1}, {"fe80::/64", 1},
	{"febf:ffff::1", 1}, {"10.0.0.0/8, fe80::9", 1},
	{"fec0::1", 0}, {"fe7f::1", 0}, {"fd00::1", 0}, {"2001:db8::1", 0},
	{"::1, 127.0.0.0/8", 0}, {"::ffff:169.254.1.1", 0},
	/* wider, holding fe80::/10 (helper-109: they passed) */
	{"fe80::/9", 1}, {"fe00::/8", 1}, {"fe00::/7", 1}, {"fc00::/6", 1}, {"8000::/1", 1},
	/* wider, not holding it; ::/0 trusts every address (covers) */
	{"fc00::/7", 0}, {"fec0::/10", 0}, {"::/1", 0}, {"::/0", 0}, {"::/1, 8000::/1", 0},
    };

    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
	struct cidr_list *list = cidr_list_create();

	ok(cidr_list_parse(list, cases[i].list, NULL) == NULL
	   && cidr_list_link_local(list) == cases[i].link_local,
	   "\"%s\" %s link-local", cases[i].list, cases[i].link_local ? "is" : "is not");
	cidr_list_destroy(&list);
    }
}

int     main(void)
{
    test_match();
    test_errors();
    test_many();
    test_covers();
    test_link_local();
    return (tap_done());
}
