/*
 * NAME
 *	decode 3
 * SUMMARY
 *	Content-Transfer-Encoding decoding for attachments, incremental
 * SYNOPSIS
 *	#include "decode.h"
 *
 *	enum decode_cte decode_cte_parse(token)
 *	void	decode_init(&state, cte)
 *	size_t	decode_more(&state, in, len, out)
 *	size_t	decode_finish(&state, out)
 *	size_t	decode_crlf(&last_cr, in, len, out)
 * DESCRIPTION
 *	An attachment's bytes are its part's body with the transfer
 *	encoding undone and nothing else: no charset conversion, no
 *	line-ending change (Dovecot's message_decoder converts text to
 *	UTF-8, which is right for the text and html fields and wrong for
 *	a file). The part's body arrives in blocks split anywhere, so the
 *	state carries what a block boundary cut in half.
 *
 *	Decoding follows what Python's email package returns for
 *	get_payload(decode=True), so that a consumer checking our bytes
 *	with it agrees, malformed input included:
 *
 *	base64 (binascii.a2b_base64, not strict): characters outside
 *	the alphabet are skipped; a pad ends the data once it completes a
 *	quantum ("xx==", "xxx="), and is ignored elsewhere; a final
 *	partial quantum of 2 or 3 characters gives its 1 or 2 bytes. A
 *	single dangling character is dropped (Python returns the
 *	undecoded text in that one case).
 *
 *	quoted-printable (binascii.a2b_qp): "=XY" (either case) is the
 *	byte; "=" at the end of a line is a soft line break ("=" CR
 *	skips to the next LF); "==" is "="; any other "=" is itself. Hard
 *	line breaks and trailing white space are kept as they are.
 *
 *	Anything else (7bit, 8bit, binary, unknown names, uuencode) is
 *	the body as it is.
 *
 *	decode_more() writes at most DECODE_OUT_MAX(len) bytes to out,
 *	decode_finish() at most 2.
 *
 *	decode_crlf() makes every bare LF a CRLF (at most
 *	DECODE_CRLF_MAX(len) bytes out; last_cr carries a CR that ended
 *	the previous block). A message arrives with CRLF line ends, but
 *	Dovecot hands a transaction's second recipient the first one's
 *	saved copy, which the mailbox may keep with LF: the event must
 *	not depend on which recipient came first.
 * DIAGNOSTICS
 *	None: every input decodes to something.
 */

#include <string.h>
#include <strings.h>

#include "decode.h"

enum { QP_TEXT, QP_EQ, QP_EQ_HEX, QP_SKIP };

enum decode_cte decode_cte_parse(const char *token)
{
    if (strcasecmp(token, "base64") == 0)
	return (DECODE_BASE64);
    if (strcasecmp(token, "quoted-printable") == 0)
	return (DECODE_QP);
    return (DECODE_IDENTITY);
}

void    decode_init(struct decode_state *st, enum decode_cte cte)
{
    memset(st, 0, sizeof(*st));
    st->cte = cte;
}

static int decode_hex(unsigned char c)
{
    if (c >= '0' && c <= '9')
	return (c - '0');
    if (c >= 'A' && c <= 'F')
	return (c - 'A' + 10);
    if (c >= 'a' && c <= 'f')
	return (c - 'a' + 10);
    return (-1);
}

/*
 * decode_b64_table - the value of each base64 character, DECODE_B64_PAD
 * for '=', DECODE_B64_SKIP for anything outside the alphabet: one load
 * per character instead of a chain of comparisons (base64 attachments
 * are most of what the plugin decodes).
 */
#define DECODE_B64_SKIP	0x80
#define DECODE_B64_PAD	0x40

#define SK DECODE_B64_SKIP
#define PD DECODE_B64_PAD
static const unsigned char decode_b64_table[256] = {
    SK, SK, SK, SK, SK, SK, SK, SK, SK, SK, SK, SK, SK, SK, SK, SK,
    SK, SK, SK, SK, SK, SK, SK, SK, SK, SK, SK, SK, SK, SK, SK, SK,
    SK, SK, SK, SK, SK, SK, SK, SK, SK, SK, SK, 62, SK, SK, SK, 63,
    52, 53, 54, 55, 56, 57, 58, 59, 60, 61, SK, SK, SK, PD, SK, SK,
    SK,  0,  1,  2,  3,  4,  5,  6,  7,  8,  9, 10, 11, 12, 13, 14,
    15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25, SK, SK, SK, SK, SK,
    SK, 26, 27, 28, 29, 30, 31, 32, 33, 34, 35, 36, 37, 38, 39, 40,
    41, 42, 43, 44, 45, 46, 47, 48, 49, 50, 51, SK, SK, SK, SK, SK,
    SK, SK, SK, SK, SK, SK, SK, SK, SK, SK, SK, SK, SK, SK, SK, SK,
    SK, SK, SK, SK, SK, SK, SK, SK, SK, SK, SK, SK, SK, SK, SK, SK,
    SK, SK, SK, SK, SK, SK, SK, SK, SK, SK, SK, SK, SK, SK, SK, SK,
    SK, SK, SK, SK, SK, SK, SK, SK, SK, SK, SK, SK, SK, SK, SK, SK,
    SK, SK, SK, SK, SK, SK, SK, SK, SK, SK, SK, SK, SK, SK, SK, SK,
    SK, SK, SK, SK, SK, SK, SK, SK, SK, SK, SK, SK, SK, SK, SK, SK,
    SK, SK, SK, SK, SK, SK, SK, SK, SK, SK, SK, SK, SK, SK, SK, SK,
    SK, SK, SK, SK, SK, SK, SK, SK, SK, SK, SK, SK, SK, SK, SK, SK,
};
#undef SK
#undef PD

