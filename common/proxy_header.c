/*
 * NAME
 *	proxy_header 3
 * SUMMARY
 *	PROXY protocol v1 and v2 parser
 * SYNOPSIS
 *	#include "proxy_header.h"
 *
 *	const char *proxy_header_parse(buf, len, v2_max, &hdr)
 *	int	proxy_header_has_client(&hdr)
 *	const char *proxy_header_vet(&hdr, &balancer)
 *	void	proxy_header_unmap(&hdr)
 *	uint32_t proxy_crc32c(crc, buf, len)
 * DESCRIPTION
 *	proxy_header_parse() parses the header at the start of buf
 *	(haproxy's proxy-protocol.txt) and sets hdr->length to its size;
 *	the bytes after it belong to the relayed stream.
 *
 *	v1 is held to its grammar: "PROXY TCP4|TCP6 src dst sport dport"
 *	or "PROXY UNKNOWN..." ended by CRLF within 107 bytes; single
 *	spaces, dotted quads and ports without leading zeros, addresses
 *	of the announced family.
 *
 *	v2: signature, version 2, LOCAL or PROXY, INET/INET6/UNIX/UNSPEC
 *	over STREAM/DGRAM/UNSPEC, a whole header of at most v2_max bytes,
 *	an address block as long as the family needs, and every TLV
 *	bounds-checked: ALPN, AUTHORITY, CRC32C (verified: a mismatch
 *	rejects the header), NOOP, UNIQUE_ID (at most 128 bytes), SSL
 *	with its sub-TLVs, NETNS, AWS (0xEA, VPC endpoint id) and Azure
 *	(0xEE, private endpoint LINKID). Text TLVs may not contain NUL.
 *	Each of these may appear once (an SSL sub-TLV once per SSL TLV):
 *	with two AUTHORITY TLVs, one reader would take the first and
 *	another the last, so a second one rejects the header. Other types
 *	(NOOP, vendors') are skipped and counted, as often as they come.
 *	A LOCAL header's address block and TLVs are ignored, as the
 *	specification says, once checked as a PROXY header's are (a
 *	LOCAL whose block is too short for its family has no TLVs).
 *
 *	proxy_header_has_client() tells whether the header names a client
 *	at all: a PROXY command over STREAM (v2) or a TCP4/TCP6 line (v1)
 *	with an INET or INET6 source. LOCAL, UNKNOWN, UNSPEC and UNIX
 *	headers do not, nor do an UNSPEC transport (whose addresses the
 *	specification says to ignore) or DGRAM (a UDP flow's addresses are
 *	not this TCP connection's client; Postfix's own parser takes
 *	neither). Whoever receives one of these must not fall back to the
 *	address of the connection it came on: that is the balancer's or our own, and a
 *	client must never inherit its trust.
 *
 *	proxy_header_vet() strikes out a source that names no client the
 *	balancer (the peer the header came from) can have: an unspecified,
 *	multicast or broadcast address (0.0.0.0, ::, 224.0.0.0/4, ff00::/8,
 *	255.255.255.255; no TCP peer has one, and a transparent connection
 *	bound to one comes from our own address), or a loopback
 *	address (127.0.0.0/8, ::1, either IPv4-mapped) when the balancer
 *	itself is not on this host: its loopback is not ours, and a
 *	backend trusts ours (Postfix's mynetworks holds 127.0.0.0/8 and
 *	[::1]). A balancer on this host (its own connection from loopback or
 *	a UNIX socket) reports this host's local clients, who may have
 *	that trust. The header then names no client: the reason is in
 *	hdr->not_client and returned, and proxy_header_has_client() says
 *	0, so that every mode handles it as it handles a LOCAL header.
 *
 *	proxy_header_unmap() turns an IPv4-mapped IPv6 source
 *	(::ffff:a.b.c.d; a dual-stack balancer sends these for IPv4
 *	clients) into the IPv4 address it is, so that IPv4 networks,
 *	IPv4 backends and Postfix's own view of the client agree; the
 *	destination follows when it is mapped too, and is 0.0.0.0 (its
 *	port kept) when it is not: a header's family names both.
 * DIAGNOSTICS
 *	NULL when a header was parsed; proxy_header_incomplete when buf
 *	is a valid beginning (hdr->length is then the size needed, when
 *	known, else 0); otherwise a static message saying what is wrong.
 */

