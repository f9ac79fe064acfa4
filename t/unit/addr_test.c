/* addr_test - unit tests for common/addr.c */


#include "build_config.h"
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <netdb.h>
#include <ifaddrs.h>
#include <errno.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "addr.h"
#include "tap.h"

static void parses(const char *spec, const char *want)
{
    struct addr addr;
    char    buf[ADDR_TEXT_MAX];
    const char *err = addr_parse(spec, &addr);

    is_str(err ? err : addr_format(&addr.u.sa, buf, sizeof(buf)),
	   want, "parse %s", spec);
}

static void test_parse(void)
{
    parses("inet:127.0.0.1:10031", "127.0.0.1:10031");
    parses("inet6:[::1]:10031", "[::1]:10031");
    parses("unix:/run/mxkit/p.sock", "unix:/run/mxkit/p.sock");
    parses("inet:8891@127.0.0.1", "127.0.0.1:8891");
    parses("inet6:8891@[::1]", "[::1]:8891");
    parses("local:/run/m.sock", "unix:/run/m.sock");
    parses("0.0.0.0:25", "0.0.0.0:25");
    parses("[::]:993", "[::]:993");
    parses("inet6:[::ffff:127.0.0.1]:10031", "127.0.0.1:10031");
    parses("[::ffff:10.1.2.3]:25", "10.1.2.3:25");
    parses("inet6:8891@[::ffff:127.0.0.1]", "127.0.0.1:8891");
    parses("[::ffff:0:0]:25", "0.0.0.0:25");
    parses("[::1:ffff:1.2.3.4]:25", "[::1:ffff:102:304]:25");
    parses("inet:127.0.0.1:99999", "bad port number (decimal digits only, 0-65535)");
    parses("inet:127.0.0.1:", "bad port number (decimal digits only, 0-65535)");
    /* strtol() took these as 41032 (or 16): a "+25" meant something else */
    parses("inet:127.0.0.1:+41032", "bad port number (decimal digits only, 0-65535)");
    parses("inet:127.0.0.1: 41032", "bad port number (decimal digits only, 0-65535)");
    parses("inet:127.0.0.1:\t41032", "bad port number (decimal digits only, 0-65535)");
    parses("inet:127.0.0.1:41032 ", "bad port number (decimal digits only, 0-65535)");
    parses("inet:127.0.0.1:0x10", "bad port number (decimal digits only, 0-65535)");
    parses("inet:127.0.0.1:-1", "bad port number (decimal digits only, 0-65535)");
    parses("inet:127.0.0.1:1e3", "bad port number (decimal digits only, 0-65535)");
    parses("inet:127.0.0.1:0000000025", "bad port number (decimal digits only, 0-65535)");
    parses("inet:+8891@127.0.0.1", "bad port number (decimal digits only, 0-65535)");
    parses("[::1]:+25", "bad port number (decimal digits only, 0-65535)");
    parses("inet:127.0.0.1:025", "127.0.0.1:25");
    parses("inet:127.0.0.1:65535", "127.0.0.1:65535");
    is_int(addr_port_number("25x", 2), 25, "addr_port_number: len bytes only");
    is_int(addr_port_number("", 0), -1, "addr_port_number: empty");
    is_int(addr_port_number("65536", 5), -1, "addr_port_number: 65536");
    parses("inet:127.0.0.1", "expected HOST:PORT");
    parses("::1:25", "IPv6 addresses must be written as [ADDRESS]:PORT");
    parses("unix:relative", "unix socket path must be absolute");
    /* was "IPv6 addresses must be written as [ADDRESS]:PORT" */
    parses("\"inet:127.0.0.1:41031\"", ADDR_QUOTED);
    parses("'inet:127.0.0.1:41031'", ADDR_QUOTED);
    parses("\"unix:/run/p.sock\"", ADDR_QUOTED);
    parses("\"inet:127.0.0.1:41031", ADDR_QUOTED);	/* a list split at ',' */
    parses("inet:127.0.0.2:41031\"", ADDR_QUOTED);
}

