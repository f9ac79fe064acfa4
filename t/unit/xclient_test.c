/* xclient_test - unit tests for proxyv2-shim/xclient.c */

#include "build_config.h"

#include <arpa/inet.h>
#include <string.h>

#include "tap.h"
#include "xclient.h"

static const char *scan(const char *text, int *code)
{
    struct xclient_reply r;

    r.len = strlen(text);
    memcpy(r.text, text, r.len);
    return (xclient_reply_scan(&r, code));
}

#define UNKNOWN_CLIENT "XCLIENT ADDR=[UNAVAILABLE] PORT=[UNAVAILABLE] NAME=[UNAVAILABLE] " \
	"REVERSE_NAME=[UNAVAILABLE]\r\n"

int     main(void)
{
    struct xclient_reply r;
    struct proxy_header h;
    char    buf[1024], big[400];
    int     code = 0;

    is_str(scan("220 mx.example ESMTP\r\n", &code), NULL, "one-line reply");
    is_int(code, 220, "its code");
    is_str(scan("250-mx.example\r\n250-PIPELINING\r\n250 XCLIENT NAME ADDR\r\n", &code), NULL,
	   "multi-line reply");
    is_str(scan("250-mx.example\r\n250-PIPE", &code), "incomplete", "reply cut short");
    is_str(scan("250-mx\r\n550 no\r\n", &code),
	   "SMTP reply lines with different codes from backend", "mixed codes");
    is_str(scan("hello\r\n", &code), "malformed SMTP reply from backend", "not SMTP");
    is_str(scan("220 a\r\n220 b\r\n", &code), "backend sent more than one reply", "two replies");
    strcpy(r.text, "250-mx.example\r\n250-XCLIENT NAME ADDR PORT\r\n250 8BITMIME\r\n");
    r.len = strlen(r.text);
    ok(xclient_offered(&r), "XCLIENT offered");
    strcpy(r.text, "250-mx.example\r\n250-XCLIENTS\r\n250 8BITMIME\r\n");
    r.len = strlen(r.text);
    ok(!xclient_offered(&r), "XCLIENTS is not XCLIENT");

    memset(&h, 0, sizeof(h));
    h.transport = 1;				/* STREAM */
    h.family = AF_INET;
    inet_pton(AF_INET, "198.51.100.9", &h.src.in.sin_addr);
    h.src.in.sin_family = AF_INET;
    h.src.in.sin_port = htons(40000);
    is_str(xclient_command(&h, NULL, NULL, buf, sizeof(buf)), NULL, "IPv4 command");
    is_str(buf, "XCLIENT ADDR=198.51.100.9 PORT=40000 NAME=[UNAVAILABLE] "
	   "REVERSE_NAME=[UNAVAILABLE]\r\n",
	   "IPv4 text: no name is [UNAVAILABLE], never the shim's own");
    is_str(xclient_command(&h, "c.example", "c.example", buf, sizeof(buf)), NULL, "with names");
    is_str(buf, "XCLIENT ADDR=198.51.100.9 PORT=40000 NAME=c.example REVERSE_NAME=c.example\r\n",
	   "NAME and REVERSE_NAME");
    is_str(xclient_command(&h, "a b+c=d\r\nRCPT", "\x80\x7f~!", buf, sizeof(buf)), NULL,
	   "names needing xtext");
    is_str(buf, "XCLIENT ADDR=198.51.100.9 PORT=40000 NAME=a+20b+2Bc+3Dd+0D+0ARCPT "
	   "REVERSE_NAME=+80+7F~!\r\n", "space, +, =, CR, LF and 8-bit xtext-encoded");
    memset(big, 'a', sizeof(big) - 1);
    big[sizeof(big) - 1] = 0;
    is_str(xclient_command(&h, big, big, buf, 512), "XCLIENT command too long",
	   "a command that does not fit is an error, not a truncated line");
    h.family = AF_INET6;
    h.src.in6.sin6_family = AF_INET6;
    inet_pton(AF_INET6, "2001:db8::9", &h.src.in6.sin6_addr);
    h.src.in6.sin6_port = htons(993);
    xclient_command(&h, NULL, NULL, buf, sizeof(buf));
    is_str(buf, "XCLIENT ADDR=IPV6:2001:db8::9 PORT=993 NAME=[UNAVAILABLE] "
	   "REVERSE_NAME=[UNAVAILABLE]\r\n", "IPv6 as IPV6:");
    h.local = 1;
    is_str(xclient_command(&h, "c.example", "c.example", buf, sizeof(buf)), NULL,
	   "LOCAL: a command all the same");
    is_str(buf, UNKNOWN_CLIENT, "LOCAL: every attribute [UNAVAILABLE], names ignored");
    h.local = 0;
    h.family = AF_UNSPEC;
    xclient_command(&h, NULL, NULL, buf, sizeof(buf));
    is_str(buf, UNKNOWN_CLIENT, "UNSPEC (v1 UNKNOWN): every attribute [UNAVAILABLE]");
    h.family = AF_UNIX;
    h.src.un.sun_family = AF_UNIX;
    xclient_command(&h, NULL, NULL, buf, sizeof(buf));
    is_str(buf, UNKNOWN_CLIENT, "UNIX: every attribute [UNAVAILABLE]");
    h.family = AF_INET;				/* family says INET, address does not */
    xclient_command(&h, NULL, NULL, buf, sizeof(buf));
    is_str(buf, UNKNOWN_CLIENT, "family and address disagree: [UNAVAILABLE]");
    return (tap_done());
}
