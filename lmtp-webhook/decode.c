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

static int decode_b64_value(unsigned char c)
{
    if (c >= 'A' && c <= 'Z')
	return (c - 'A');
    if (c >= 'a' && c <= 'z')
	return (c - 'a' + 26);
    if (c >= '0' && c <= '9')
	return (c - '0' + 52);
    if (c == '+')
	return (62);
    if (c == '/')
	return (63);
    return (-1);
}

static size_t decode_base64(struct decode_state *st, const unsigned char *in, size_t len,
			            unsigned char *out)
{
    unsigned char *o = out;

    for (size_t i = 0; i < len && !st->done; i++) {
	int     v;

	if (in[i] == '=') {
	    /* as a2b_base64: a pad completing the quantum ends the data */
	    if (st->quad_pos >= 2 && st->quad_pos + ++st->pads >= 4)
		st->done = 1;
	    continue;
	}
	if ((v = decode_b64_value(in[i])) < 0)
	    continue;
	st->pads = 0;
	switch (st->quad_pos) {
	case 0:
	    st->left = (unsigned int) v;
	    break;
	case 1:
	    *o++ = (unsigned char) (st->left << 2 | (unsigned int) v >> 4);
	    st->left = (unsigned int) v & 0x0f;
	    break;
	case 2:
	    *o++ = (unsigned char) (st->left << 4 | (unsigned int) v >> 2);
	    st->left = (unsigned int) v & 0x03;
	    break;
	case 3:
	    *o++ = (unsigned char) (st->left << 6 | (unsigned int) v);
	    break;
	}
	st->quad_pos = (st->quad_pos + 1) % 4;
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

size_t  decode_crlf(int *last_cr, const unsigned char *in, size_t len, unsigned char *out)
{
    unsigned char *o = out;

    for (size_t i = 0; i < len; i++) {
	if (in[i] == '\n' && !*last_cr)
	    *o++ = '\r';
	*o++ = in[i];
	*last_cr = in[i] == '\r';
    }
    return ((size_t) (o - out));
}
