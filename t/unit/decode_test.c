/* decode_test - unit tests for lmtp-webhook/decode.c: every case is
 * decoded whole and split at every position (a block boundary may fall
 * anywhere), and must equal what Python's email package returns for
 * get_payload(decode=True) on the same body (the expected values were
 * produced with it, malformed cases included). */

#include "build_config.h"

#include <stdlib.h>
#include <string.h>

#include "decode.h"
#include "tap.h"

struct decode_case {
    const char *cte, *in, *want;
    size_t  want_len;
};

#define CASE(cte, in, want) { cte, in, want, sizeof(want) - 1 }

static const struct decode_case cases[] = {
    CASE("base64", "JVBERi0xLjQK", "%PDF-1.4\n"),
    CASE("BASE64", "AAEC\r\n/f7/", "\x00\x01\x02\xfd\xfe\xff"),
    CASE("base64", "QUJD\r\nRA==\r\n", "ABCD"),
    CASE("base64", "QUJDRA==QUJD", "ABCD"),		/* a complete pad ends it */
    CASE("base64", "QQ=QUJD", "A\x04\x14$"),		/* a pad inside: ignored */
    CASE("base64", "QUJ", "AB"),			/* missing padding */
    CASE("base64", "QU*J!D ", "AB\x43"),		/* junk skipped */
    CASE("base64", "QUJDR", "ABC"),	/* dangling char dropped (Python: undecoded) */
    CASE("quoted-printable", "caf=C3=A9 =E2=82=AC", "caf\xc3\xa9 \xe2\x82\xac"),
    CASE("quoted-printable", "a=\r\nb=\nc", "abc"),	/* soft line breaks */
    CASE("quoted-printable", "a \r\nb\t\r\n", "a \r\nb\t\r\n"),	/* kept as is */
    CASE("quoted-printable", "=0d=0A=ff", "\r\n\xff"),	/* lower case hex */
    CASE("quoted-printable", "a==b", "a=b"),
    CASE("quoted-printable", "=G1=", "=G1"),		/* bad escape; final "=" */
    CASE("quoted-printable", "=A", "=A"),
    CASE("quoted-printable", "=Ax", "=Ax"),
    CASE("quoted-printable", "x=\rjunk\ny", "xy"),	/* "=" CR skips to LF */
    CASE("quoted-printable", "=  \r\nx", "=  \r\nx"),
    CASE("8bit", "caf\xe9\r\n\xff\x80", "caf\xe9\r\n\xff\x80"),
    CASE("x-unknown", "=41", "=41"),
};

static int decode_split(const struct decode_case *c, size_t split)
{
    struct decode_state st;
    size_t  len = strlen(c->in), n = 0;
    unsigned char *out = malloc(DECODE_OUT_MAX(len) + 2);
    int     same;

    decode_init(&st, decode_cte_parse(c->cte));
    n += decode_more(&st, (const unsigned char *) c->in, split, out);
    n += decode_more(&st, (const unsigned char *) c->in + split, len - split, out + n);
    n += decode_finish(&st, out + n);
    same = n == c->want_len && memcmp(out, c->want, n) == 0;
    free(out);
    return (same);
}

/*
 * The byte-at-a-time decoders decode.c had before its fast paths (a
 * table, four characters at once, memchr for LF): the fast ones must
 * give the same bytes for any input split anywhere.
 */
static int ref_b64_value(unsigned char c)
{
    if (c >= 'A' && c <= 'Z')
	return (c - 'A');
    if (c >= 'a' && c <= 'z')
	return (c - 'a' + 26);
    if (c >= '0' && c <= '9')
	return (c - '0' + 52);
    return (c == '+' ? 62 : c == '/' ? 63 : -1);
}

