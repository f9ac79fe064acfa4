/*
 * NAME
 *	mime_ew 3
 * SUMMARY
 *	a top-level header's value decoded as Python's email reads it
 * SYNOPSIS
 *	#include "mime_param.h"
 *
 *	void	mime_header_utf8(data, size, out)
 *
 *	void	mime_address_utf8(data, size, out)
 *
 *	enum decode_cte mime_cte_read(data, size)
 * DESCRIPTION
 *	mime_header_utf8() decodes a header value's RFC 2047 encoded words
 *	to UTF-8 with Dovecot's decoder (mime_words_utf8()), after taking
 *	what Python's email (policy.default) reads otherwise out of its
 *	way:
 *
 *	White space before the value is not part of it (Python strips it
 *	all; Dovecot's parser only the first SP after the colon). Python
 *	strips the first line's only, which Dovecot's unfolded value no
 *	longer tells: a value whose first line is blank loses the next
 *	line's leading white space here.
 *
 *	An encoded word whose text starts with "=" not followed by two hex
 *	digits ("=?utf-8?q?=ZZ?=", "=?utf-8?b?=?=") is no encoded word:
 *	Python ends a word at its first "?=", finds no text, and leaves
 *	it as it is, with the white space around it. Dovecot decoded it.
 *
 *	A "B" word that strict base64 does not read (a byte outside the
 *	alphabet, a pad inside) is read as binascii.a2b_base64() reads it
 *	(decode.c: bytes outside the alphabet skipped, "==" added), and
 *	one that even that cannot read (4n+1 characters of the alphabet)
 *	is its encoded text as it is: Python's fallbacks. Dovecot's
 *	decoder stopped at the first such byte. Either is handed to
 *	Dovecot's decoder as the "Q" word of the same bytes, so that its
 *	charset and the white space between words are read as for any
 *	word.
 *
 *	mime_address_utf8() does the same for an address header (From:,
 *	To:, Cc:), and a run of encoded words whose decoded text holds a
 *	character an address list reads (RFC 5322 specials: "<", "@", ","
 *	...) is written as a quoted-string, as Python's email
 *	(policy.default) writes such a display name: a vendor's bill to
 *	another customer whose encoded name decoded to
 *	"bills@acme.example, " read as an address of the workspace's
 *	(helper-112), where Python shows it quoted. Inside a quoted-string
 *	such a run is escaped instead (a quote it decodes to cannot end
 *	the string: wrapped in quotes of its own, "=?..?q?bills=40acme..=2C_?="
 *	came out as ""bills@acme.., "", an address outside any quotes);
 *	an encoded word in a comment is left as it is, as Python leaves it
 *	(decoded, a ")" in it closed the comment).
 *
 *	mime_cte_read() reads a Content-Transfer-Encoding value as Python's
 *	email reads it: a value that is one encoded word and nothing else
 *	("=?utf-8?q?base64?=") is decoded first (Python decodes the body
 *	then; the plugin left it encoded).
 * DIAGNOSTICS
 *	None: every value decodes to something.
 */

#include "lib.h"
#include "str.h"
#include "rfc822-parser.h"

#include <ctype.h>
#include <string.h>

#include "decode.h"
#include "mime_param.h"

/* an encoded word as Dovecot's decoder finds one: "=?cs?E?text?=" */

struct mime_ew {
    size_t  enc;			/* of its encoding letter */
    size_t  text, text_end;		/* its text */
    size_t  end;			/* past its "?=" */
};

/* where an address header's text is (mime_ew_lex_step()) */

struct mime_ew_lex {
    int     quoted;			/* in a quoted-string */
    int     comment;			/* comments open */
    int     escaped;			/* after a quoted-pair's backslash */
};

/*
 * mime_ew_find - at data[at] "=?": the word's parts when the three '?'
 * and the '=' after the last are there (message_header_decode()'s
 * reading), else 0.
 */
static int mime_ew_find(const unsigned char *data, size_t size, size_t at,
			        struct mime_ew *ew)
{
    size_t  q[3], n = 0;

    for (size_t i = at + 2; i < size && n < 3; i++)
	if (data[i] == '?')
	    q[n++] = i;
    if (n < 3 || q[2] + 1 >= size || data[q[2] + 1] != '=' || q[1] != q[0] + 2)
	return (0);
    ew->enc = q[0] + 1;
    ew->text = q[1] + 1;
    ew->text_end = q[2];
    ew->end = q[2] + 2;
    return (1);
}

