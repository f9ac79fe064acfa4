/* proxy_header_test - unit tests for common/proxy_header.c, proxy_reader.c, proxy_build.c */

#include "build_config.h"

#include <arpa/inet.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "proxy_header.h"
#include "tap.h"

static const char *parse(const void *buf, size_t len, struct proxy_header *hdr)
{
    return (proxy_header_parse(buf, len, PROXY_V2_DEFAULT_MAX, hdr));
}

static const char *parse_str(const char *text, struct proxy_header *hdr)
{
    return (parse(text, strlen(text), hdr));
}

static void test_v1_good(void)
{
    struct proxy_header h;
    char    text[64];
    const char *line = "PROXY TCP4 192.0.2.7 10.0.20.5 56324 25\r\nEHLO x\r\n";

    is_str(parse_str(line, &h), NULL, "v1 TCP4 parses");
    is_int(h.length, 41, "v1 length stops at CRLF, pipelined EHLO left alone");
    inet_ntop(AF_INET, &h.src.in.sin_addr, text, sizeof(text));
    is_str(text, "192.0.2.7", "v1 source address");
    is_int(ntohs(h.src.in.sin_port), 56324, "v1 source port");
    is_int(ntohs(h.dst.in.sin_port), 25, "v1 destination port");
    is_str(parse_str("PROXY TCP6 2001:db8::7 2001:db8::1 0 993\r\n", &h), NULL, "v1 TCP6");
    ok(h.family == AF_INET6 && ntohs(h.src.in6.sin6_port) == 0, "v1 TCP6 family, port 0");
    is_str(parse_str("PROXY UNKNOWN\r\n", &h), NULL, "v1 UNKNOWN");
    ok(h.local && h.length == 15, "UNKNOWN is local, 15 bytes");
    is_str(parse_str("PROXY UNKNOWN ffff:f...f:ffff 1.2.3.4 65535 65535\r\n", &h), NULL,
	   "v1 UNKNOWN ignores the rest of the line");
}

static void test_v1_bad(void)
{
    static const struct {
	const char *line;
	const char *error;
    }       cases[] = {
	{"PROXY TCP4 01.2.3.4 10.0.0.1 1 2\r\n", "PROXY v1: IPv4 address with a leading zero"},
	{"PROXY TCP4 1.2.3.4 10.0.0.1 01 2\r\n", "PROXY v1: port with a leading zero"},
	{"PROXY TCP4 1.2.3.4 10.0.0.1 1 65536\r\n", "PROXY v1: port above 65535"},
	{"PROXY TCP4 1.2.3.4 10.0.0.1 1 2\n", "PROXY v1: line ends without CR"},
	{"PROXY TCP4 1.2.3.4 10.0.0.1 1 2\rX", "PROXY v1: CR not followed by LF"},
	{"PROXY TCP4 1.2.3.4  10.0.0.1 1 2\r\n", "PROXY v1: bad address"},
	{"PROXY TCP4 2001:db8::1 10.0.0.1 1 2\r\n", "PROXY v1: bad IPv4 address"},
	{"PROXY TCP6 1.2.3.4 2001:db8::1 1 2\r\n", "PROXY v1: bad IPv6 address"},
	{"PROXY TCP5 1.2.3.4 10.0.0.1 1 2\r\n", "PROXY v1: want TCP4, TCP6 or UNKNOWN"},
	{"PROXY TCP4 1.2.3.4 10.0.0.1 1\r\n", "PROXY v1: want source, destination and two ports"},
	{"PROXY TCP4 1.2.3.4 10.0.0.1 1 2 3\r\n", "PROXY v1: bad port"},
	{"PROXY TCP4 1.2.3.4 10.0.0.1 1 2\t\r\n", "PROXY v1: control or 8-bit character in the line"},
	{"PROXY UNKNOWNX\r\n", "PROXY v1: want TCP4, TCP6 or UNKNOWN"},
	{"EHLO client.example\r\n", "no PROXY header (neither v1 \"PROXY \" nor the v2 signature)"},
	{"GET / HTTP/1.0\r\n", "no PROXY header (neither v1 \"PROXY \" nor the v2 signature)"},
    };
    struct proxy_header h;
    char    longline[200];

    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
	is_str(parse_str(cases[i].line, &h), cases[i].error, "refused: %.*s", 
	       (int) strcspn(cases[i].line, "\r\n\t"), cases[i].line);
    memset(longline, 0, sizeof(longline));
    strcpy(longline, "PROXY UNKNOWN ");
    memset(longline + 14, 'x', 110);
    is_str(parse_str(longline, &h), "PROXY v1: line longer than 107 bytes",
	   "a v1 line without CRLF in 107 bytes");
    /* 107 bytes with CRLF is the longest line; 108 (CR in the 107th byte) is not */
    memset(longline + 14, 'x', 91);
    memcpy(longline + 105, "\r\n", 3);
    ok(parse(longline, 107, &h) == NULL && h.length == 107, "a 107-byte v1 line, CRLF included");
    memset(longline + 14, 'x', 92);
    memcpy(longline + 106, "\r\n", 3);
    is_str(parse(longline, 107, &h), "PROXY v1: line longer than 107 bytes",
	   "108 bytes: the reader stops at 107, and the CR in the 107th is too long, not incomplete");
    is_str(parse(longline, 108, &h), "PROXY v1: line longer than 107 bytes",
	   "108 bytes seen whole: too long");
    is_str(parse_str("PROX", &h), proxy_header_incomplete, "\"PROX\" is incomplete");
    is_str(parse_str("PROXY TCP4 1.2.3.4 10.0", &h), proxy_header_incomplete,
	   "a v1 line without its CRLF yet is incomplete");
}

