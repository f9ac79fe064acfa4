/* dkim_canon_fuzz - libFuzzer target for milter-dkim/canon.c. The input's
 * first two octets seed the chunk sizes, the rest is a body (and, up to
 * its first NUL or LF, a header value). Checked, for simple and relaxed:
 * streaming in chunks of random sizes gives the same canonical text and
 * the same SHA-256 as one chunk; canonicalizing the canonical text again
 * changes nothing (idempotent); relaxed output has no HTAB, no SP run and
 * no SP before a CRLF; the output ends with CRLF unless relaxed and empty. The
 * relaxed header form is idempotent and has no WSP run either. */

#include "build_config.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "canon.h"
#include "xalloc.h"

int     LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

struct text {
    unsigned char *data;
    size_t  len;
};

static void sink(void *context, const unsigned char *data, size_t len)
{
    struct text *t = context;

    t->data = xrealloc(t->data, t->len + len + 1);
    memcpy(t->data + t->len, data, len);
    t->len += len;
}

/* canon - the canonical body; chunk sizes from a tiny LCG when seed != 0 */

static struct text canon(const uint8_t *in, size_t len, int relaxed, unsigned seed)
{
    struct canon_body b;
    struct text t = {xmalloc(1), 0};
    size_t  off = 0;

    canon_body_init(&b, relaxed, sink, &t);
    while (off < len) {
	size_t  n = len - off;

	if (seed) {
	    seed = seed * 1103515245 + 12345;
	    n = 1 + (seed >> 16) % (n < 97 ? n : 97);
	}
	canon_body_update(&b, in + off, n);
	off += n;
    }
    canon_body_final(&b);
    return (t);
}

static void digest(const struct text *t, unsigned char out[32])
{
    unsigned len;

    EVP_Digest(t->data, t->len, out, &len, canon_sha256(), NULL);
}

static void check_body(const uint8_t *in, size_t len, int relaxed, unsigned seed)
{
    struct text one = canon(in, len, relaxed, 0), many = canon(in, len, relaxed, seed | 1);
    struct text again = canon(one.data, one.len, relaxed, 0);
    unsigned char d1[32], d2[32];

    digest(&one, d1);
    digest(&many, d2);
    if (one.len != many.len || memcmp(one.data, many.data, one.len) || memcmp(d1, d2, 32))
	abort();				/* chunking changed the result */
    if (again.len != one.len || memcmp(again.data, one.data, one.len))
	abort();				/* not idempotent */
    if (one.len ? one.len < 2 || memcmp(one.data + one.len - 2, "\r\n", 2) : !relaxed)
	abort();				/* must end with CRLF */
    for (size_t i = 0; relaxed && i < one.len; i++)
	if (one.data[i] == '\t' || (one.data[i] == ' ' && i + 1 < one.len
				      && (one.data[i + 1] == ' ' || (one.data[i + 1] == '\r'
				      && i + 2 < one.len && one.data[i + 2] == '\n'))))
	    abort();				/* HTAB, a WSP run, or SP before CRLF */
    free(one.data);
    free(many.data);
    free(again.data);
}

static void check_header(const uint8_t *in, size_t len)
{
    char   *value = xmalloc(len + 1), *first, *second;
    size_t  n = 0, l1, l2;

    for (size_t i = 0; i < len && in[i] && in[i] != '\n'; i++)
	value[n++] = (char) in[i];
    value[n] = 0;
    first = canon_header("X-Test ", value, 1, &l1);
    if (l1 < 9 || memcmp(first, "x-test:", 7) || memcmp(first + l1 - 2, "\r\n", 2))
	abort();
    first[l1 - 2] = 0;
    second = canon_header("x-test", first + 7, 1, &l2);
    second[l2 - 2] = 0;
    if (strcmp(first, second) != 0 || strstr(first, "  ") || strchr(first, '\t'))
	abort();				/* not idempotent, or a WSP run left */
    free(first);
    free(second);
    free(value);
}

int     LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    unsigned seed;

    if (size < 2)
	return (0);
    seed = data[0] << 8 | data[1];
    check_body(data + 2, size - 2, 0, seed);
    check_body(data + 2, size - 2, 1, seed);
    check_header(data + 2, size - 2);
    return (0);
}
