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
    is_int(decode_cte_parse("Quoted-Printable"), DECODE_QP, "encoding names in any case");
    is_int(decode_cte_parse("binary"), DECODE_IDENTITY, "binary is the bytes as they are");
    return (tap_done());
}
