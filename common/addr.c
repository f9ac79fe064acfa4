/*
 * NAME
 *	addr 3
 * SUMMARY
 *	socket addresses in the forms operators already write
 * SYNOPSIS
 *	#include "addr.h"
 *
 *	const char *addr_parse(spec, &addr)
 *	int	addr_listen(&addr, backlog, nonblock)
 *	int	addr_listen_shared(&addr, backlog, first)
 *	int	addr_connect(&addr, nonblock)
 *	const char *addr_format(sockaddr, buf, len)
 *	const char *addr_unix_check(path)
 *	int	addr_unix_stale(path)
 *	long	addr_port_number(text, len)
 *	int	addr_reaches(&dest, &listen)
 * DESCRIPTION
 *	addr_parse() accepts
 * .IP "inet:HOST:PORT, inet6:[ADDR]:PORT, unix:/path"
 *	mxkit's own form;
 * .IP "inet:PORT@HOST, inet6:PORT@ADDR, local:/path"
 *	libmilter's form, as in Postfix's smtpd_milters;
 * .IP "HOST:PORT, [ADDR]:PORT"
 *	the bare form used in listener lines.
 * .PP
 *	A value in quotes is refused as such (ADDR_QUOTED): the
 *	configuration takes values as written, as Postfix's main.cf does,
 *	and "inet:HOST:PORT" in quotes read as an IPv6 address without
 *	brackets.
 *	PORT is decimal digits and nothing else: strtol() took "+41032"
 *	and " 41032" as 41032 and "0x10" as 0, and a "+25" meant something
 *	else than what was bound. addr_port_number() is that syntax, for
 *	every port parser (a DNS server's, a milter socket's): len bytes
 *	of text, 1 to 5 decimal digits; the port 0-65535, or -1.
 *	Host names are resolved once, at parse time (first address).
 *	An IPv4-mapped address (::ffff:a.b.c.d) is the IPv4 address
 *	a.b.c.d: IPv6 sockets are bound with IPV6_V6ONLY, which refuses it.
 *
 *	addr_listen() sets SO_REUSEADDR, and TCP_NODELAY on TCP
 *	listeners: Linux accepted sockets inherit it, and small
 *	protocol replies must not wait for Nagle and delayed ACKs.
 *	A stale unix socket is removed first, and only a stale one (one
 *	that answers fails with EADDRINUSE) and only a socket: a
 *	regular file at the path fails with EEXIST (a mistyped listen =
 *	unix:/etc/postfix/main.cf removed the file and bound in its place);
 *	addr_unix_stale() is that step alone, for a listener bound
 *	elsewhere (milter-dkim's).
 *	addr_unix_check() says before that (for -t) why a unix path will
 *	not take a socket: its directory missing, the path a file that is
 *	no socket; as root, a socket is tried beside it and removed (a
 *	directory on /proc, /sys or a read-only mount exists and takes
 *	none). addr_listen_shared() opens
 *	one of several non-blocking sockets on the same TCP address
 *	(SO_REUSEPORT), one per worker thread; the kernel spreads new
 *	connections over them. The first of them (first nonzero) fails
 *	with EADDRINUSE when another process holds the address: a second
 *	instance started with SO_REUSEPORT too was let in, and the kernel
 *	split clients between the two, each with its own configuration.
 *
 *	addr_reaches() says whether connecting to dest would reach a
 *	socket bound to listen: the same UNIX path; or the same port and
 *	exactly its address, a wildcard dest (this host), or a loopback
 *	dest or one of this host's interface addresses when listen is the
 *	wildcard (a dest on another host may well use the same port;
 *	helper-130: a wildcard listener whose backend was the host's own
 *	address, a port typo, made a chain of 199 sessions to itself). A
 *	daemon whose backend or store is itself would send its requests
 *	to itself.
 * DIAGNOSTICS
 *	addr_parse() and addr_unix_check() return NULL or a static error.
 *	addr_listen() and
 *	addr_connect() return -1 with errno set.
 */

#include "build_config.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <ifaddrs.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "addr.h"

static const char *addr_parse_unix(const char *path, struct addr *addr)
{
    struct sockaddr_un *sun = &addr->u.un;

    if (*path != '/')
	return ("unix socket path must be absolute");
    if (strlen(path) >= sizeof(sun->sun_path))
	return ("unix socket path too long");
    memset(addr, 0, sizeof(*addr));
    sun->sun_family = AF_UNIX;
    strcpy(sun->sun_path, path);
    addr->salen = sizeof(*sun);
    addr->family = AF_UNIX;
    return (NULL);
}