#include "build_config.h"

#include <arpa/inet.h>
#include <string.h>

#include "proxy_header.h"

const char proxy_header_incomplete[] = "incomplete PROXY header";

static const unsigned char proxy_v2_sig[12] = {
    0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D, 0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A
};

#define PP2_TYPE_ALPN		0x01
#define PP2_TYPE_AUTHORITY	0x02
#define PP2_TYPE_CRC32C		0x03
#define PP2_TYPE_NOOP		0x04
#define PP2_TYPE_UNIQUE_ID	0x05
#define PP2_TYPE_SSL		0x20
#define PP2_SUBTYPE_SSL_VERSION	0x21
#define PP2_SUBTYPE_SSL_CN	0x22
#define PP2_SUBTYPE_SSL_CIPHER	0x23
#define PP2_SUBTYPE_SSL_SIG_ALG	0x24
#define PP2_SUBTYPE_SSL_KEY_ALG	0x25
#define PP2_TYPE_NETNS		0x30
#define PP2_TYPE_AWS		0xEA
#define PP2_TYPE_AZURE		0xEE

/* proxy_crc32c - CRC-32C (Castagnoli), as the CRC32C TLV uses */

uint32_t proxy_crc32c(uint32_t crc, const void *buf, size_t len)
{
    static uint32_t table[256];
    static int ready;
    const unsigned char *p = buf;

    if (!ready) {				/* idempotent: a race is harmless */
	for (uint32_t i = 0; i < 256; i++) {
	    uint32_t c = i;

	    for (int k = 0; k < 8; k++)
		c = c & 1 ? (c >> 1) ^ 0x82F63B78 : c >> 1;
	    table[i] = c;
	}
	ready = 1;
    }
    crc = ~crc;
    while (len--)
	crc = table[(crc ^ *p++) & 0xff] ^ (crc >> 8);
    return (~crc);
}

/* proxy_v1_port - decimal 0..65535, no leading zero */

static const char *proxy_v1_port(const char *text, size_t len, uint16_t *port)
{
    unsigned long value = 0;

    if (len == 0 || len > 5)
	return ("PROXY v1: bad port");
    if (text[0] == '0' && len > 1)
	return ("PROXY v1: port with a leading zero");
    for (size_t i = 0; i < len; i++) {
	if (text[i] < '0' || text[i] > '9')
	    return ("PROXY v1: bad port");
	value = value * 10 + (text[i] - '0');
    }
    if (value > 65535)
	return ("PROXY v1: port above 65535");
    *port = htons((uint16_t) value);
    return (NULL);
}

/* proxy_v1_addr - one address of the announced family */

static const char *proxy_v1_addr(int family, const char *text, size_t len,
				         union addr_sockaddr *sa)
{
    char    copy[64];

    if (len == 0 || len >= sizeof(copy))
	return ("PROXY v1: bad address");
    memcpy(copy, text, len);
    copy[len] = 0;
    memset(sa, 0, sizeof(*sa));
    if (family == AF_INET) {
	/* inet_pton takes no leading zeros, but say so precisely. */
	for (size_t i = 0; i + 1 < len; i++)
	    if (copy[i] == '0' && (i == 0 || copy[i - 1] == '.') && copy[i + 1] != '.')
		return ("PROXY v1: IPv4 address with a leading zero");
	if (inet_pton(AF_INET, copy, &sa->in.sin_addr) != 1)
	    return ("PROXY v1: bad IPv4 address");
	sa->in.sin_family = AF_INET;
    } else {
	if (strchr(copy, ':') == NULL || inet_pton(AF_INET6, copy, &sa->in6.sin6_addr) != 1)
	    return ("PROXY v1: bad IPv6 address");
	sa->in6.sin6_family = AF_INET6;
    }
    return (NULL);
}

static void proxy_set_port(union addr_sockaddr *sa, uint16_t port)
{
    if (sa->sa.sa_family == AF_INET)
	sa->in.sin_port = port;
    else
	sa->in6.sin6_port = port;
}