/* decode_b64_char - one character of the slow path (any state) */

static void decode_b64_char(struct decode_state *st, unsigned char c, unsigned char **o)
{
    unsigned int v = decode_b64_table[c];

    if (v == DECODE_B64_PAD) {
	/* as a2b_base64: a pad completing the quantum ends the data */
	if (st->quad_pos >= 2 && st->quad_pos + ++st->pads >= 4)
	    st->done = 1;
	return;
    }
    if (v == DECODE_B64_SKIP)
	return;
    st->pads = 0;
    switch (st->quad_pos) {
    case 0:
	st->left = v;
	break;
    case 1:
	*(*o)++ = (unsigned char) (st->left << 2 | v >> 4);
	st->left = v & 0x0f;
	break;
    case 2:
	*(*o)++ = (unsigned char) (st->left << 4 | v >> 2);
	st->left = v & 0x03;
	break;
    case 3:
	*(*o)++ = (unsigned char) (st->left << 6 | v);
	break;
    }
    st->quad_pos = (st->quad_pos + 1) % 4;
}

/*
 * decode_base64 - at a quantum boundary, four alphabet characters in a
 * row are three bytes at once (what the slow path would give: no pad
 * pending, none seen); anything else goes one character at a time.
 */
static size_t decode_base64(struct decode_state *st, const unsigned char *in, size_t len,
			            unsigned char *out)
{
    unsigned char *o = out;
    size_t  i = 0;

    while (i < len && !st->done) {
	if (st->quad_pos == 0 && i + 4 <= len) {
	    unsigned int a = decode_b64_table[in[i]], b = decode_b64_table[in[i + 1]],
	            c = decode_b64_table[in[i + 2]], d = decode_b64_table[in[i + 3]];

	    if (((a | b | c | d) & (DECODE_B64_SKIP | DECODE_B64_PAD)) == 0) {
		o[0] = (unsigned char) (a << 2 | b >> 4);
		o[1] = (unsigned char) (b << 4 | c >> 2);
		o[2] = (unsigned char) (c << 6 | d);
		o += 3;
		i += 4;
		st->pads = 0;
		continue;
	    }
	}
	decode_b64_char(st, in[i++], &o);
    }
    return ((size_t) (o - out));
}

static size_t decode_qp(struct decode_state *st, const unsigned char *in, size_t len,
			        unsigned char *out)
{
    unsigned char *o = out;

    for (size_t i = 0; i < len; i++) {
	unsigned char c = in[i];

	switch (st->state) {
	case QP_SKIP:				/* "=" CR ... up to LF */
	    if (c == '\n')
		st->state = QP_TEXT;
	    continue;
	case QP_EQ:
	    if (c == '\n') {
		st->state = QP_TEXT;
		continue;
	    }
	    if (c == '\r') {
		st->state = QP_SKIP;
		continue;
	    }
	    if (c == '=') {			/* "==": one "=" */
		*o++ = '=';
		st->state = QP_TEXT;
		continue;
	    }
	    if (decode_hex(c) >= 0) {
		st->held = c;
		st->state = QP_EQ_HEX;
		continue;
	    }
	    *o++ = '=';				/* a lone "=": itself */
	    st->state = QP_TEXT;
	    break;				/* and c as text */
	case QP_EQ_HEX:
	    if (decode_hex(c) >= 0) {
		*o++ = (unsigned char) (decode_hex(st->held) << 4 | decode_hex(c));
		st->state = QP_TEXT;
		continue;
	    }
	    *o++ = '=';				/* "=X" and a non-hex: as is */
	    *o++ = st->held;
	    st->state = QP_TEXT;
	    break;
	}
	if (c == '=')
	    st->state = QP_EQ;
	else
	    *o++ = c;
    }
    return ((size_t) (o - out));
}

size_t  decode_more(struct decode_state *st, const unsigned char *in, size_t len,
		            unsigned char *out)
{
    switch (st->cte) {
    case DECODE_BASE64:
	return (decode_base64(st, in, len, out));
    case DECODE_QP:
	return (decode_qp(st, in, len, out));
    case DECODE_IDENTITY:
	break;
    }
    memcpy(out, in, len);
    return (len);
}

size_t  decode_finish(struct decode_state *st, unsigned char *out)
{
    size_t  n = 0;

    /* a final "=" is dropped, a final "=X" kept, as binascii does */
    if (st->cte == DECODE_QP && st->state == QP_EQ_HEX) {
	out[n++] = '=';
	out[n++] = st->held;
    }
    decode_init(st, st->cte);
    return (n);
}

/*
 * decode_crlf - runs up to each LF are copied whole (memchr finds the
 * LF); only the byte before an LF decides whether a CR goes in.
 */
size_t  decode_crlf(int *last_cr, const unsigned char *in, size_t len, unsigned char *out)
{
    const unsigned char *p = in, *end = in + len, *lf;
    unsigned char *o = out;

    while (p < end) {
	size_t  run;

	if ((lf = memchr(p, '\n', (size_t) (end - p))) == NULL) {
	    run = (size_t) (end - p);
	    memcpy(o, p, run);
	    o += run;
	    *last_cr = end[-1] == '\r';
	    break;
	}
	run = (size_t) (lf - p);
	memcpy(o, p, run);
	o += run;
	if (!(run > 0 ? p[run - 1] == '\r' : *last_cr))
	    *o++ = '\r';
	*o++ = '\n';
	*last_cr = 0;
	p = lf + 1;
    }
    return ((size_t) (o - out));
}
