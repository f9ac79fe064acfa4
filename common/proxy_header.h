#ifndef MXKIT_PROXY_HEADER_H
#define MXKIT_PROXY_HEADER_H

/* proxy_header - PROXY protocol v1/v2 parser, socket reader and builder. */

#include <stddef.h>
#include <stdint.h>

#include "addr.h"

#define PROXY_V1_MAX		107	/* longest v1 line, CRLF included */
#define PROXY_V2_FIXED		16	/* signature, ver/cmd, fam, len */
#define PROXY_V2_DEFAULT_MAX	536	/* default limit on a whole v2 header */
#define PROXY_HEADER_BUF	(PROXY_V2_FIXED + 65535)

struct proxy_ssl {
    int     present;
    uint8_t client;			/* PP2_CLIENT_SSL, _CERT_CONN, _CERT_SESS */
    uint32_t verify;			/* 0: client certificate verified */
    char    version[64];
    char    cn[256];
    char    cipher[128];
    char    sig_alg[64];
    char    key_alg[64];
};

struct proxy_header {
    int     version;			/* 1 or 2 */
    int     local;			/* v2 LOCAL or v1 UNKNOWN: no addresses */
    int     family;			/* AF_UNSPEC, AF_INET, AF_INET6, AF_UNIX */
    int     dgram;			/* v2 transport DGRAM */
    int     transport;			/* 0 UNSPEC, 1 STREAM (v1 TCP4/6), 2 DGRAM */
    union addr_sockaddr src;
    union addr_sockaddr dst;
    size_t  length;			/* bytes on the wire */
    /* v2 TLVs */
    int     has_crc32c;
    char    alpn[256];
    char    authority[256];
    unsigned char unique_id[128];
    size_t  unique_id_len;
    struct proxy_ssl ssl;
    char    netns[256];
    char    aws_vpce_id[128];
    int     has_azure_linkid;
    uint32_t azure_linkid;
    int     other_tlvs;			/* unknown types, NOOP: skipped */
    const char *not_client;		/* proxy_header_vet(): why src is none */
    unsigned tlv_seen;			/* parser: known types seen once */
};

/* A parse result that is not an error: call again with more bytes. */
extern const char proxy_header_incomplete[];

const char *proxy_header_parse(const void *buf, size_t len, size_t v2_max,
			               struct proxy_header *hdr);
int     proxy_header_has_client(const struct proxy_header *hdr);
const char *proxy_header_vet(struct proxy_header *hdr, const union addr_sockaddr *balancer);
void    proxy_header_unmap(struct proxy_header *hdr);

/* Reading from a socket without consuming a byte past the header. */
struct proxy_reader {
    unsigned char *buf;			/* v2_max bytes (at least 107) */
    size_t  size;
    size_t  have;
    size_t  v2_max;
};

void    proxy_reader_init(struct proxy_reader *reader, size_t v2_max);
void    proxy_reader_free(struct proxy_reader *reader);
const char *proxy_reader_step(struct proxy_reader *reader, int fd,
			              struct proxy_header *hdr);
const char *proxy_reader_read(int fd, int timeout_ms, size_t v2_max,
			              struct proxy_header *hdr);

/* Building headers (re-emit mode, tests); 0 when it does not fit. */
#define PROXY_BUILD_CRC32C	(1 << 0)

size_t  proxy_build_v1(const struct proxy_header *hdr, char *buf, size_t size);
size_t  proxy_build_v2(const struct proxy_header *hdr, int flags,
		               unsigned char *buf, size_t size);

uint32_t proxy_crc32c(uint32_t crc, const void *buf, size_t len);

#endif
