/*
 * NAME
 *	listener 3
 * SUMMARY
 *	proxyv2-shim listener lines
 * SYNOPSIS
 *	#include "shim.h"
 *
 *	const char *listener_parse(text, &lst)
 *	void	listener_free(&lst)
 *	const char *listener_mode_name(mode)
 * DESCRIPTION
 *	listener_parse() reads the value of one "listener" line:
 *
 *	ADDRESS backend=ADDRESS mode=MODE trusted=CIDR[,CIDR...]
 *		[header_timeout=DURATION] [mark=N]
 *
 *	ADDRESS is HOST:PORT, [IPV6]:PORT or inet:/inet6: forms; MODE
 *	is xclient, transparent, proxy-v1 or proxy-v2. backend, mode
 *	and trusted are required: a shim that trusts nobody by default
 *	is useless, one that trusts everybody is dangerous.
 *
 *	A listener on an IPv6 address takes IPv6 connections only
 *	(IPV6_V6ONLY, so that [::] and 0.0.0.0 can be two listeners), so a
 *	trusted network that can only hold addresses of the other family
 *	would never match: when no network of the list can, that is an
 *	error; when some cannot, lst->dead_trusted says which, for a
 *	warning (a list shared by an IPv4 and an IPv6 listener).
 *	IPv4-mapped listener and backend addresses are errors too (bind()
 *	refuses the one; the other hides a loop to an IPv4 listener).
 * DIAGNOSTICS
 *	NULL, or a static message naming what is wrong.
 */

#include "build_config.h"

#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "shim.h"
#include "xalloc.h"

static const char *const listener_modes[] = {
    [SHIM_XCLIENT] = "xclient",
    [SHIM_TRANSPARENT] = "transparent",
    [SHIM_PROXY_V1] = "proxy-v1",
    [SHIM_PROXY_V2] = "proxy-v2",
};

const char *listener_mode_name(enum shim_mode mode)
{
    return (listener_modes[mode]);
}

/*
 * listener_reaches - can network TEXT (parsed already) hold an address
 * of FAMILY? IPv6 networks reach IPv4 through ::ffff:0:0/96, as the
 * trusted list matches IPv4 peers there.
 */
static int listener_reaches(const char *text, int family)
{
    unsigned char net[16], v4[16] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
    char    host[INET6_ADDRSTRLEN + 1];
    const char *slash = strchr(text, '/');
    size_t  len = slash ? (size_t) (slash - text) : strlen(text);
    int     bits = slash ? atoi(slash + 1) : 128, v4_bits;

    if (len >= sizeof(host))
	return (1);				/* cidr_list_parse() judged it */
    memcpy(host, text, len);
    host[len] = 0;
    if (inet_pton(AF_INET, host, net) == 1)
	return (family == AF_INET);
    if (inet_pton(AF_INET6, host, net) != 1)
	return (1);
    /* the first min(bits, 96) bits decide whether it meets ::ffff:0:0/96 */
    v4_bits = bits < 96 ? bits : 96;
    if (memcmp(net, v4, (size_t) v4_bits / 8) != 0
	|| (v4_bits % 8 && ((net[v4_bits / 8] ^ v4[v4_bits / 8]) >> (8 - v4_bits % 8))))
	return (family == AF_INET6);		/* outside the IPv4 part */
    return (family == AF_INET || bits < 96);	/* inside, or wider than it */
}

/*
 * listener_trusted_family - networks of trusted= that can never match on
 * this listener: all of them is an error (a listener nobody may use);
 * some of them (a list shared between an IPv4 and an IPv6 listener) is
 * kept in lst->dead_trusted for a warning.
 */
static const char *listener_trusted_family(struct shim_listener *lst, const char *value)
{
    static char why[200];			/* the main thread parses */
    int     family = lst->listen.family, n, dead = 0;
    char  **items = config_split_list(value, &n);
    char    list[160] = "";

    for (int i = 0; i < n; i++)
	if (!listener_reaches(items[i], family)) {
	    if (dead++ == 0 || strlen(list) + strlen(items[i]) + 3 < sizeof(list))
		snprintf(list + strlen(list), sizeof(list) - strlen(list), "%s\"%.60s\"",
			 dead > 1 ? ", " : "", items[i]);
	}
    config_list_free(&items);
    if (dead == 0)
	return (NULL);
    snprintf(why, sizeof(why), "trusted: %s can never match: a listener on an %s address "
	     "accepts %s connections only", list, family == AF_INET ? "IPv4" : "IPv6",
	     family == AF_INET ? "IPv4" : "IPv6");
    if (dead == n)
	return (why);
    free(lst->dead_trusted);
    lst->dead_trusted = xstrdup(why);
    return (NULL);
}

/*
 * listener_trusted_wide - trusted= matches every IPv4 or every IPv6
 * address, however written (0.0.0.0/0, ::/0, ::ffff:0:0/96, or
 * 0.0.0.0/1 with 128.0.0.0/1): kept in lst->wide_trusted for a
 * warning, not an error (the port may be reachable from the balancers
 * alone, by a firewall).
 */
static void listener_trusted_wide(struct shim_listener *lst, const char *value)
{
    char    warn[200];
    int     v4 = cidr_list_covers(lst->trusted, AF_INET);
    int     v6 = cidr_list_covers(lst->trusted, AF_INET6);

    if (!v4 && !v6)
	return;
    snprintf(warn, sizeof(warn), "trusted=%.60s lets every %speer that reaches this "
	     "port name any client (a header is trusted from anyone)", value,
	     v4 && v6 ? "IPv4 and IPv6 " : v4 ? "IPv4 " : "IPv6 ");
    free(lst->wide_trusted);
    lst->wide_trusted = xstrdup(warn);
}

