/*
 * NAME
 *	ratelimit_addr 3
 * SUMMARY
 *	the key of a client address, masked to a limit's network
 * SYNOPSIS
 *	#include "ratelimit.h"
 *
 *	int	ratelimit_address(limit, value, buf, &err)
 * DESCRIPTION
 *	Split from ratelimit.c (the file passed 800 lines): the address
 *	keys of client_address limits, written without printf().
 */

#include "build_config.h"

#include <arpa/inet.h>
#include <stdio.h>
#include <string.h>

#include "ratelimit.h"

/*
 * ratelimit_address - an IP address as a client_address limit counts it:
 * in inet_ntop() form, masked to the limit's network and written
 * "NET/LEN" when it has one. An override may name that network as
 * "ADDR/LEN" with the limit's own LEN. Returns 0 when value is no
 * address (counted as itself), and sets *err for an override that no
 * request could ever match (a network of another length, a network on
 * a per-address limit): written "2001:DB8::/64" or "192.0.2.9/24", it
 * used to be compared as text and silently never applied.
 */
/*
 * ratelimit_decimal - n's digits at out, returns the end. The key of an
 * address was three printf()s (inet_ntop() formats IPv4 with sprintf()):
 * about 2,900 instructions of the ~35,000 per decision.
 */
static char *ratelimit_decimal(char *out, unsigned n)
{
    char    rev[10];
    int     len = 0;

    do
	rev[len++] = (char) ('0' + n % 10);
    while ((n /= 10) > 0);
    while (len > 0)
	*out++ = rev[--len];
    return (out);
}

/* ratelimit_ntop - inet_ntop() text, "/LEN" when prefix >= 0 */

static void ratelimit_ntop(int family, const unsigned char *bytes, int prefix, char *buf)
{
    char   *cp = buf;

    if (family == AF_INET) {
	for (int i = 0; i < 4; i++) {
	    if (i > 0)
		*cp++ = '.';
	    cp = ratelimit_decimal(cp, bytes[i]);
	}
    } else {
	inet_ntop(family, bytes, buf, INET6_ADDRSTRLEN);
	cp = buf + strlen(buf);
    }
    if (prefix >= 0) {
	*cp++ = '/';
	cp = ratelimit_decimal(cp, (unsigned) prefix);
    }
    *cp = 0;
}

int     ratelimit_address(const struct limit *limit, const char *value, char *buf,
			             const char **err)
{
    unsigned char bytes[16];
    char    addr[INET6_ADDRSTRLEN + 8];
    const char *slash = strchr(value, '/');
    int     family = strchr(value, ':') ? AF_INET6 : AF_INET;
    int     prefix = family == AF_INET ? limit->v4_prefix : limit->v6_prefix;
    int     total = family == AF_INET ? 32 : 128;
    long long len;
    size_t  addr_len = slash ? (size_t) (slash - value) : strlen(value);

    if (addr_len >= sizeof(addr))
	return (0);
    memcpy(addr, value, addr_len);
    addr[addr_len] = 0;
    /* one client, one key: "fe80::1%eth0" is fe80::1 (a zone names this
       host's interface, not the client), "::ffff:192.0.2.1" is 192.0.2.1
       (XCLIENT may give either form) */
    if (family == AF_INET6)
	addr[strcspn(addr, "%")] = 0;
    if (inet_pton(family, addr, bytes) != 1)
	return (0);
    if (family == AF_INET6 && memcmp(bytes, "\0\0\0\0\0\0\0\0\0\0\xff\xff", 12) == 0) {
	memmove(bytes, bytes + 12, 4);
	family = AF_INET;
	prefix = limit->v4_prefix;
	total = 32;
    }
    if (slash && limit->v4_prefix < 0) {
	*err = "a per-address limit takes an address, not a network";
	return (0);
    }
    if (slash && (config_parse_int(slash + 1, &len) != NULL || len != prefix)) {
	*err = family == AF_INET ? "IPv4 network length is not the limit's V4LEN"
	    : "IPv6 network length is not the limit's V6LEN";
	return (0);
    }
    for (int bit = prefix; prefix >= 0 && bit < total; bit++)
	bytes[bit / 8] &= (unsigned char) ~(0x80 >> (bit % 8));
    /* INET6_ADDRSTRLEN + "/128" fits LIMIT_KEY_MAX */
    ratelimit_ntop(family, bytes, prefix, buf);
    return (1);
}