/*
 * addr_unmap - ::ffff:a.b.c.d as the IPv4 address a.b.c.d. IPv6 sockets
 * here are bound with IPV6_V6ONLY, where bind() refuses a mapped address
 * (EINVAL) although -t had nothing to say against it; and the kernel
 * makes the same IPv4 address of it on a dual-stack socket.
 */
static void addr_unmap(struct addr *addr)
{
    struct sockaddr_in6 six;
    struct sockaddr_in *four = &addr->u.in;

    if (addr->family != AF_INET6 || !IN6_IS_ADDR_V4MAPPED(&addr->u.in6.sin6_addr))
	return;
    six = addr->u.in6;
    memset(&addr->u.storage, 0, sizeof(addr->u.storage));
    four->sin_family = AF_INET;
    four->sin_port = six.sin6_port;
    memcpy(&four->sin_addr, six.sin6_addr.s6_addr + 12, 4);
    addr->family = AF_INET;
    addr->salen = sizeof(*four);
}

long    addr_port_number(const char *text, size_t len)
{
    long    value = 0;

    if (len == 0 || len > 5)
	return (-1);
    for (size_t i = 0; i < len; i++) {
	if (text[i] < '0' || text[i] > '9')
	    return (-1);
	value = value * 10 + (text[i] - '0');
    }
    return (value > 65535 ? -1 : value);
}

static const char *addr_resolve(const char *host, const char *port, int family,
				        struct addr *addr)
{
    struct addrinfo hints, *res;

    if (addr_port_number(port, strlen(port)) < 0)
	return ("bad port number (decimal digits only, 0-65535)");
    memset(&hints, 0, sizeof(hints));
    hints.ai_family = family;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_NUMERICSERV | AI_PASSIVE;
    if (getaddrinfo(*host ? host : NULL, port, &hints, &res) != 0)
	return ("cannot resolve host");
    memset(addr, 0, sizeof(*addr));
    memcpy(&addr->u.storage, res->ai_addr, res->ai_addrlen);
    addr->salen = res->ai_addrlen;
    addr->family = res->ai_family;
    freeaddrinfo(res);
    addr_unmap(addr);
    return (NULL);
}

/* addr_split - "HOST:PORT", "[ADDR]:PORT" or milter "PORT@HOST" */

static const char *addr_split(const char *text, char *host, size_t hostlen,
			              const char **port)
{
    const char *at = strchr(text, '@');
    const char *colon;
    size_t  len;

    if (at) {				/* libmilter: PORT@HOST */
	len = strlen(at + 1);
	if (len >= hostlen)
	    return ("host name too long");
	memcpy(host, at + 1, len + 1);
	if (host[0] == '[' && len > 2 && host[len - 1] == ']')
	    memmove(host, host + 1, len - 2), host[len - 2] = 0;
	*port = text;			/* caller copies up to '@' */
	return (NULL);
    }
    if (*text == '[') {
	if ((colon = strstr(text, "]:")) == NULL)
	    return ("expected [ADDRESS]:PORT");
	len = colon - text - 1;
	*port = colon + 2;
	text++;
    } else {
	if ((colon = strrchr(text, ':')) == NULL)
	    return ("expected HOST:PORT");
	if (memchr(text, ':', colon - text))
	    return ("IPv6 addresses must be written as [ADDRESS]:PORT");
	len = colon - text;
	*port = colon + 1;
    }
    if (len >= hostlen)
	return ("host name too long");
    memcpy(host, text, len);
    host[len] = 0;
    return (NULL);
}

const char *addr_parse(const char *spec, struct addr *addr)
{
    char    host[256], port[16];
    const char *rest = spec, *port_text, *err;
    int     family = AF_UNSPEC;
    size_t  len = strlen(spec);

    /* "inet:HOST:PORT" was "IPv6 addresses must be written as [ADDRESS]:PORT" */
    if (len > 0 && (strchr("\"'", spec[0]) || strchr("\"'", spec[len - 1])))
	return (ADDR_QUOTED);
    if (strncmp(spec, "unix:", 5) == 0)
	return (addr_parse_unix(spec + 5, addr));
    if (strncmp(spec, "local:", 6) == 0)
	return (addr_parse_unix(spec + 6, addr));
    if (strncmp(spec, "inet:", 5) == 0)
	rest = spec + 5, family = AF_INET;
    else if (strncmp(spec, "inet6:", 6) == 0)
	rest = spec + 6, family = AF_INET6;
    if ((err = addr_split(rest, host, sizeof(host), &port_text)) != NULL)
	return (err);
    if (port_text == rest && strchr(rest, '@')) {
	size_t  len = strchr(rest, '@') - rest;

	if (len >= sizeof(port))
	    return ("bad port number");
	memcpy(port, rest, len);
	port[len] = 0;
    } else if (strlen(port_text) < sizeof(port)) {
	strcpy(port, port_text);
    } else {
	return ("bad port number");
    }
    if (family == AF_UNSPEC && strchr(host, ':'))
	family = AF_INET6;
    return (addr_resolve(host, port, family, addr));
}