/*
 * listener_no_tcp - a multicast or the limited broadcast address:
 * -t took such a backend, and every client got 421 (helper-118)
 */
static int listener_no_tcp(const struct addr *a)
{
    if (a->family == AF_INET) {
	uint32_t ip = ntohl(a->u.in.sin_addr.s_addr);

	return ((ip >> 28) == 0xE || ip == 0xFFFFFFFFU);
    }
    return (a->family == AF_INET6 && IN6_IS_ADDR_MULTICAST(&a->u.in6.sin6_addr));
}

/* listener_option - one name=value word */

static const char *listener_option(struct shim_listener *lst, const char *name,
				           const char *value, int *seen)
{
    const char *err;
    char   *bad = NULL;
    long long n;

    if (strcmp(name, "backend") == 0) {
	seen[0] = 1;
	if ((err = addr_parse(value, &lst->backend)) != NULL)
	    return (err);
	if ((lst->backend.family == AF_INET && lst->backend.u.in.sin_port == 0)
	    || (lst->backend.family == AF_INET6 && lst->backend.u.in6.sin6_port == 0))
	    return ("backend port 0 (no backend listens there)");
	if (listener_no_tcp(&lst->backend))
	    return ("backend: a multicast or broadcast address takes no TCP connection");
	return (NULL);
    }
    if (strcmp(name, "mode") == 0) {
	for (size_t i = 0; i < sizeof(listener_modes) / sizeof(listener_modes[0]); i++)
	    if (strcmp(value, listener_modes[i]) == 0) {
		lst->mode = (enum shim_mode) i;
		seen[1] = 1;
		return (NULL);
	    }
	return ("mode must be xclient, transparent, proxy-v1 or proxy-v2");
    }
    if (strcmp(name, "trusted") == 0) {
	seen[2] = 1;
	if ((err = cidr_list_parse(lst->trusted, value, &bad)) != NULL) {
	    /* the main thread parses (start, SIGHUP): one buffer will do */
	    static char why[200];

	    snprintf(why, sizeof(why), "trusted: %s \"%.100s\"", err, bad ? bad : value);
	    free(bad);
	    return (why);
	}
	/* the kernel's peer address has a scope (the link); a list has none */
	if (cidr_list_link_local(lst->trusted))
	    return ("trusted: a link-local network (fe80::/10) is on every link at once: "
		    "a peer on another link with the same address would be trusted; "
		    "name the balancers by a global or unique-local (fc00::/7) address");
	listener_trusted_wide(lst, value);
	return (listener_trusted_family(lst, value));
    }
    if (strcmp(name, "header_timeout") == 0) {
	if ((err = config_parse_duration(value, &n)) != NULL)
	    return (err);
	if (n <= 0 || n > 60000)
	    return ("header_timeout must be between 1ms and 60s");
	lst->header_timeout_ms = (int) n;
	return (NULL);
    }
    if (strcmp(name, "mark") == 0) {
	if ((err = config_parse_int(value, &n)) != NULL)
	    return (err);
	if (n < 0 || n > 0x7fffffff)
	    return ("mark must be a non-negative integer");
	lst->mark = (int) n;
	return (NULL);
    }
    return ("unknown listener option (want backend=, mode=, trusted=, header_timeout=, mark=)");
}

const char *listener_parse(const char *text, struct shim_listener *lst)
{
    int     count, seen[3] = {0, 0, 0};
    char  **words = config_split_words(text, &count);
    const char *err = NULL;

    memset(lst, 0, sizeof(*lst));
    lst->spec = xstrdup(text);
    lst->trusted = cidr_list_create();
    if (count == 0)
	err = "listener needs an address";
    else if (strchr(words[0], '=') != NULL)
	err = "listener must start with the address to listen on";
    else
	err = addr_parse(words[0], &lst->listen);
    for (int i = 1; err == NULL && i < count; i++) {
	char   *eq = strchr(words[i], '=');

	if (eq == NULL || eq[1] == 0) {
	    err = "listener options are name=value";
	    break;
	}
	*eq = 0;
	/* a second backend= or mode= silently replaced the first */
	for (int j = 1; err == NULL && j < i; j++)
	    if (strncmp(words[j], words[i], eq - words[i] + 1) == 0) {
		static char twice[100];		/* the main thread parses */

		snprintf(twice, sizeof(twice), "%.40s= is given twice", words[i]);
		err = twice;
	    }
	if (err == NULL)
	    err = listener_option(lst, words[i], eq + 1, seen);
    }
    if (err == NULL && !seen[0])
	err = "listener needs backend=";
    if (err == NULL && !seen[1])
	err = "listener needs mode=";
    if (err == NULL && !seen[2])
	err = "listener needs trusted= (the load balancers allowed to send PROXY headers)";
    if (err == NULL && lst->listen.family == AF_UNIX)
	err = "listener must be a TCP address";

    if (err == NULL && lst->mode == SHIM_TRANSPARENT && lst->backend.family == AF_UNIX)
	err = "transparent mode needs a TCP backend";
    if (err == NULL && lst->mark && lst->mode != SHIM_TRANSPARENT)
	err = "mark= applies to transparent mode only";
    config_list_free(&words);
    if (err)
	listener_free(lst);
    return (err);
}

void    listener_free(struct shim_listener *lst)
{
    if (lst->evl)
	evconnlistener_free(lst->evl);
    lst->evl = NULL;
    cidr_list_destroy(&lst->trusted);
    free(lst->dead_trusted);
    lst->dead_trusted = NULL;
    free(lst->wide_trusted);
    lst->wide_trusted = NULL;
    free(lst->spec);
    lst->spec = NULL;
}