static void fill_inet(struct proxy_header *h)
{
    memset(h, 0, sizeof(*h));
    h->family = AF_INET;
    h->src.in.sin_family = h->dst.in.sin_family = AF_INET;
    inet_pton(AF_INET, "198.51.100.9", &h->src.in.sin_addr);
    inet_pton(AF_INET, "10.0.20.5", &h->dst.in.sin_addr);
    h->src.in.sin_port = htons(40000);
    h->dst.in.sin_port = htons(587);
}

static void test_v2_round_trip(void)
{
    struct proxy_header in, out;
    unsigned char buf[1024];
    size_t  n;

    fill_inet(&in);
    strcpy(in.alpn, "smtp");
    strcpy(in.authority, "mx.plana.solutions");
    memcpy(in.unique_id, "\x01\x02\x03", 3);
    in.unique_id_len = 3;
    in.ssl.present = 1;
    in.ssl.client = 0x01;
    strcpy(in.ssl.version, "TLSv1.3");
    strcpy(in.ssl.cipher, "TLS_AES_256_GCM_SHA384");
    strcpy(in.netns, "blue");
    n = proxy_build_v2(&in, PROXY_BUILD_CRC32C, buf, sizeof(buf));
    ok(n > 28, "v2 INET header with TLVs built (%zu bytes)", n);
    is_str(parse(buf, n, &out), NULL, "it parses, CRC32C verified");
    ok(out.version == 2 && !out.local && out.family == AF_INET && out.length == n,
       "version, command, family, length");
    ok(memcmp(&out.src.in.sin_addr, &in.src.in.sin_addr, 4) == 0
       && out.src.in.sin_port == htons(40000) && out.dst.in.sin_port == htons(587),
       "addresses and ports");
    is_str(out.alpn, "smtp", "ALPN");
    is_str(out.authority, "mx.plana.solutions", "AUTHORITY");
    ok(out.unique_id_len == 3 && memcmp(out.unique_id, "\x01\x02\x03", 3) == 0, "UNIQUE_ID");
    ok(out.ssl.present && out.ssl.client == 1, "SSL TLV");
    is_str(out.ssl.version, "TLSv1.3", "SSL version sub-TLV");
    is_str(out.ssl.cipher, "TLS_AES_256_GCM_SHA384", "SSL cipher sub-TLV");
    is_str(out.netns, "blue", "NETNS");
    ok(out.has_crc32c, "CRC32C present");
    buf[20] ^= 1;
    is_str(parse(buf, n, &out), "PROXY v2: CRC32C mismatch", "a flipped bit fails CRC32C");
    buf[20] ^= 1;
    is_str(parse(buf, n - 1, &out), proxy_header_incomplete, "one byte short: incomplete");
    is_int(out.length, n, "incomplete v2 knows its full length");
    is_str(parse(buf, 10, &out), proxy_header_incomplete, "10 bytes: incomplete");

    memset(&in, 0, sizeof(in));
    in.family = AF_INET6;
    in.src.in6.sin6_family = in.dst.in6.sin6_family = AF_INET6;
    inet_pton(AF_INET6, "2001:db8::7", &in.src.in6.sin6_addr);
    in.src.in6.sin6_port = htons(1234);
    n = proxy_build_v2(&in, 0, buf, sizeof(buf));
    is_str(parse(buf, n, &out), NULL, "v2 INET6 parses");
    ok(out.family == AF_INET6 && memcmp(&out.src.in6.sin6_addr, &in.src.in6.sin6_addr, 16) == 0
       && out.src.in6.sin6_port == htons(1234), "INET6 address and port");

    memset(&in, 0, sizeof(in));
    in.family = AF_UNIX;
    strcpy(in.src.un.sun_path, "/run/client.sock");
    n = proxy_build_v2(&in, 0, buf, sizeof(buf));
    is_int(n, 16 + 216, "v2 UNIX is 232 bytes");
    is_str(parse(buf, n, &out), NULL, "v2 UNIX parses");
    is_str(out.src.un.sun_path, "/run/client.sock", "UNIX source path");

    memset(&in, 0, sizeof(in));
    in.local = 1;
    n = proxy_build_v2(&in, 0, buf, sizeof(buf));
    is_str(parse(buf, n, &out), NULL, "v2 LOCAL parses");
    ok(out.local && out.family == AF_UNSPEC && n == 16, "LOCAL: no addresses, 16 bytes");
}