const char *addr_format_host(const struct sockaddr *sa, char *buf, size_t len)
{
    const void *src = sa->sa_family == AF_INET
	? (const void *) &((const struct sockaddr_in *) sa)->sin_addr
	: (const void *) &((const struct sockaddr_in6 *) sa)->sin6_addr;

    if (sa->sa_family == AF_UNIX) {
	snprintf(buf, len, "%s", ((const struct sockaddr_un *) sa)->sun_path);
	return (buf);
    }
    if (inet_ntop(sa->sa_family, src, buf, len) == NULL)
	snprintf(buf, len, "?");
    return (buf);
}

int     addr_port(const struct sockaddr *sa)
{
    if (sa->sa_family == AF_INET)
	return (ntohs(((const struct sockaddr_in *) sa)->sin_port));
    if (sa->sa_family == AF_INET6)
	return (ntohs(((const struct sockaddr_in6 *) sa)->sin6_port));
    return (0);
}

const char *addr_format(const struct sockaddr *sa, char *buf, size_t len)
{
    char    host[INET6_ADDRSTRLEN];

    if (sa->sa_family == AF_UNIX)
	snprintf(buf, len, "unix:%s", ((const struct sockaddr_un *) sa)->sun_path);
    else if (sa->sa_family == AF_INET6)
	snprintf(buf, len, "[%s]:%d", addr_format_host(sa, host, sizeof(host)), addr_port(sa));
    else
	snprintf(buf, len, "%s:%d", addr_format_host(sa, host, sizeof(host)), addr_port(sa));
    return (buf);
}

/* addr_is_local - dest is one of this host's interface addresses */

static int addr_is_local(const struct addr *dest)
{
    struct ifaddrs *list, *ifa;
    int     found = 0;

    if (getifaddrs(&list) < 0)
	return (0);
    for (ifa = list; ifa != NULL && !found; ifa = ifa->ifa_next) {
	if (ifa->ifa_addr == NULL || ifa->ifa_addr->sa_family != dest->family)
	    continue;
	if (dest->family == AF_INET)
	    found = ((struct sockaddr_in *) ifa->ifa_addr)->sin_addr.s_addr
		== dest->u.in.sin_addr.s_addr;
	else
	    found = IN6_ARE_ADDR_EQUAL(&((struct sockaddr_in6 *) ifa->ifa_addr)->sin6_addr,
				       &dest->u.in6.sin6_addr);
    }
    freeifaddrs(list);
    return (found);
}

int     addr_reaches(const struct addr *dest, const struct addr *listen)
{
    const struct in6_addr *d6 = &dest->u.in6.sin6_addr, *l6 = &listen->u.in6.sin6_addr;
    in_addr_t d4 = ntohl(dest->u.in.sin_addr.s_addr), l4 = ntohl(listen->u.in.sin_addr.s_addr);

    if (dest->family != listen->family)
	return (0);
    if (dest->family == AF_UNIX)
	return (strcmp(dest->u.un.sun_path, listen->u.un.sun_path) == 0);
    if (addr_port(&dest->u.sa) != addr_port(&listen->u.sa))
	return (0);
    if (dest->family == AF_INET)
	return (d4 == l4 || d4 == INADDR_ANY
		|| (l4 == INADDR_ANY && ((d4 >> 24) == 127 || addr_is_local(dest))));
    return (IN6_ARE_ADDR_EQUAL(d6, l6) || IN6_IS_ADDR_UNSPECIFIED(d6)
	    || (IN6_IS_ADDR_UNSPECIFIED(l6) && (IN6_IS_ADDR_LOOPBACK(d6) || addr_is_local(dest))));
}

static int addr_socket(const struct addr *addr, int nonblock)
{
    int     type = SOCK_STREAM | SOCK_CLOEXEC | (nonblock ? SOCK_NONBLOCK : 0);
    int     on = 1;
    int     fd;

    if ((fd = socket(addr->family, type, 0)) < 0)
	return (-1);
    if (addr->family != AF_UNIX)
	(void) setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &on, sizeof(on));
    return (fd);
}

/*
 * addr_unix_stale - a socket left at path removed; a socket someone still
 * answers on (a second instance started by mistake took the first one's
 * clients), or whose backlog is full, and anything that is no socket
 * are kept: -1, EADDRINUSE or EEXIST. The probe never blocks.
 */