/* reaches - would connecting to dest reach a socket bound to listen? */

static void reaches(const char *dest, const char *listen, int want)
{
    struct addr d, l;

    ok(addr_parse(dest, &d) == NULL && addr_parse(listen, &l) == NULL
       && addr_reaches(&d, &l) == want, "connecting to %s %s %s", dest,
       want ? "reaches" : "does not reach", listen);
}

/*
 * reaches_own - a wildcard listener and a backend that is one of this
 * host's own addresses, not loopback (helper-130: a port typo made the
 * shim connect to itself, 199 sessions deep). Every interface address
 * is tried, IPv4 and IPv6; a host with none but loopback has nothing
 * to check beyond the loopback cases below.
 */
static void reaches_own(void)
{
    struct ifaddrs *list, *ifa;
    char    host[INET6_ADDRSTRLEN], dest[INET6_ADDRSTRLEN + 16];
    int     tried = 0;

    if (!ok(getifaddrs(&list) == 0, "getifaddrs"))
	return;
    for (ifa = list; ifa != NULL; ifa = ifa->ifa_next) {
	int     fam = ifa->ifa_addr ? ifa->ifa_addr->sa_family : 0;

	if ((fam != AF_INET && fam != AF_INET6)
	    || getnameinfo(ifa->ifa_addr, fam == AF_INET ? sizeof(struct sockaddr_in)
			   : sizeof(struct sockaddr_in6), host, sizeof(host), NULL, 0,
			   NI_NUMERICHOST) != 0 || strchr(host, '%') != NULL)
	    continue;				/* a link-local's scope: no backend */
	snprintf(dest, sizeof(dest), fam == AF_INET ? "%s:2525" : "[%s]:2525", host);
	reaches(dest, fam == AF_INET ? "inet:0.0.0.0:2525" : "inet6:[::]:2525", 1);
	reaches(dest, fam == AF_INET ? "inet:0.0.0.0:2526" : "inet6:[::]:2526", 0);
	tried++;
    }
    freeifaddrs(list);
    ok(tried >= 2, "%d interface addresses tried (loopback at least)", tried);
}

static void test_reaches(void)
{
    reaches_own();
    reaches("198.51.100.77:6379", "inet:0.0.0.0:6379", 0);	/* no address of ours */
    reaches("127.0.0.1:6379", "inet:127.0.0.1:6379", 1);
    reaches("127.0.0.2:6379", "inet:0.0.0.0:6379", 1);
    reaches("0.0.0.0:6379", "inet:127.0.0.1:6379", 1);
    reaches("[::1]:6379", "inet6:[::]:6379", 1);
    reaches("[::1]:6379", "inet6:[::1]:6379", 1);
    reaches("unix:/run/p.sock", "unix:/run/p.sock", 1);
    reaches("127.0.0.1:6380", "inet:127.0.0.1:6379", 0);
    reaches("127.0.0.2:6379", "inet:127.0.0.1:6379", 0);
    reaches("192.0.2.1:6379", "inet:0.0.0.0:6379", 0);	/* maybe another host */
    reaches("[::1]:6379", "inet:127.0.0.1:6379", 0);
    reaches("unix:/run/r.sock", "unix:/run/p.sock", 0);
    reaches("unix:/run/p.sock", "inet:127.0.0.1:6379", 0);
}

