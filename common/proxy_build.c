/*
 * NAME
 *	proxy_build 3
 * SUMMARY
 *	build PROXY protocol v1 and v2 headers
 * SYNOPSIS
 *	#include "proxy_header.h"
 *
 *	size_t	proxy_build_v1(hdr, buf, size)
 *	size_t	proxy_build_v2(hdr, flags, buf, size)
 * DESCRIPTION
 *	proxy_build_v1() writes "PROXY TCP4|TCP6 src dst sport dport"
 *	CRLF, or "PROXY UNKNOWN" CRLF for a LOCAL header or a family v1
 *	cannot carry (UNIX, UNSPEC): old daemons behind a v2 balancer.
 *
 *	proxy_build_v2() writes a LOCAL or PROXY header with the address
 *	block of hdr->family and the standard TLVs that are set in hdr:
 *	ALPN, AUTHORITY, UNIQUE_ID, SSL (with its sub-TLVs), NETNS.
 *	Vendor TLVs (AWS, Azure) and unknown ones are never re-emitted:
 *	a backend should trust only what its balancer vouches for. With
 *	PROXY_BUILD_CRC32C a CRC32C TLV comes last.
 * DIAGNOSTICS
 *	Both return the header length, or 0 when it does not fit.
 */

#include "build_config.h"

#include <arpa/inet.h>
#include <stdio.h>
#include <string.h>

#include "proxy_header.h"

static const unsigned char proxy_build_sig[12] = {
    0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D, 0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A
};

size_t  proxy_build_v1(const struct proxy_header *hdr, char *buf, size_t size)
{
    char    src[INET6_ADDRSTRLEN], dst[INET6_ADDRSTRLEN];
    int     n;

    if (hdr->local || (hdr->family != AF_INET && hdr->family != AF_INET6)) {
	n = snprintf(buf, size, "PROXY UNKNOWN\r\n");
    } else if (hdr->family == AF_INET) {
	inet_ntop(AF_INET, &hdr->src.in.sin_addr, src, sizeof(src));
	inet_ntop(AF_INET, &hdr->dst.in.sin_addr, dst, sizeof(dst));
	n = snprintf(buf, size, "PROXY TCP4 %s %s %u %u\r\n", src, dst,
		     ntohs(hdr->src.in.sin_port), ntohs(hdr->dst.in.sin_port));
    } else {
	inet_ntop(AF_INET6, &hdr->src.in6.sin6_addr, src, sizeof(src));
	inet_ntop(AF_INET6, &hdr->dst.in6.sin6_addr, dst, sizeof(dst));
	n = snprintf(buf, size, "PROXY TCP6 %s %s %u %u\r\n", src, dst,
		     ntohs(hdr->src.in6.sin6_port), ntohs(hdr->dst.in6.sin6_port));
    }
    return (n > 0 && (size_t) n < size ? (size_t) n : 0);
}

/* A bounded writer: once full, every append is a no-op. */

struct proxy_out {
    unsigned char *buf;
    size_t  size;
    size_t  len;
    int     full;
};

static void proxy_put(struct proxy_out *o, const void *data, size_t len)
{
    if (o->full || len > o->size - o->len) {
	o->full = 1;
	return;
    }
    memcpy(o->buf + o->len, data, len);
    o->len += len;
}

static void proxy_put_tlv(struct proxy_out *o, int type, const void *value, size_t len)
{
    unsigned char head[3] = {(unsigned char) type, (unsigned char) (len >> 8),
    (unsigned char) len};

    proxy_put(o, head, 3);
    proxy_put(o, value, len);
}

static void proxy_put_text(struct proxy_out *o, int type, const char *text)
{
    if (text[0])
	proxy_put_tlv(o, type, text, strlen(text));
}

/* proxy_build_ssl - SSL TLV with its sub-TLVs, built inside out */