/* v2 header from raw parts, for the malformed cases */
static size_t raw_v2(unsigned char *buf, int ver_cmd, int fam, const void *body, size_t len)
{
    memcpy(buf, "\r\n\r\n\0\r\nQUIT\n", 12);
    buf[12] = (unsigned char) ver_cmd;
    buf[13] = (unsigned char) fam;
    buf[14] = (unsigned char) (len >> 8);
    buf[15] = (unsigned char) len;
    memcpy(buf + 16, body, len);
    return (16 + len);
}

/* LOCAL: addresses and TLVs ignored, but checked as a PROXY header's */
static void test_v2_local_checked(void)
{
    unsigned char buf[256], body[64];
    struct proxy_header h;
    uint32_t crc;
    size_t  n;

    memset(body, 0, sizeof(body));
    memcpy(body, "\x03\x00\x04" "\0\0\0\0" "\x02\x00\x01" "a", 11);
    n = raw_v2(buf, 0x20, 0x00, body, 11);	/* LOCAL UNSPEC, CRC32C, AUTHORITY */
    crc = proxy_crc32c(0, buf, n);
    buf[19] = (unsigned char) (crc >> 24), buf[20] = (unsigned char) (crc >> 16);
    buf[21] = (unsigned char) (crc >> 8), buf[22] = (unsigned char) crc;
    is_str(parse(buf, n, &h), NULL, "LOCAL with a good CRC32C parses");
    ok(h.local && h.family == AF_UNSPEC && h.length == n && !h.has_crc32c
       && h.authority[0] == '\0', "LOCAL: its TLVs are then ignored");
    buf[22] ^= 1;
    is_str(parse(buf, n, &h), "PROXY v2: CRC32C mismatch", "LOCAL with a bad CRC32C: refused");
    buf[22] ^= 1;
    buf[12] = 0x21;				/* the command bit flipped: PROXY */
    is_str(parse(buf, n, &h), "PROXY v2: CRC32C mismatch", "LOCAL turned PROXY: CRC32C catches it");
    memcpy(body + 11, "\x02\x00\x01" "b", 4);	/* a second AUTHORITY */
    n = raw_v2(buf, 0x20, 0x00, body + 7, 8);
    is_str(parse(buf, n, &h), "PROXY v2: a TLV that may appear once appears twice",
	   "LOCAL with two AUTHORITY TLVs: refused");
    memcpy(body, "\x02\xff\xff", 3);		/* a TLV of 65,535 bytes, 0 there */
    n = raw_v2(buf, 0x20, 0x00, body, 3);
    is_str(parse(buf, n, &h), "PROXY v2: TLV overruns the header", "LOCAL TLV overrun: refused");
    n = raw_v2(buf, 0x20, 0x11, body, 0);	/* LOCAL INET with no block */
    is_str(parse(buf, n, &h), NULL, "LOCAL INET without addresses parses (ignored)");
    ok(h.local && h.family == AF_UNSPEC, "and names no one");
    memset(body, 0, 12);
    body[12] = 0x02, body[13] = 0, body[14] = 1, body[15] = 'x';
    n = raw_v2(buf, 0x20, 0x11, body, 16);	/* LOCAL INET, addresses, AUTHORITY */
    is_str(parse(buf, n, &h), NULL, "LOCAL INET with addresses and a TLV parses");
    ok(h.local && h.family == AF_UNSPEC && h.authority[0] == '\0' && h.src.in.sin_port == 0,
       "its addresses and TLVs are not kept");
}