/* proxy_v1_fields - "src dst sport dport" of TCP4 and TCP6 */

static const char *proxy_v1_fields(const char *p, const char *end, struct proxy_header *hdr)
{
    const char *field[4], *err;
    size_t  flen[4];
    uint16_t port;

    for (int i = 0; i < 4; i++) {
	const char *sp = i < 3 ? memchr(p, ' ', end - p) : end;

	if (sp == NULL)
	    return ("PROXY v1: want source, destination and two ports");
	field[i] = p;
	flen[i] = sp - p;
	p = sp + 1;
    }
    if ((err = proxy_v1_addr(hdr->family, field[0], flen[0], &hdr->src)) != NULL
	|| (err = proxy_v1_addr(hdr->family, field[1], flen[1], &hdr->dst)) != NULL)
	return (err);
    if ((err = proxy_v1_port(field[2], flen[2], &port)) != NULL)
	return (err);
    proxy_set_port(&hdr->src, port);
    if ((err = proxy_v1_port(field[3], flen[3], &port)) != NULL)
	return (err);
    proxy_set_port(&hdr->dst, port);
    return (NULL);
}

/* proxy_v1_parse - "PROXY ..." CRLF */

static const char *proxy_v1_parse(const char *buf, size_t len, struct proxy_header *hdr)
{
    size_t  scan = len < PROXY_V1_MAX ? len : PROXY_V1_MAX;
    const char *cr = NULL;

    hdr->version = 1;
    for (size_t i = 0; i < scan; i++) {
	if (buf[i] == '\r') {
	    cr = buf + i;
	    break;
	}
	if (buf[i] == '\n')
	    return ("PROXY v1: line ends without CR");
	if ((unsigned char) buf[i] < 0x20 || (unsigned char) buf[i] > 0x7e)
	    return ("PROXY v1: control or 8-bit character in the line");
    }
    if (cr == NULL)
	return (len >= PROXY_V1_MAX ? "PROXY v1: line longer than 107 bytes"
		: proxy_header_incomplete);
    /* A CR in the 107th byte leaves no room for its LF: too long, not incomplete. */
    if (cr + 1 == buf + PROXY_V1_MAX)
	return ("PROXY v1: line longer than 107 bytes");
    if (cr + 1 == buf + len)
	return (proxy_header_incomplete);
    if (cr[1] != '\n')
	return ("PROXY v1: CR not followed by LF");
    hdr->length = cr + 2 - buf;
    if (strncmp(buf + 6, "UNKNOWN", 7) == 0 && (cr == buf + 13 || buf[13] == ' ')) {
	hdr->local = 1;				/* the rest of the line is ignored */
	hdr->family = AF_UNSPEC;
	return (NULL);
    }
    if (cr - buf < 11 || buf[10] != ' ')
	return ("PROXY v1: want TCP4, TCP6 or UNKNOWN");
    hdr->transport = 1;			/* TCP4, TCP6: streams */
    if (strncmp(buf + 6, "TCP4", 4) == 0)
	hdr->family = AF_INET;
    else if (strncmp(buf + 6, "TCP6", 4) == 0)
	hdr->family = AF_INET6;
    else
	return ("PROXY v1: want TCP4, TCP6 or UNKNOWN");
    return (proxy_v1_fields(buf + 11, cr, hdr));
}

/* proxy_tlv_text - a NUL-free string TLV into a fixed buffer */

static const char *proxy_tlv_text(const unsigned char *value, size_t len, char *out,
				          size_t size, const char *too_long)
{
    if (len >= size)
	return (too_long);
    if (memchr(value, 0, len) != NULL)
	return ("PROXY v2: NUL byte in a text TLV");
    memcpy(out, value, len);
    out[len] = 0;
    return (NULL);
}

/* proxy_v2_ssl - the SSL TLV: client, verify, sub-TLVs */