/* mime_ew_not_word - Python's reading: "=" and no two hex digits first */

static int mime_ew_not_word(const unsigned char *data, const struct mime_ew *ew)
{
    return (ew->text < ew->text_end && data[ew->text] == '='
	    && (ew->text + 2 >= ew->text_end || !i_isxdigit(data[ew->text + 1])
		|| !i_isxdigit(data[ew->text + 2])));
}

/*
 * mime_ew_b64_strict - what strict base64 reads once Python has added
 * the pads missing: the alphabet, then pads that complete the last
 * quantum. Left to Dovecot's decoder, which reads it the same.
 */
static int mime_ew_b64_strict(const unsigned char *text, size_t len)
{
    size_t  n = 0, pads;

    while (n < len && (i_isalnum(text[n]) || text[n] == '+' || text[n] == '/'))
	n++;
    if (strspn((const char *) text + n, "=") < len - n)
	return (0);
    pads = len - n;
    return (n % 4 != 1 && (pads == 0 || (n % 4 == 2 && pads <= 2)
			   || (n % 4 == 3 && pads == 1)));
}

/*
 * mime_ew_b64 - a "B" word's text as Python's fallbacks read it, written
 * to fixed as the "Q" word's letter and text of the same bytes
 */
static void mime_ew_b64(buffer_t *fixed, const unsigned char *text, size_t len)
{
    struct decode_state st;
    unsigned char *bytes = t_malloc_no0(DECODE_OUT_MAX(len + 2) + 2);
    size_t  n;

    decode_init(&st, DECODE_BASE64);
    n = decode_more(&st, text, len, bytes);
    n += decode_more(&st, (const unsigned char *) "==", 2, bytes + n);
    if (!st.done && st.quad_pos == 1) {	/* 4n+1: its text, as it is */
	memcpy(bytes, text, len);
	n = len;
    }
    buffer_append(fixed, "Q?", 2);
    for (size_t i = 0; i < n; i++)
	str_printfa(fixed, "=%02X", bytes[i]);
}

/* mime_ew_flush - what is in fixed, decoded, onto out */

static void mime_ew_flush(buffer_t *fixed, buffer_t *out)
{
    if (fixed->used > 0)
	mime_words_utf8(fixed->data, fixed->used, out);
    buffer_set_used_size(fixed, 0);
}

/*
 * mime_ew_quoted - what is in fixed (a run of encoded words), decoded onto
 * out (mime_address_utf8()): inside a quoted-string its quotes and
 * backslashes escaped; elsewhere as a quoted-string when it holds what
 * an address list reads, else as it is
 */
static void mime_ew_quoted(buffer_t *fixed, buffer_t *out, int in_quotes)
{
    buffer_t *run = t_buffer_create(fixed->used + 16);
    const unsigned char *d;
    size_t  n;

    mime_ew_flush(fixed, run);
    d = run->data;
    for (n = 0; n < run->used && (d[n] == 0 || strchr("()<>[]:;@\\,.\"", d[n]) == NULL); n++)
	 /* void */ ;
    if (n == run->used) {		/* no special: as it is */
	buffer_append_buf(out, run, 0, run->used);
	return;
    }
    if (!in_quotes)
	buffer_append_c(out, '"');
    for (size_t i = 0; i < run->used; i++) {
	if (d[i] == '"' || d[i] == '\\')
	    buffer_append_c(out, '\\');
	buffer_append_c(out, d[i]);
    }
    if (!in_quotes)
	buffer_append_c(out, '"');
}

/*
 * mime_ew_lex_step - where an address header's text is after the byte c
 * (RFC 5322): in a quoted-string, in a comment (nested), after a
 * quoted-pair's backslash. Python's email decodes encoded words in a
 * quoted-string and leaves those in a comment as they are.
 */
static void mime_ew_lex_step(struct mime_ew_lex *lx, unsigned char c)
{
    if (lx->escaped)
	lx->escaped = 0;
    else if ((lx->quoted || lx->comment > 0) && c == '\\')
	lx->escaped = 1;
    else if (lx->comment > 0)
	lx->comment += c == '(' ? 1 : c == ')' ? -1 : 0;
    else if (c == '"')
	lx->quoted = !lx->quoted;
    else if (c == '(' && !lx->quoted)
	lx->comment = 1;
}

/*
 * mime_ew_text - what is in fixed, text between runs of words, onto out:
 * for an address header as it is (an encoded word in a comment stays
 * one, as Python leaves it), otherwise decoded
 */