static void test_listen_connect(void)
{
    struct addr addr;
    union addr_sockaddr bound;
    socklen_t len = sizeof(bound);
    char    spec[64];
    int     lfd, cfd, afd;

    ok(addr_parse("inet:127.0.0.1:0", &addr) == NULL, "parse ephemeral port");
    lfd = addr_listen(&addr, 16, 0);
    ok(lfd >= 0, "listen on 127.0.0.1");
    getsockname(lfd, &bound.sa, &len);
    snprintf(spec, sizeof(spec), "inet:127.0.0.1:%d", addr_port(&bound.sa));
    ok(addr_parse(spec, &addr) == NULL, "parse the bound port");
    cfd = addr_connect(&addr, 0);
    ok(cfd >= 0, "connect");
    afd = accept(lfd, NULL, NULL);
    ok(afd >= 0 && write(cfd, "x", 1) == 1, "accept and write");
    close(afd);
    close(cfd);
    close(lfd);

    /* an IPv4-mapped address is IPv4: an IPV6_V6ONLY socket refuses it
       (EINVAL) after -t, which only parses, had said OK */
    ok(addr_parse("inet6:[::ffff:127.0.0.1]:0", &addr) == NULL
       && addr.family == AF_INET, "[::ffff:127.0.0.1] parses as IPv4");
    lfd = addr_listen(&addr, 16, 0);
    ok(lfd >= 0, "and listens (%s)", lfd < 0 ? strerror(errno) : "bound");
    if (lfd >= 0)
	close(lfd);
}

/*
 * test_unix_paths - a listener removes a stale socket and nothing else;
 * addr_unix_check() says so before (a mistyped listen = unix:... on
 * an existing file deleted the file and bound a socket in its place).
 */
static void test_unix_paths(void)
{
    char    dir[] = "/tmp/mxkit-addr.XXXXXX", spec[200], path[160], buf[8] = "";
    struct addr addr;
    struct stat st;
    const char *err;
    FILE   *fp;
    int     fd;

    if (mkdtemp(dir) == NULL) {
	ok(0, "mkdtemp");
	return;
    }
    snprintf(path, sizeof(path), "%s/main.cf", dir);
    fp = fopen(path, "w");
    ok(fp && fputs("keep\n", fp) >= 0 && fclose(fp) == 0, "a regular file");
    snprintf(spec, sizeof(spec), "unix:%s", path);
    ok(addr_parse(spec, &addr) == NULL, "its path parses as a unix address");
    err = addr_unix_check(path);
    ok(err && strstr(err, "exists and is not a socket"), "check: exists and is not a socket");
    errno = 0;
    fd = addr_listen(&addr, 4, 0);
    ok(fd < 0 && errno == EEXIST, "listen on it: EEXIST");
    fp = fopen(path, "r");
    ok(fp && fgets(buf, sizeof(buf), fp) && strcmp(buf, "keep\n") == 0, "the file is kept");
    if (fp)
	fclose(fp);
    unlink(path);
    snprintf(path, sizeof(path), "%s/s.sock", dir);
    snprintf(spec, sizeof(spec), "unix:%s", path);
    ok(addr_parse(spec, &addr) == NULL && addr_unix_check(path) == NULL, "a free path: OK");
    fd = addr_listen(&addr, 4, 0);
    ok(fd >= 0 && lstat(path, &st) == 0 && S_ISSOCK(st.st_mode), "listening there");
    errno = 0;
    ok(addr_listen(&addr, 4, 0) < 0 && errno == EADDRINUSE,
       "a second listener on a socket that answers: EADDRINUSE, the first kept");
    close(fd);
    ok(addr_unix_check(path) == NULL, "a stale socket: OK");
    fd = addr_listen(&addr, 4, 0);
    ok(fd >= 0, "a stale socket is replaced");
    close(fd);
    unlink(path);
    ok((err = addr_unix_check("/nonexistent-mxkit/s.sock")) != NULL
       && strstr(err, "does not exist"), "a missing directory");
    if (geteuid() == 0)
	ok((err = addr_unix_check("/proc/mxkit.sock")) != NULL && strstr(err, "takes no socket"),
	   "as root: a directory that takes no socket (/proc)");
    else
	ok(addr_unix_check("/proc/mxkit.sock") == NULL, "not root: /proc not tried");
    rmdir(dir);
}

int     main(void)
{
    test_parse();
    test_reaches();
    test_listen_connect();
    test_unix_paths();
    return (tap_done());
}