static const char *proxy_v2_ssl(const unsigned char *v, size_t len, struct proxy_ssl *ssl)
{
    const char *err = NULL;
    size_t  off = 5;
    unsigned seen = 0;

    if (len < 5)
	return ("PROXY v2: SSL TLV shorter than 5 bytes");
    ssl->present = 1;
    ssl->client = v[0];
    ssl->verify = (uint32_t) v[1] << 24 | (uint32_t) v[2] << 16 | v[3] << 8 | v[4];
    while (off < len && err == NULL) {
	size_t  sub_len;

	if (len - off < 3)
	    return ("PROXY v2: SSL sub-TLV header truncated");
	if (v[off] >= PP2_SUBTYPE_SSL_VERSION && v[off] <= PP2_SUBTYPE_SSL_KEY_ALG) {
	    if (seen & (1u << (v[off] - PP2_SUBTYPE_SSL_VERSION)))
		return ("PROXY v2: an SSL sub-TLV appears twice");
	    seen |= 1u << (v[off] - PP2_SUBTYPE_SSL_VERSION);
	}
	sub_len = (size_t) v[off + 1] << 8 | v[off + 2];
	if (sub_len > len - off - 3)
	    return ("PROXY v2: SSL sub-TLV overruns the SSL TLV");
	const unsigned char *sv = v + off + 3;

	switch (v[off]) {
	case PP2_SUBTYPE_SSL_VERSION:
	    err = proxy_tlv_text(sv, sub_len, ssl->version, sizeof(ssl->version),
				 "PROXY v2: SSL version too long");
	    break;
	case PP2_SUBTYPE_SSL_CN:
	    err = proxy_tlv_text(sv, sub_len, ssl->cn, sizeof(ssl->cn),
				 "PROXY v2: SSL CN too long");
	    break;
	case PP2_SUBTYPE_SSL_CIPHER:
	    err = proxy_tlv_text(sv, sub_len, ssl->cipher, sizeof(ssl->cipher),
				 "PROXY v2: SSL cipher too long");
	    break;
	case PP2_SUBTYPE_SSL_SIG_ALG:
	    err = proxy_tlv_text(sv, sub_len, ssl->sig_alg, sizeof(ssl->sig_alg),
				 "PROXY v2: SSL signature algorithm too long");
	    break;
	case PP2_SUBTYPE_SSL_KEY_ALG:
	    err = proxy_tlv_text(sv, sub_len, ssl->key_alg, sizeof(ssl->key_alg),
				 "PROXY v2: SSL key algorithm too long");
	    break;
	}
	off += 3 + sub_len;
    }
    return (err);
}

/* proxy_v2_tlv - one TLV; start is the whole header (for CRC32C) */

/* proxy_v2_once - a type that may appear once; 0 for the others */

static unsigned proxy_v2_once(const unsigned char *tlv, size_t len)
{
    switch (tlv[0]) {
    case PP2_TYPE_ALPN:
	return (1u << 0);
    case PP2_TYPE_AUTHORITY:
	return (1u << 1);
    case PP2_TYPE_UNIQUE_ID:
	return (1u << 2);
    case PP2_TYPE_SSL:
	return (1u << 3);
    case PP2_TYPE_NETNS:
	return (1u << 4);
    case PP2_TYPE_AWS:
	return (len >= 1 && tlv[3] == 0x01 ? 1u << 5 : 0);
    case PP2_TYPE_AZURE:
	return (len >= 1 && tlv[3] == 0x01 ? 1u << 6 : 0);
    default:
	return (0);				/* CRC32C: its own check */
    }
}

static const char *proxy_v2_tlv(const unsigned char *start, size_t hdr_len,
				        const unsigned char *tlv, size_t len,
				        struct proxy_header *hdr)
{
    const unsigned char *v = tlv + 3;
    unsigned once = proxy_v2_once(tlv, len);

    if (hdr->tlv_seen & once)
	return ("PROXY v2: a TLV that may appear once appears twice");
    hdr->tlv_seen |= once;

