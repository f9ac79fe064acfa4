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

int     main(void)
{
    test_match();
    test_errors();
    test_many();
    return (tap_done());
}