static void test_v2_bad(void)
{
    unsigned char buf[2048], body[1200];
    struct proxy_header h;
    size_t  n;

    memset(body, 0, sizeof(body));
    n = raw_v2(buf, 0x11, 0x11, body, 12);
    is_str(parse(buf, n, &h), "PROXY v2: unsupported version (not 2)", "version 1 in a v2 header");
    n = raw_v2(buf, 0x22, 0x11, body, 12);
    is_str(parse(buf, n, &h), "PROXY v2: unknown command (not LOCAL or PROXY)", "command 2");
    n = raw_v2(buf, 0x21, 0x41, body, 12);
    is_str(parse(buf, n, &h), "PROXY v2: unknown address family", "family 4");
    n = raw_v2(buf, 0x21, 0x13, body, 12);
    is_str(parse(buf, n, &h), "PROXY v2: unknown transport protocol", "transport 3");
    n = raw_v2(buf, 0x21, 0x11, body, 8);
    is_str(parse(buf, n, &h), "PROXY v2: address block too short for INET", "short INET block");
    n = raw_v2(buf, 0x21, 0x21, body, 20);
    is_str(parse(buf, n, &h), "PROXY v2: address block too short for INET6", "short INET6 block");
    n = raw_v2(buf, 0x21, 0x11, body, 1002);	/* 12 + 330 empty TLVs */
    is_str(parse(buf, n, &h), "PROXY v2: header longer than the configured limit",
	   "1,018-byte header over the 536-byte default");
    is_str(proxy_header_parse(buf, n, 2048, &h), NULL, "accepted with a 2,048-byte limit");
    body[12] = 0x01, body[13] = 0x00, body[14] = 0x09;	/* ALPN claims 9, has 2 */
    n = raw_v2(buf, 0x21, 0x11, body, 17);
    is_str(parse(buf, n, &h), "PROXY v2: TLV overruns the header", "TLV overrunning the block");
    n = raw_v2(buf, 0x21, 0x11, body, 14);
    is_str(parse(buf, n, &h), "PROXY v2: TLV header truncated", "TLV header cut short");
    body[12] = 0x05, body[13] = 0x00, body[14] = 129;	/* UNIQUE_ID of 129 */
    n = raw_v2(buf, 0x21, 0x11, body, 15 + 129);
    is_str(parse(buf, n, &h), "PROXY v2: UNIQUE_ID TLV longer than 128 bytes", "UNIQUE_ID 129");
    body[12] = 0x20, body[13] = 0x00, body[14] = 3;	/* SSL TLV of 3 bytes */
    n = raw_v2(buf, 0x21, 0x11, body, 15 + 3);
    is_str(parse(buf, n, &h), "PROXY v2: SSL TLV shorter than 5 bytes", "SSL TLV too short");
    body[14] = 8;				/* SSL sub-TLV overrunning */
    body[20] = 0x21, body[21] = 0, body[22] = 40;
    n = raw_v2(buf, 0x21, 0x11, body, 15 + 8);
    is_str(parse(buf, n, &h), "PROXY v2: SSL sub-TLV overruns the SSL TLV", "SSL sub-TLV overrun");
    body[12] = 0x02, body[13] = 0, body[14] = 3;	/* AUTHORITY "a\0b" */
    memcpy(body + 15, "a\0b", 3);
    n = raw_v2(buf, 0x21, 0x11, body, 18);
    is_str(parse(buf, n, &h), "PROXY v2: NUL byte in a text TLV", "NUL inside AUTHORITY");
    body[12] = 0x03, body[13] = 0, body[14] = 2;
    n = raw_v2(buf, 0x21, 0x11, body, 17);
    is_str(parse(buf, n, &h), "PROXY v2: CRC32C TLV is not 4 bytes", "CRC32C of 2 bytes");
    body[12] = 0xEE, body[13] = 0, body[14] = 5;	/* Azure LINKID 0x01020304 LE */
    memcpy(body + 15, "\x01\x04\x03\x02\x01", 5);
    body[20] = 0xEA, body[21] = 0, body[22] = 5;	/* AWS vpce "abcd" */
    memcpy(body + 23, "\x01" "abcd", 5);
    body[28] = 0xE1, body[29] = 0, body[30] = 1;	/* custom, skipped */
    n = raw_v2(buf, 0x21, 0x11, body, 32);
    is_str(parse(buf, n, &h), NULL, "Azure, AWS and a custom TLV parse");
    ok(h.has_azure_linkid && h.azure_linkid == 0x01020304, "Azure LINKID, little-endian");
    is_str(h.aws_vpce_id, "abcd", "AWS VPC endpoint id");
    is_int(h.other_tlvs, 1, "custom TLV skipped and counted");
    memcpy(body + 32, "\x04\x00\x00" "\x04\x00\x00" "\xE1\x00\x00", 9);	/* NOOP, NOOP, custom */
    n = raw_v2(buf, 0x21, 0x11, body, 41);
    is_str(parse(buf, n, &h), NULL, "NOOP and custom types may repeat");
    is_int(h.other_tlvs, 4, "each counted");
    memcpy(body + 32, "\xEA\x00\x02\x01x", 5);	/* a second AWS vpce id */
    n = raw_v2(buf, 0x21, 0x11, body, 37);
    is_str(parse(buf, n, &h), "PROXY v2: a TLV that may appear once appears twice",
	   "two AWS VPC endpoint ids");
    memcpy(body + 32, "\xEA\x00\x02\x02x", 5);	/* another AWS subtype */
    n = raw_v2(buf, 0x21, 0x11, body, 37);
    is_str(parse(buf, n, &h), NULL, "another AWS subtype is not a duplicate");
    for (int type = 0; type < 5; type++) {
	static const unsigned char types[] = {0x01, 0x02, 0x05, 0x30, 0xEE};
	static const char *const names[] = {"ALPN", "AUTHORITY", "UNIQUE_ID", "NETNS", "Azure"};
	size_t  one = types[type] == 0xEE ? 8 : 4;

	memcpy(body + 12, types[type] == 0xEE ? "\xEE\x00\x05\x01\x01\x02\x03"
	       : "\x00\x00\x01x", one);
	body[12] = types[type];
	memcpy(body + 12 + one, body + 12, one);
	n = raw_v2(buf, 0x21, 0x11, body, 12 + 2 * one);
	is_str(parse(buf, n, &h), "PROXY v2: a TLV that may appear once appears twice",
	       "two %s TLVs: refused (readers would disagree on which counts)", names[type]);
	n = raw_v2(buf, 0x21, 0x11, body, 12 + one);
	is_str(parse(buf, n, &h), NULL, "one %s TLV: accepted", names[type]);
    }
    memcpy(body + 12, "\x20\x00\x0d" "\x01\x00\x00\x00\x00" "\x22\x00\x01" "a"
	   "\x22\x00\x01" "b", 16);		/* SSL with two CN */
    n = raw_v2(buf, 0x21, 0x11, body, 28);
    is_str(parse(buf, n, &h), "PROXY v2: an SSL sub-TLV appears twice", "two SSL CN sub-TLVs");
    memcpy(body + 12, "\x20\x00\x05" "\x01\x00\x00\x00\x00" "\x20\x00\x05"
	   "\x01\x00\x00\x00\x00", 16);		/* two SSL TLVs */
    n = raw_v2(buf, 0x21, 0x11, body, 28);
    is_str(parse(buf, n, &h), "PROXY v2: a TLV that may appear once appears twice",
	   "two SSL TLVs");
    memset(body, 0, sizeof(body));
    n = raw_v2(buf, 0x20, 0x11, body, 5);	/* LOCAL: block ignored */
    is_str(parse(buf, n, &h), NULL, "LOCAL with a short block: accepted, block ignored");
    memcpy(buf, "\r\n\r\n\0\r\nQUIX\n", 12);
    is_str(parse(buf, 16, &h), "PROXY v2: bad signature", "bad v2 signature");
}