int     addr_unix_stale(const char *path)
{
    union addr_sockaddr u = {.un = {.sun_family = AF_UNIX}};
    struct stat st;
    int     fd, live;

    if (lstat(path, &st) < 0)
	return (errno == ENOENT ? 0 : -1);
    if (!S_ISSOCK(st.st_mode)) {
	errno = EEXIST;
	return (-1);
    }
    if (strlen(path) >= sizeof(u.un.sun_path)) {
	errno = ENAMETOOLONG;
	return (-1);
    }
    strcpy(u.un.sun_path, path);
    if ((fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0)) >= 0) {
	live = connect(fd, &u.sa, sizeof(u.un)) == 0 || errno == EAGAIN
	    || errno == EINPROGRESS;
	close(fd);
	if (live) {
	    errno = EADDRINUSE;
	    return (-1);
	}
    }
    return (unlink(path) < 0 && errno != ENOENT ? -1 : 0);
}

const char *addr_unix_check(const char *path)
{
    static char why[160];
    union addr_sockaddr u = {.un = {.sun_family = AF_UNIX}};
    struct sockaddr_un *probe = &u.un;
    const char *slash = strrchr(path, '/');
    struct stat st;
    int     fd, n;

    /* the directory: "." for a relative name, "/" for one in the root */
    n = snprintf(probe->sun_path, sizeof(probe->sun_path), "%.*s",
		 slash == NULL || slash == path ? 1 : (int) (slash - path),
		 slash == NULL ? "." : path);
    if (stat(probe->sun_path, &st) < 0 || !S_ISDIR(st.st_mode))
	return ("the directory of the UNIX socket does not exist");
    if (lstat(path, &st) == 0 && !S_ISSOCK(st.st_mode))
	return ("the UNIX socket path exists and is not a socket (not removing it)");
    if (geteuid() != 0)
	return (NULL);
    snprintf(probe->sun_path + n, sizeof(probe->sun_path) - (size_t) n, "/.mxkit-check.%ld",
	     (long) getpid());
    if ((fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0)) < 0)
	return (NULL);
    if (bind(fd, &u.sa, sizeof(*probe)) == 0)
	(void) unlink(probe->sun_path);		/* ours: nothing else is removed */
    else if (errno != EADDRINUSE) {
	snprintf(why, sizeof(why), "its directory takes no socket (%s)", strerror(errno));
	close(fd);
	return (why);
    }
    close(fd);
    return (NULL);
}

/* addr_taken - does another socket hold addr? Bound without SO_REUSEPORT */

static int addr_taken(const struct addr *addr)
{
    int     on = 1;
    int     fd, taken;

    if ((fd = addr_socket(addr, 1)) < 0)
	return (0);				/* the real bind will say */
    (void) setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &on, sizeof(on));
    if (addr->family == AF_INET6)
	(void) setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &on, sizeof(on));
    taken = bind(fd, &addr->u.sa, addr->salen) < 0 && errno == EADDRINUSE;
    close(fd);
    return (taken);
}

static int addr_listen_opt(const struct addr *addr, int backlog, int nonblock, int reuseport)
{
    int     on = 1;
    int     fd, saved;

    if (addr->family == AF_UNIX && addr_unix_stale(addr->u.un.sun_path) < 0)
	return (-1);
    if (reuseport > 1 && addr_taken(addr)) {	/* the first of a shared set */
	errno = EADDRINUSE;
	return (-1);
    }
    if ((fd = addr_socket(addr, nonblock)) < 0)
	return (-1);
    (void) setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &on, sizeof(on));
    if (reuseport && setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &on, sizeof(on)) < 0) {
	saved = errno;
	close(fd);
	errno = saved;
	return (-1);
    }
    if (addr->family == AF_INET6)
	(void) setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &on, sizeof(on));
    if (bind(fd, &addr->u.sa, addr->salen) < 0
	|| listen(fd, backlog) < 0) {
	saved = errno;
	close(fd);
	errno = saved;
	return (-1);
    }
    return (fd);
}

int     addr_listen(const struct addr *addr, int backlog, int nonblock)
{
    return (addr_listen_opt(addr, backlog, nonblock, 0));
}

int     addr_listen_shared(const struct addr *addr, int backlog, int first)
{
    return (addr_listen_opt(addr, backlog, 1, first ? 2 : 1));
}

int     addr_connect(const struct addr *addr, int nonblock)
{
    int     fd, saved;

    if ((fd = addr_socket(addr, nonblock)) < 0)
	return (-1);
    if (connect(fd, &addr->u.sa, addr->salen) < 0
	&& !(nonblock && errno == EINPROGRESS)) {
	saved = errno;
	close(fd);
	errno = saved;
	return (-1);
    }
    return (fd);
}
