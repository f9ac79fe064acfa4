/*
 * dnsq - one lookup through common/dns, for tests.
 *
 *	dnsq [-s SERVERS] [-t TIMEOUT_MS] TYPE NAME
 *
 * TYPE is TXT, A, AAAA, MX, PTR or a number. Prints one line
 * "STATUS WHY COUNT", then one line per record: TXT as the joined text
 * (bytes outside 0x21-0x7e except space as \DDD), A/AAAA as addresses,
 * anything else as hex. Exits with the status (0 ok, 1 nxdomain,
 * 2 nodata, 3 tempfail, 4 badname), 64 on usage errors.
 */

#include "build_config.h"

#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "dns.h"

static int dnsq_type(const char *name)
{
    static const struct {
	const char *name;
	int     type;
    }       types[] = {{"TXT", DNS_T_TXT}, {"A", DNS_T_A}, {"AAAA", DNS_T_AAAA},
    {"MX", DNS_T_MX}, {"PTR", DNS_T_PTR}};
    size_t  i;

    for (i = 0; i < sizeof(types) / sizeof(types[0]); i++)
	if (strcasecmp(name, types[i].name) == 0)
	    return (types[i].type);
    return (atoi(name));
}

static void dnsq_print(int type, const struct dns_rr *rr)
{
    char    buf[INET6_ADDRSTRLEN];
    size_t  i;

    if ((type == DNS_T_A && rr->len == 4) || (type == DNS_T_AAAA && rr->len == 16)) {
	inet_ntop(type == DNS_T_A ? AF_INET : AF_INET6, rr->data, buf, sizeof(buf));
	printf("%s\n", buf);
	return;
    }
    for (i = 0; i < rr->len; i++) {
	unsigned char c = rr->data[i];

	if (type != DNS_T_TXT)
	    printf("%02x", c);
	else if ((c > 0x20 && c < 0x7f && c != '\\') || c == ' ')
	    putchar(c);
	else
	    printf("\\%03u", c);
    }
    putchar('\n');
}

int     main(int argc, char **argv)
{
    const char *servers = NULL;
    const char *err;
    struct dns_resolver *res;
    struct dns_answer *ans;
    int     timeout = 5000;
    int     status;
    int     ch;
    int     i;

    while ((ch = getopt(argc, argv, "s:t:")) != -1) {
	if (ch == 's')
	    servers = optarg;
	else if (ch == 't')
	    timeout = atoi(optarg);
	else
	    return (64);
    }
    if (argc - optind != 2) {
	fprintf(stderr, "usage: dnsq [-s servers] [-t timeout_ms] TYPE NAME\n");
	return (64);
    }
    if ((res = dns_resolver_create(servers, timeout, &err)) == NULL) {
	fprintf(stderr, "dnsq: %s\n", err);
	return (64);
    }
    status = dns_lookup(res, argv[optind + 1], dnsq_type(argv[optind]), &ans);
    printf("%s %s %d\n", dns_status_str(status), ans->why, ans->count);
    for (i = 0; i < ans->count; i++)
	dnsq_print(dnsq_type(argv[optind]), ans->rr + i);
    dns_answer_free(&ans);
    dns_resolver_free(&res);
    return (status);
}