    switch (tlv[0]) {
    case PP2_TYPE_ALPN:
	return (proxy_tlv_text(v, len, hdr->alpn, sizeof(hdr->alpn),
			       "PROXY v2: ALPN TLV too long"));
    case PP2_TYPE_AUTHORITY:
	return (proxy_tlv_text(v, len, hdr->authority, sizeof(hdr->authority),
			       "PROXY v2: AUTHORITY TLV longer than 255 bytes"));
    case PP2_TYPE_CRC32C:{
	    static const unsigned char zero[4];
	    size_t  at = v - start;
	    uint32_t want, crc;

	    if (len != 4)
		return ("PROXY v2: CRC32C TLV is not 4 bytes");
	    if (hdr->has_crc32c)
		return ("PROXY v2: two CRC32C TLVs");
	    want = (uint32_t) v[0] << 24 | (uint32_t) v[1] << 16 | v[2] << 8 | v[3];
	    /* Computed with the checksum field zeroed. */
	    crc = proxy_crc32c(0, start, at);
	    crc = proxy_crc32c(crc, zero, 4);
	    crc = proxy_crc32c(crc, start + at + 4, hdr_len - at - 4);
	    if (crc != want)
		return ("PROXY v2: CRC32C mismatch");
	    hdr->has_crc32c = 1;
	    return (NULL);
	}
    case PP2_TYPE_UNIQUE_ID:
	if (len > sizeof(hdr->unique_id))
	    return ("PROXY v2: UNIQUE_ID TLV longer than 128 bytes");
	memcpy(hdr->unique_id, v, len);
	hdr->unique_id_len = len;
	return (NULL);
    case PP2_TYPE_SSL:
	return (proxy_v2_ssl(v, len, &hdr->ssl));
    case PP2_TYPE_NETNS:
	return (proxy_tlv_text(v, len, hdr->netns, sizeof(hdr->netns),
			       "PROXY v2: NETNS TLV too long"));
    case PP2_TYPE_AWS:
	if (len >= 1 && v[0] == 0x01)
	    return (proxy_tlv_text(v + 1, len - 1, hdr->aws_vpce_id, sizeof(hdr->aws_vpce_id),
				   "PROXY v2: AWS VPC endpoint id too long"));
	hdr->other_tlvs++;
	return (NULL);
    case PP2_TYPE_AZURE:
	if (len >= 1 && v[0] == 0x01) {
	    if (len != 5)
		return ("PROXY v2: Azure LINKID TLV is not 5 bytes");
	    hdr->azure_linkid = v[1] | v[2] << 8 | v[3] << 16 | (uint32_t) v[4] << 24;
	    hdr->has_azure_linkid = 1;
	    return (NULL);
	}
	hdr->other_tlvs++;
	return (NULL);
    default:					/* NOOP and unknown types */
	hdr->other_tlvs++;
	return (NULL);
    }
}

/* proxy_v2_addresses - the address block of a PROXY command */

static const char *proxy_v2_addresses(const unsigned char *a, size_t len,
				              struct proxy_header *hdr, size_t *used)
{
    switch (hdr->family) {
    case AF_INET:
	if (len < 12)
	    return ("PROXY v2: address block too short for INET");
	hdr->src.in.sin_family = hdr->dst.in.sin_family = AF_INET;
	memcpy(&hdr->src.in.sin_addr, a, 4);
	memcpy(&hdr->dst.in.sin_addr, a + 4, 4);
	memcpy(&hdr->src.in.sin_port, a + 8, 2);
	memcpy(&hdr->dst.in.sin_port, a + 10, 2);
	*used = 12;
	return (NULL);
    case AF_INET6:
	if (len < 36)
	    return ("PROXY v2: address block too short for INET6");
	hdr->src.in6.sin6_family = hdr->dst.in6.sin6_family = AF_INET6;
	memcpy(&hdr->src.in6.sin6_addr, a, 16);
	memcpy(&hdr->dst.in6.sin6_addr, a + 16, 16);
	memcpy(&hdr->src.in6.sin6_port, a + 32, 2);
	memcpy(&hdr->dst.in6.sin6_port, a + 34, 2);
	*used = 36;
	return (NULL);
    case AF_UNIX:
	if (len < 216)
	    return ("PROXY v2: address block too short for UNIX");
	hdr->src.un.sun_family = hdr->dst.un.sun_family = AF_UNIX;
	memcpy(hdr->src.un.sun_path, a, 107);	/* 108 on the wire; keep a NUL */
	memcpy(hdr->dst.un.sun_path, a + 108, 107);
	*used = 216;
	return (NULL);
    default:
	*used = 0;				/* UNSPEC: no addresses */
	return (NULL);
    }
}

