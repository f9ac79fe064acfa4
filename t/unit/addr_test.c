/* addr_test - unit tests for common/addr.c */


#include "build_config.h"
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
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
    parses("inet:127.0.0.1:99999", "bad port number");
    parses("inet:127.0.0.1:", "bad port number");
    parses("inet:127.0.0.1", "expected HOST:PORT");
    parses("::1:25", "IPv6 addresses must be written as [ADDRESS]:PORT");
    parses("unix:relative", "unix socket path must be absolute");
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
}

int     main(void)
{
    test_parse();
    test_listen_connect();
    return (tap_done());
}