static void test_reader(void)
{
    struct proxy_header in, h;
    struct proxy_reader r;
    unsigned char buf[512];
    char    rest[64];
    int     sv[2];
    size_t  n;
    ssize_t got;

    fill_inet(&in);
    n = proxy_build_v2(&in, PROXY_BUILD_CRC32C, buf, sizeof(buf));
    memcpy(buf + n, "EHLO x\r\n", 8);
    socketpair(AF_UNIX, SOCK_STREAM, 0, sv);
    ok(write(sv[0], buf, 7) == 7, "7 bytes of a v2 header written");
    proxy_reader_init(&r, PROXY_V2_DEFAULT_MAX);
    is_str(proxy_reader_step(&r, sv[1], &h), proxy_header_incomplete, "step: incomplete");
    ok(write(sv[0], buf + 7, n + 8 - 7) == (ssize_t) (n + 8 - 7), "the rest and an EHLO");
    is_str(proxy_reader_step(&r, sv[1], &h), NULL, "step: header complete");
    proxy_reader_free(&r);
    got = read(sv[1], rest, sizeof(rest));
    ok(got == 8 && memcmp(rest, "EHLO x\r\n", 8) == 0, "v2: the EHLO is still in the socket");

    n = proxy_build_v1(&in, (char *) buf, sizeof(buf));
    is_str((char *) buf, "PROXY TCP4 198.51.100.9 10.0.20.5 40000 587\r\n", "v1 built");
    memcpy(buf + n, "EHLO y\r\n", 8);
    ok(write(sv[0], buf, n + 8) == (ssize_t) (n + 8), "v1 header and EHLO written at once");
    is_str(proxy_reader_read(sv[1], 1000, PROXY_V2_DEFAULT_MAX, &h), NULL, "v1 read");
    got = read(sv[1], rest, sizeof(rest));
    ok(got == 8 && memcmp(rest, "EHLO y\r\n", 8) == 0, "v1: the EHLO is still in the socket");

    ok(write(sv[0], "PROXY TCP4 1.2", 14) == 14, "a v1 header cut short");
    is_str(proxy_reader_read(sv[1], 100, PROXY_V2_DEFAULT_MAX, &h),
	   "timeout waiting for the PROXY header", "times out");
    close(sv[0]);
    close(sv[1]);
    socketpair(AF_UNIX, SOCK_STREAM, 0, sv);
    ok(write(sv[0], "QUIT\r\n", 6) == 6, "no header at all");
    close(sv[0]);
    is_str(proxy_reader_read(sv[1], 1000, PROXY_V2_DEFAULT_MAX, &h),
	   "no PROXY header (neither v1 \"PROXY \" nor the v2 signature)",
	   "refused at the first bytes");
    close(sv[1]);
    is_int(proxy_crc32c(0, "123456789", 9), 0xE3069283, "CRC-32C check value");
}