static void proxy_build_ssl(struct proxy_out *o, const struct proxy_ssl *ssl)
{
    unsigned char value[1024];
    struct proxy_out inner = {value, sizeof(value), 0, 0};
    unsigned char head[5] = {ssl->client, (unsigned char) (ssl->verify >> 24),
	(unsigned char) (ssl->verify >> 16), (unsigned char) (ssl->verify >> 8),
    (unsigned char) ssl->verify};

    proxy_put(&inner, head, 5);
    proxy_put_text(&inner, 0x21, ssl->version);
    proxy_put_text(&inner, 0x22, ssl->cn);
    proxy_put_text(&inner, 0x23, ssl->cipher);
    proxy_put_text(&inner, 0x24, ssl->sig_alg);
    proxy_put_text(&inner, 0x25, ssl->key_alg);
    if (inner.full)
	o->full = 1;
    else
	proxy_put_tlv(o, 0x20, value, inner.len);
}

static void proxy_build_addresses(struct proxy_out *o, const struct proxy_header *hdr)
{
    switch (hdr->family) {
    case AF_INET:
	proxy_put(o, &hdr->src.in.sin_addr, 4);
	proxy_put(o, &hdr->dst.in.sin_addr, 4);
	proxy_put(o, &hdr->src.in.sin_port, 2);
	proxy_put(o, &hdr->dst.in.sin_port, 2);
	break;
    case AF_INET6:
	proxy_put(o, &hdr->src.in6.sin6_addr, 16);
	proxy_put(o, &hdr->dst.in6.sin6_addr, 16);
	proxy_put(o, &hdr->src.in6.sin6_port, 2);
	proxy_put(o, &hdr->dst.in6.sin6_port, 2);
	break;
    case AF_UNIX:{
	    unsigned char path[108];

	    memset(path, 0, sizeof(path));
	    memcpy(path, hdr->src.un.sun_path, strnlen(hdr->src.un.sun_path, 107));
	    proxy_put(o, path, sizeof(path));
	    memset(path, 0, sizeof(path));
	    memcpy(path, hdr->dst.un.sun_path, strnlen(hdr->dst.un.sun_path, 107));
	    proxy_put(o, path, sizeof(path));
	    break;
	}
    }
}

size_t  proxy_build_v2(const struct proxy_header *hdr, int flags, unsigned char *buf,
		               size_t size)
{
    struct proxy_out o = {buf, size, 0, 0};
    unsigned char fixed[4];
    int     family = hdr->local ? AF_UNSPEC : hdr->family;
    size_t  body;

    fixed[0] = hdr->local ? 0x20 : 0x21;
    fixed[1] = (family == AF_INET ? 0x10 : family == AF_INET6 ? 0x20
		: family == AF_UNIX ? 0x30 : 0x00) | (family == AF_UNSPEC ? 0
						      : hdr->dgram ? 0x02 : 0x01);
    fixed[2] = fixed[3] = 0;			/* length, patched below */
    proxy_put(&o, proxy_build_sig, sizeof(proxy_build_sig));
    proxy_put(&o, fixed, 4);
    if (!hdr->local) {
	struct proxy_header copy = *hdr;

	copy.family = family;
	proxy_build_addresses(&o, &copy);
	proxy_put_text(&o, 0x01, hdr->alpn);
	proxy_put_text(&o, 0x02, hdr->authority);
	if (hdr->unique_id_len)
	    proxy_put_tlv(&o, 0x05, hdr->unique_id, hdr->unique_id_len);
	if (hdr->ssl.present)
	    proxy_build_ssl(&o, &hdr->ssl);
	proxy_put_text(&o, 0x30, hdr->netns);
    }
    if (flags & PROXY_BUILD_CRC32C) {
	static const unsigned char zero[4];

	proxy_put_tlv(&o, 0x03, zero, 4);
    }
    if (o.full || o.len - PROXY_V2_FIXED > 65535)
	return (0);
    body = o.len - PROXY_V2_FIXED;
    buf[14] = (unsigned char) (body >> 8);
    buf[15] = (unsigned char) body;
    if (flags & PROXY_BUILD_CRC32C) {
	uint32_t crc = proxy_crc32c(0, buf, o.len);

	buf[o.len - 4] = (unsigned char) (crc >> 24);
	buf[o.len - 3] = (unsigned char) (crc >> 16);
	buf[o.len - 2] = (unsigned char) (crc >> 8);
	buf[o.len - 1] = (unsigned char) crc;
    }
    return (o.len);
}