/*
 * proxy_v2_forget - what a LOCAL header carries is to be ignored (the
 * specification): its addresses and TLVs. They are checked first all
 * the same: a bad CRC32C or a second AUTHORITY rejects a LOCAL header
 * as it rejects a PROXY one (a CRC32C that does not match may be a
 * PROXY header with its command bit flipped).
 */
static void proxy_v2_forget(struct proxy_header *hdr)
{
    struct proxy_header kept = {.version = 2, .local = 1, .family = AF_UNSPEC,
	.dgram = hdr->dgram, .transport = hdr->transport, .length = hdr->length,
    .other_tlvs = hdr->other_tlvs};		/* a count says nothing of a client */

    *hdr = kept;
}

/* proxy_v2_parse - binary header after its 12-byte signature */

static const char *proxy_v2_parse(const unsigned char *buf, size_t len, size_t v2_max,
				          struct proxy_header *hdr)
{
    static const int families[] = {AF_UNSPEC, AF_INET, AF_INET6, AF_UNIX};
    size_t  total, off;
    const char *err;

    hdr->version = 2;
    if (len < PROXY_V2_FIXED)
	return (proxy_header_incomplete);
    if ((buf[12] >> 4) != 2)
	return ("PROXY v2: unsupported version (not 2)");
    if ((buf[12] & 0x0f) > 1)
	return ("PROXY v2: unknown command (not LOCAL or PROXY)");
    if ((buf[13] >> 4) > 3)
	return ("PROXY v2: unknown address family");
    if ((buf[13] & 0x0f) > 2)
	return ("PROXY v2: unknown transport protocol");
    total = PROXY_V2_FIXED + ((size_t) buf[14] << 8 | buf[15]);
    if (total > v2_max)
	return ("PROXY v2: header longer than the configured limit");
    hdr->length = total;
    if (len < total)
	return (proxy_header_incomplete);
    hdr->local = (buf[12] & 0x0f) == 0;
    hdr->family = families[buf[13] >> 4];
    hdr->dgram = (buf[13] & 0x0f) == 2;
    hdr->transport = buf[13] & 0x0f;
    if ((err = proxy_v2_addresses(buf + PROXY_V2_FIXED, total - PROXY_V2_FIXED, hdr, &off))
	!= NULL) {
	if (!hdr->local)
	    return (err);
	off = total - PROXY_V2_FIXED;		/* LOCAL: no block of that family */
    }
    for (off += PROXY_V2_FIXED; off < total; ) {
	size_t  tlv_len;

	if (total - off < 3)
	    return ("PROXY v2: TLV header truncated");
	tlv_len = (size_t) buf[off + 1] << 8 | buf[off + 2];
	if (tlv_len > total - off - 3)
	    return ("PROXY v2: TLV overruns the header");
	if ((err = proxy_v2_tlv(buf, total, buf + off, tlv_len, hdr)) != NULL)
	    return (err);
	off += 3 + tlv_len;
    }
    if (hdr->local)				/* checked, then ignored */
	proxy_v2_forget(hdr);
    return (NULL);
}

/* proxy_header_parse - v1 or v2, by the first bytes */

const char *proxy_header_parse(const void *data, size_t len, size_t v2_max,
			               struct proxy_header *hdr)
{
    const unsigned char *buf = data;
    size_t  n;

    memset(hdr, 0, sizeof(*hdr));
    if (v2_max > PROXY_HEADER_BUF)
	v2_max = PROXY_HEADER_BUF;
    if (len == 0)
	return (proxy_header_incomplete);
    if (buf[0] == proxy_v2_sig[0]) {
	n = len < sizeof(proxy_v2_sig) ? len : sizeof(proxy_v2_sig);
	if (memcmp(buf, proxy_v2_sig, n) != 0)
	    return ("PROXY v2: bad signature");
	if (len < sizeof(proxy_v2_sig))
	    return (proxy_header_incomplete);
	return (proxy_v2_parse(buf, len, v2_max, hdr));
    }
    n = len < 6 ? len : 6;
    if (memcmp(buf, "PROXY ", n) != 0)
	return ("no PROXY header (neither v1 \"PROXY \" nor the v2 signature)");
    if (len < 6)
	return (proxy_header_incomplete);
    return (proxy_v1_parse(data, len, hdr));
}