/* which headers name a client, and v4-mapped sources */
static void test_client(void)
{
    static const unsigned char zero[216];
    struct proxy_header h;
    unsigned char buf[300];
    char    text[64];
    size_t  n;

    is_str(parse_str("PROXY TCP4 192.0.2.7 10.0.20.5 56324 25\r\n", &h), NULL, "TCP4");
    ok(proxy_header_has_client(&h), "TCP4 names a client");
    is_str(parse_str("PROXY UNKNOWN\r\n", &h), NULL, "UNKNOWN");
    ok(!proxy_header_has_client(&h), "v1 UNKNOWN names no client");
    is_str(parse_str("PROXY UNKNOWN 192.0.2.7 10.0.20.5 56324 25\r\n", &h), NULL,
	   "UNKNOWN with addresses");
    ok(!proxy_header_has_client(&h), "v1 UNKNOWN with addresses still names no client");
    n = raw_v2(buf, 0x20, 0x11, "\xc0\x00\x02\x07\x0a\x00\x14\x05\x9c\x40\x00\x19", 12);
    is_str(parse(buf, n, &h), NULL, "v2 LOCAL with an INET block");
    ok(!proxy_header_has_client(&h), "v2 LOCAL names no client, whatever its block says");
    n = raw_v2(buf, 0x21, 0x00, "", 0);
    is_str(parse(buf, n, &h), NULL, "v2 PROXY UNSPEC");
    ok(!proxy_header_has_client(&h), "v2 PROXY UNSPEC names no client");
    n = raw_v2(buf, 0x21, 0x31, zero, sizeof(zero));
    is_str(parse(buf, n, &h), NULL, "v2 PROXY UNIX (haproxy's unix@ frontends)");
    ok(!proxy_header_has_client(&h), "v2 PROXY UNIX names no client");

    n = raw_v2(buf, 0x21, 0x10, "\xc0\x00\x02\x07\x0a\x00\x14\x05\x9c\x40\x00\x19", 12);
    is_str(parse(buf, n, &h), NULL, "v2 PROXY INET over an UNSPEC transport");
    ok(!proxy_header_has_client(&h), "UNSPEC transport: addresses ignored, no client");
    n = raw_v2(buf, 0x21, 0x12, "\xc0\x00\x02\x07\x0a\x00\x14\x05\x9c\x40\x00\x19", 12);
    is_str(parse(buf, n, &h), NULL, "v2 PROXY INET over DGRAM");
    ok(!proxy_header_has_client(&h), "DGRAM: a UDP flow is not this connection's client");
    n = raw_v2(buf, 0x21, 0x11, "\xc0\x00\x02\x07\x0a\x00\x14\x05\x9c\x40\x00\x19", 12);
    is_str(parse(buf, n, &h), NULL, "v2 PROXY INET over STREAM");
    ok(proxy_header_has_client(&h), "STREAM: the client");

    is_str(parse_str("PROXY TCP6 ::ffff:192.0.2.7 ::ffff:10.0.20.5 4000 25\r\n", &h), NULL,
	   "TCP6 with v4-mapped addresses");
    proxy_header_unmap(&h);
    inet_ntop(AF_INET, &h.src.in.sin_addr, text, sizeof(text));
    ok(h.family == AF_INET && h.src.sa.sa_family == AF_INET && h.dst.sa.sa_family == AF_INET
       && ntohs(h.src.in.sin_port) == 4000 && ntohs(h.dst.in.sin_port) == 25,
       "unmapped to IPv4, ports kept");
    is_str(text, "192.0.2.7", "the IPv4 address it is");
    ok(proxy_header_has_client(&h), "still names a client");
    is_str(parse_str("PROXY TCP6 ::ffff:192.0.2.8 2001:db8::1 4000 25\r\n", &h), NULL,
	   "TCP6, a mapped source, a native IPv6 destination");
    proxy_header_unmap(&h);
    inet_ntop(AF_INET, &h.dst.in.sin_addr, text, sizeof(text));
    ok(h.family == AF_INET && h.dst.sa.sa_family == AF_INET && ntohs(h.dst.in.sin_port) == 25,
       "the header is IPv4: its destination too (helper-123: a re-emitted header was "
       "IPv4 with the IPv6 destination's bytes)");
    is_str(text, "0.0.0.0", "the destination 0.0.0.0, port kept");
    is_str(parse_str("PROXY TCP6 2001:db8::7 ::ffff:10.0.20.5 4000 25\r\n", &h), NULL, "TCP6");
    proxy_header_unmap(&h);
    ok(h.family == AF_INET6 && h.src.sa.sa_family == AF_INET6 && h.dst.sa.sa_family == AF_INET6,
       "a real IPv6 source is left alone");
    is_str(parse_str("PROXY TCP6 ::192.0.2.7 ::1 4000 25\r\n", &h), NULL, "TCP6 v4-compatible");
    proxy_header_unmap(&h);
    ok(h.family == AF_INET6, "v4-compatible (deprecated) is not v4-mapped: left alone");
}