static size_t ref_base64(const unsigned char *in, size_t len, unsigned char *out)
{
    unsigned char *o = out;
    unsigned int left = 0;
    int     quad_pos = 0, pads = 0, done = 0;

    for (size_t i = 0; i < len && !done; i++) {
	int     v;

	if (in[i] == '=') {
	    if (quad_pos >= 2 && quad_pos + ++pads >= 4)
		done = 1;
	    continue;
	}
	if ((v = ref_b64_value(in[i])) < 0)
	    continue;
	pads = 0;
	if (quad_pos == 0)
	    left = (unsigned int) v;
	else if (quad_pos == 1) {
	    *o++ = (unsigned char) (left << 2 | (unsigned int) v >> 4);
	    left = (unsigned int) v & 0x0f;
	} else if (quad_pos == 2) {
	    *o++ = (unsigned char) (left << 4 | (unsigned int) v >> 2);
	    left = (unsigned int) v & 0x03;
	} else
	    *o++ = (unsigned char) (left << 6 | (unsigned int) v);
	quad_pos = (quad_pos + 1) % 4;
    }
    return ((size_t) (o - out));
}

static size_t ref_crlf(const unsigned char *in, size_t len, unsigned char *out)
{
    unsigned char *o = out;
    int     last_cr = 0;

    for (size_t i = 0; i < len; i++) {
	if (in[i] == '\n' && !last_cr)
	    *o++ = '\r';
	*o++ = in[i];
	last_cr = in[i] == '\r';
    }
    return ((size_t) (o - out));
}

/* rand_input - mostly base64 lines, with pads, CR, LF and junk mixed in */

static size_t rand_input(unsigned char *buf, size_t max)
{
    static const char pick[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    size_t  len = (size_t) rand() % max;

    for (size_t i = 0; i < len; i++) {
	int     r = rand() % 100;

	buf[i] = r < 80 ? (unsigned char) pick[rand() % 64] : r < 85 ? '=' : r < 90 ? '\r'
	    : r < 95 ? '\n' : (unsigned char) (rand() % 256);
    }
    return (len);
}

/* rand_equal - one random input, cut into random blocks, both ways */

static int rand_equal(int crlf)
{
    unsigned char in[600], want[1300], got[1300 + 8];
    size_t  len = rand_input(in, sizeof(in)), n = 0, at = 0, wn;
    struct decode_state st;
    int     last_cr = 0;

    wn = crlf ? ref_crlf(in, len, want) : ref_base64(in, len, want);
    decode_init(&st, DECODE_BASE64);
    while (at < len) {
	size_t  block = 1 + (size_t) rand() % (len - at < 40 ? len - at : 40);

	if (rand() % 4 == 0)
	    block = len - at;
	n += crlf ? decode_crlf(&last_cr, in + at, block, got + n)
	    : decode_more(&st, in + at, block, got + n);
	at += block;
    }
    if (!crlf)
	n += decode_finish(&st, got + n);
    return (n == wn && memcmp(got, want, n) == 0);
}

int     main(void)
{
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
	const struct decode_case *c = &cases[i];
	int     all = 1;

	for (size_t split = 0; split <= strlen(c->in); split++)
	    all = decode_split(c, split) && all;
	ok(all, "%s %zu: same bytes as Python's email, split anywhere", c->cte, i);
    }
    {
	/* a CR ending one block and the LF starting the next are one CRLF */
	const char *in = "a\nb\r\nc\rd\n\n";
	const char *want = "a\r\nb\r\nc\rd\r\n\r\n";
	unsigned char out[64];
	int     all = 1;

	for (size_t split = 0; split <= strlen(in); split++) {
	    int     last_cr = 0;
	    size_t  n = decode_crlf(&last_cr, (const unsigned char *) in, split, out);

	    n += decode_crlf(&last_cr, (const unsigned char *) in + split, strlen(in) - split,
			     out + n);
	    all = all && n == strlen(want) && memcmp(out, want, n) == 0;
	}
	ok(all, "decode_crlf: bare LF becomes CRLF, CRLF and bare CR stay, split anywhere");
    }
    {
	int     same = 0, tries = 20000;

	srand(14);
	for (int i = 0; i < tries; i++)
	    same += rand_equal(0);
	is_int(same, tries, "base64 fast path: the bytes of the byte-at-a-time decoder, "
	       "random input and blocks");
	same = 0;
	for (int i = 0; i < tries; i++)
	    same += rand_equal(1);
	is_int(same, tries, "decode_crlf fast path: the bytes of the byte-at-a-time one, "
	       "random input and blocks");
    }
    is_int(decode_cte_parse("Quoted-Printable"), DECODE_QP, "encoding names in any case");
    is_int(decode_cte_parse("binary"), DECODE_IDENTITY, "binary is the bytes as they are");
    return (tap_done());
}