static void mime_ew_text(buffer_t *fixed, buffer_t *out, int address)
{
    if (!address)
	mime_ew_flush(fixed, out);
    else
	buffer_append_buf(out, fixed, 0, fixed->used);
    buffer_set_used_size(fixed, 0);
}

/* mime_ew_next_word - does another encoded word follow, after white space? */

static int mime_ew_next_word(const unsigned char *data, size_t size, size_t at)
{
    struct mime_ew next;

    while (at < size && (data[at] == ' ' || data[at] == '\t'))
	at++;
    return (at + 1 < size && data[at] == '=' && data[at + 1] == '?'
	    && mime_ew_find(data, size, at, &next) && !mime_ew_not_word(data, &next));
}

static void mime_ew_decode(const unsigned char *data, size_t size, buffer_t *out,
			           int address)
{
    buffer_t *fixed = t_buffer_create(size + 16);
    struct mime_ew_lex lx = {0, 0, 0};
    struct mime_ew ew;
    size_t  seg = 0;
    int     run = 0;

    while (size > 0 && (*data == ' ' || *data == '\t'))
	data++, size--;
    for (size_t i = 0; i + 1 < size; i++) {
	if (data[i] != '=' || data[i + 1] != '?' || !mime_ew_find(data, size, i, &ew)
	    || lx.comment > 0) {
	    if (address)
		mime_ew_lex_step(&lx, data[i]);
	    continue;
	}
	if (mime_ew_not_word(data, &ew)) {
	    /* text: so is the white space after it, which Dovecot's
	       decoder drops before a word at the start of what it reads */
	    buffer_append(fixed, data + seg, i - seg);
	    mime_ew_text(fixed, out, address);
	    for (seg = ew.end; seg < size && (data[seg] == ' ' || data[seg] == '\t'); seg++)
		 /* void */ ;
	    buffer_append(out, data + i, seg - i);
	    while (address && i < seg)
		mime_ew_lex_step(&lx, data[i++]);
	    i = seg - 1;
	    continue;
	}
	if (address && !run) {		/* a run of words begins: text before */
	    buffer_append(fixed, data + seg, i - seg);
	    mime_ew_text(fixed, out, address);
	    seg = i;
	    run = 1;
	}
	if ((data[ew.enc] == 'b' || data[ew.enc] == 'B')
	    && !mime_ew_b64_strict(data + ew.text, ew.text_end - ew.text)) {
	    buffer_append(fixed, data + seg, ew.enc - seg);
	    mime_ew_b64(fixed, data + ew.text, ew.text_end - ew.text);
	    seg = ew.text_end;
	}
	i = ew.end - 1;
	if (address && !mime_ew_next_word(data, size, ew.end)) {
	    buffer_append(fixed, data + seg, ew.end - seg);
	    seg = ew.end;
	    mime_ew_quoted(fixed, out, lx.quoted);
	    run = 0;
	}
    }
    buffer_append(fixed, data + seg, size - seg);
    mime_ew_text(fixed, out, address);
}

void    mime_header_utf8(const unsigned char *data, size_t size, buffer_t *out)
{
    mime_ew_decode(data, size, out, 0);
}

void    mime_address_utf8(const unsigned char *data, size_t size, buffer_t *out)
{
    mime_ew_decode(data, size, out, 1);
}

/* mime_cte_read - a Content-Transfer-Encoding value, an encoded word decoded */

enum decode_cte mime_cte_read(const unsigned char *data, size_t size)
{
    struct rfc822_parser_context parser;
    enum decode_cte cte = DECODE_IDENTITY;
    string_t *token = t_str_new(32);
    buffer_t *decoded;
    size_t  i;

    while (size > 0 && i_isspace(data[0]))
	data++, size--;
    while (size > 0 && i_isspace(data[size - 1]))
	size--;
    for (i = 0; i < size && !i_isspace(data[i]); i++)
	;
    if (i == size && size >= 4 && memcmp(data, "=?", 2) == 0
	&& memcmp(data + size - 2, "?=", 2) == 0) {
	decoded = t_buffer_create(size);
	mime_words_utf8(data, size, decoded);
	data = decoded->data;
	size = decoded->used;
    }
    rfc822_parser_init(&parser, data, size, NULL);
    rfc822_skip_lwsp(&parser);
    if (rfc822_parse_mime_token(&parser, token) >= 0)
	cte = decode_cte_parse(str_c(token));
    rfc822_parser_deinit(&parser);
    return (cte);
}
