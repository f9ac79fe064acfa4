/* proxy_header_fuzz - libFuzzer target for common/proxy_header.c and
 * proxy_build.c: the bytes a client sends before anything else. Every
 * input is parsed, refused, or incomplete; a parsed header has a sane
 * length and survives a rebuild (v1 and v2) and a second parse; vetting
 * its client only ever takes one away. */

#include "build_config.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "proxy_header.h"

int     LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void rebuild(const struct proxy_header *hdr)
{
    unsigned char buf[PROXY_HEADER_BUF];
    struct proxy_header again;
    size_t  n;

    if ((n = proxy_build_v2(hdr, PROXY_BUILD_CRC32C, buf, sizeof(buf))) == 0)
	abort();				/* what we parsed must fit */
    if (proxy_header_parse(buf, n, sizeof(buf), &again) != NULL || again.length != n)
	abort();
    if (again.family != hdr->family || again.local != hdr->local)
	abort();
    if ((n = proxy_build_v1(hdr, (char *) buf, sizeof(buf))) == 0
	|| proxy_header_parse(buf, n, sizeof(buf), &again) != NULL)
	abort();
}

/*
 * vet - proxy_header_vet() against a balancer taken from the header's own
 * destination (any family): it only ever takes a client away, never
 * gives one, and says why when it does.
 */
static void vet(const struct proxy_header *hdr)
{
    struct proxy_header v = *hdr;
    int     had = proxy_header_has_client(&v);
    const char *why = proxy_header_vet(&v, &v.dst);

    if (proxy_header_has_client(&v) && !had)
	abort();
    if ((why != NULL) != (had && !proxy_header_has_client(&v)))
	abort();
    if (why != NULL && (why != v.not_client || strlen(why) == 0))
	abort();
}

int     LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct proxy_header hdr;
    const char *err;

    err = proxy_header_parse(data, size, PROXY_HEADER_BUF, &hdr);
    if (err == NULL) {
	if (hdr.length == 0 || hdr.length > size)
	    abort();
	rebuild(&hdr);
	vet(&hdr);
    } else if (err == proxy_header_incomplete) {
	if (hdr.length != 0 && hdr.length <= size)
	    abort();				/* it said more bytes were needed */
    } else if (strlen(err) == 0) {
	abort();
    }
    (void) proxy_header_parse(data, size, PROXY_V2_DEFAULT_MAX, &hdr);
    return (0);
}