/* sockaddr for an address text (IPv4, IPv6, or "unix") */

static union addr_sockaddr peer_of(const char *text)
{
    union addr_sockaddr sa;

    memset(&sa, 0, sizeof(sa));
    if (strcmp(text, "unix") == 0)
	sa.sa.sa_family = AF_UNIX;
    else if (strchr(text, ':') != NULL) {
	sa.in6.sin6_family = AF_INET6;
	inet_pton(AF_INET6, text, &sa.in6.sin6_addr);
    } else {
	sa.in.sin_family = AF_INET;
	inet_pton(AF_INET, text, &sa.in.sin_addr);
    }
    return (sa);
}

/*
 * test_vet - a source no client of that balancer can have is struck out:
 * unspecified from anyone, loopback from a balancer not on this host
 * (mapped or not, either side), whatever the header's form.
 */
static void test_vet(void)
{
    static const struct {
	const char *header, *balancer;
	int     client;
    } cases[] = {
	{"PROXY TCP4 192.0.2.7 10.0.20.5 4000 25\r\n", "10.0.20.3", 1},
	{"PROXY TCP4 192.0.2.7 10.0.20.5 4000 25\r\n", "127.0.0.1", 1},
	{"PROXY TCP4 0.0.0.0 10.0.20.5 4000 25\r\n", "10.0.20.3", 0},
	{"PROXY TCP4 0.0.0.0 10.0.20.5 4000 25\r\n", "127.0.0.1", 0},
	{"PROXY TCP6 :: ::1 4000 25\r\n", "127.0.0.1", 0},
	{"PROXY TCP6 ::ffff:0.0.0.0 ::1 4000 25\r\n", "::1", 0},
	{"PROXY TCP4 127.0.0.1 10.0.20.5 4000 25\r\n", "10.0.20.3", 0},
	{"PROXY TCP4 127.9.8.7 10.0.20.5 4000 25\r\n", "10.0.20.3", 0},
	{"PROXY TCP6 ::1 2001:db8::5 4000 25\r\n", "2001:db8::3", 0},
	{"PROXY TCP6 ::ffff:127.0.0.1 ::1 4000 25\r\n", "10.0.20.3", 0},
	{"PROXY TCP6 ::ffff:127.0.0.1 ::1 4000 25\r\n", "::ffff:10.0.20.3", 0},
	{"PROXY TCP4 127.0.0.1 10.0.20.5 4000 25\r\n", "127.0.0.1", 1},
	{"PROXY TCP4 127.0.0.2 10.0.20.5 4000 25\r\n", "127.0.0.4", 1},
	{"PROXY TCP6 ::1 ::1 4000 25\r\n", "::1", 1},
	{"PROXY TCP4 127.0.0.1 10.0.20.5 4000 25\r\n", "::ffff:127.0.0.1", 1},
	{"PROXY TCP4 127.0.0.1 10.0.20.5 4000 25\r\n", "unix", 1},
	{"PROXY TCP6 ::2 ::1 4000 25\r\n", "10.0.20.3", 1},
	{"PROXY TCP4 128.0.0.1 10.0.20.5 4000 25\r\n", "10.0.20.3", 1},
	{"PROXY UNKNOWN\r\n", "10.0.20.3", 0},
    };
    struct proxy_header h;
    char    label[160];

    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
	union addr_sockaddr bal = peer_of(cases[i].balancer);
	const char *why;

	snprintf(label, sizeof(label), "%.*s from %s: %s", (int) strcspn(cases[i].header, "\r"),
		 cases[i].header, cases[i].balancer, cases[i].client ? "a client" : "no client");
	if (parse_str(cases[i].header, &h) != NULL) {
	    ok(0, "%s (parses)", label);
	    continue;
	}
	why = proxy_header_vet(&h, &bal);
	ok(proxy_header_has_client(&h) == cases[i].client
	   && (why == NULL) == (cases[i].client || h.local), "%s", label);
    }
}

int     main(void)
{
    test_client();
    test_vet();
    test_v1_good();
    test_v1_bad();
    test_v2_round_trip();
    test_v2_bad();
    test_v2_local_checked();
    test_reader();
    return (tap_done());
}
