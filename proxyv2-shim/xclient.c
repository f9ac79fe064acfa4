/*
 * NAME
 *	xclient 3
 * SUMMARY
 *	SMTP replies and the XCLIENT command for Postfix backends
 * SYNOPSIS
 *	#include "xclient.h"
 *
 *	const char *xclient_reply_scan(reply, &code)
 *	int	xclient_offered(ehlo_reply)
 *	const char *xclient_command(hdr, name, reverse_name, buf, size)
 * DESCRIPTION
 *	In xclient mode the shim connects to Postfix, reads its 220,
 *	says EHLO, and sends "XCLIENT ADDR=... PORT=..." (IPv6 as
 *	"IPV6:..."), as XCLIENT_README describes; Postfix then answers
 *	with a fresh 220 that the client gets as its greeting, and logs
 *	the session as coming from the real client. The backend must
 *	list the shim in smtpd_authorized_xclient_hosts.
 *
 *	xclient_reply_scan() looks at the bytes read so far: a complete
 *	reply is lines "DDD-text" ended by one "DDD text" line, all with
 *	the same code and CRLF (or LF) endings.
 *
 *	xclient_offered() tells whether an EHLO reply lists XCLIENT.
 *
 *	xclient_command() formats the command for a header: ADDR, PORT,
 *	NAME and REVERSE_NAME (see lookup(3); "[UNAVAILABLE]" when NULL),
 *	xtext-encoded as XCLIENT_README requires. A header without a
 *	client address (LOCAL, UNKNOWN, UNSPEC, UNIX) gets "[UNAVAILABLE]"
 *	for every attribute: without XCLIENT, or with ADDR alone, Postfix
 *	would go on with the shim's own address and name, and the client
 *	would inherit their trust (mynetworks, XCLIENT rights).
 * DIAGNOSTICS
 *	xclient_reply_scan(): NULL with *code set when complete;
 *	proxy_header_incomplete-like "incomplete" (the static string
 *	xclient_incomplete) when more bytes are needed; or an error for
 *	a malformed or oversized reply. xclient_command() returns NULL
 *	or an error when the command does not fit.
 */

#include "build_config.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "xclient.h"

const char *xclient_reply_scan(const struct xclient_reply *reply, int *code)
{
    const char *p = reply->text, *end = reply->text + reply->len;
    int     first = -1;

    while (p < end) {
	const char *nl = memchr(p, '\n', end - p);
	int     c;

	if (nl == NULL)
	    break;
	if (nl - p < 4 || !isdigit((unsigned char) p[0]) || !isdigit((unsigned char) p[1])
	    || !isdigit((unsigned char) p[2]) || (p[3] != ' ' && p[3] != '-'
						  && p[3] != '\r'))
	    return ("malformed SMTP reply from backend");
	c = (p[0] - '0') * 100 + (p[1] - '0') * 10 + (p[2] - '0');
	if (first >= 0 && c != first)
	    return ("SMTP reply lines with different codes from backend");
	first = c;
	if (p[3] != '-') {
	    if (nl + 1 != end)
		return ("backend sent more than one reply");
	    *code = c;
	    return (NULL);
	}
	p = nl + 1;
    }
    if (reply->len >= XCLIENT_REPLY_MAX)
	return ("SMTP reply from backend too long");
    return ("incomplete");
}

int     xclient_offered(const struct xclient_reply *ehlo)
{
    const char *p = ehlo->text, *end = ehlo->text + ehlo->len;

    while (p < end) {
	const char *nl = memchr(p, '\n', end - p);

	if (nl == NULL)
	    nl = end;
	if (nl - p >= 11 && strncasecmp(p + 4, "XCLIENT", 7) == 0
	    && (p[11] == ' ' || p[11] == '\r' || p[11] == '\n'))
	    return (1);
	p = nl + 1;
    }
    return (0);
}

/* xclient_xtext - RFC 3461 xtext, as XCLIENT attribute values are */

static const char *xclient_xtext(const char *value, char *out, size_t size)
{
    static const char hex[] = "0123456789ABCDEF";
    size_t  n = 0;

    for (const unsigned char *p = (const unsigned char *) value; *p; p++) {
	if (n + 4 > size)
	    return ("XCLIENT attribute too long");
	if (*p < 33 || *p > 126 || *p == '+' || *p == '=') {
	    out[n++] = '+';
	    out[n++] = hex[*p >> 4];
	    out[n++] = hex[*p & 15];
	} else {
	    out[n++] = (char) *p;
	}
    }
    out[n] = 0;
    return (NULL);
}

const char *xclient_command(const struct proxy_header *hdr, const char *name,
			           const char *reverse_name, char *buf, size_t size)
{
    char    addr[INET6_ADDRSTRLEN], xname[3 * 256 + 1], xreverse[3 * 256 + 1];
    const char *err;
    int     n;

    /*
     * No client address: Postfix must not keep what it knows of our own
     * connection (address, mynetworks, XCLIENT rights, the name of our
     * address), so every attribute says "unknown".
     */
    if (!proxy_header_has_client(hdr))
	n = snprintf(buf, size, "XCLIENT ADDR=%s PORT=%s NAME=%s REVERSE_NAME=%s\r\n",
		     XCLIENT_UNAVAILABLE, XCLIENT_UNAVAILABLE, XCLIENT_UNAVAILABLE,
		     XCLIENT_UNAVAILABLE);
    else {
	if ((err = xclient_xtext(name ? name : XCLIENT_UNAVAILABLE, xname, sizeof(xname))) != NULL
	    || (err = xclient_xtext(reverse_name ? reverse_name : XCLIENT_UNAVAILABLE,
				    xreverse, sizeof(xreverse))) != NULL)
	    return (err);
	if (hdr->family == AF_INET)
	    inet_ntop(AF_INET, &hdr->src.in.sin_addr, addr, sizeof(addr));
	else
	    inet_ntop(AF_INET6, &hdr->src.in6.sin6_addr, addr, sizeof(addr));
	n = snprintf(buf, size, "XCLIENT ADDR=%s%s PORT=%u NAME=%s REVERSE_NAME=%s\r\n",
		     hdr->family == AF_INET6 ? "IPV6:" : "", addr,
		     ntohs(hdr->family == AF_INET6 ? hdr->src.in6.sin6_port
			   : hdr->src.in.sin_port), xname, xreverse);
    }
    return (n > 0 && (size_t) n < size ? NULL : "XCLIENT command too long");
}