/* proxy_header_has_client - does the header name a client address? */

int     proxy_header_has_client(const struct proxy_header *hdr)
{
    return (!hdr->local && hdr->transport == 1 && hdr->not_client == NULL
	    && ((hdr->family == AF_INET && hdr->src.sa.sa_family == AF_INET)
		  || (hdr->family == AF_INET6 && hdr->src.sa.sa_family == AF_INET6)));
}

/*
 * proxy_addr_kind - 1 no TCP peer's address (unspecified, multicast, the
 * IPv4 broadcast 255.255.255.255), 2 loopback (either IPv4-mapped), else 0
 */
static int proxy_addr_kind(const union addr_sockaddr *sa)
{
    const unsigned char *v4 = NULL;

    if (sa->sa.sa_family == AF_INET)
	v4 = (const unsigned char *) &sa->in.sin_addr;
    else if (sa->sa.sa_family == AF_INET6 && IN6_IS_ADDR_V4MAPPED(&sa->in6.sin6_addr))
	v4 = sa->in6.sin6_addr.s6_addr + 12;
    else if (sa->sa.sa_family == AF_INET6)
	return (IN6_IS_ADDR_UNSPECIFIED(&sa->in6.sin6_addr)
		|| IN6_IS_ADDR_MULTICAST(&sa->in6.sin6_addr) ? 1
		: IN6_IS_ADDR_LOOPBACK(&sa->in6.sin6_addr) ? 2 : 0);
    else
	return (0);
    if ((v4[0] == 0 && v4[1] == 0 && v4[2] == 0 && v4[3] == 0)
	|| (v4[0] & 0xf0) == 0xe0
	|| (v4[0] == 255 && v4[1] == 255 && v4[2] == 255 && v4[3] == 255))
	return (1);
    return (v4[0] == 127 ? 2 : 0);
}

const char *proxy_header_vet(struct proxy_header *hdr, const union addr_sockaddr *balancer)
{
    int     kind;

    if (!proxy_header_has_client(hdr))
	return (NULL);
    kind = proxy_addr_kind(&hdr->src);
    if (kind == 1)
	hdr->not_client = "the header's client address is unspecified, multicast or "
	    "the broadcast address, which no TCP client has";
    else if (kind == 2 && balancer->sa.sa_family != AF_UNIX && proxy_addr_kind(balancer) != 2)
	hdr->not_client = "the header's client address is a loopback address, and the "
	    "balancer is not on this host (its loopback is not ours)";
    return (hdr->not_client);
}

/* proxy_unmap_one - ::ffff:a.b.c.d to a.b.c.d, port kept */

static int proxy_unmap_one(union addr_sockaddr *sa)
{
    struct sockaddr_in in;

    if (sa->sa.sa_family != AF_INET6 || !IN6_IS_ADDR_V4MAPPED(&sa->in6.sin6_addr))
	return (0);
    memset(&in, 0, sizeof(in));
    in.sin_family = AF_INET;
    in.sin_port = sa->in6.sin6_port;
    memcpy(&in.sin_addr, sa->in6.sin6_addr.s6_addr + 12, 4);
    memset(sa, 0, sizeof(*sa));
    sa->in = in;
    return (1);
}

void    proxy_header_unmap(struct proxy_header *hdr)
{
    in_port_t port = hdr->dst.in6.sin6_port;

    if (hdr->family != AF_INET6 || !proxy_unmap_one(&hdr->src))
	return;
    hdr->family = AF_INET;
    if (!proxy_unmap_one(&hdr->dst)) {		/* an IPv6 destination: none */
	memset(&hdr->dst, 0, sizeof(hdr->dst));
	hdr->dst.in.sin_family = AF_INET;
	hdr->dst.in.sin_port = port;
    }
}
