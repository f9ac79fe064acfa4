/*
 * NAME
 *	mime_pyhdr 3
 * SUMMARY
 *	where Python's email ends a header block
 * SYNOPSIS
 *	#include "mime_pyhdr.h"
 *
 *	enum mime_pyhdr_kind mime_pyhdr_line(line, len)
 *
 *	void	mime_pyhdr_init(&h, off)
 *	size_t	mime_pyhdr_feed(&h, data, size, &end)
 *	void	mime_pyhdr_finish(&h, &end)
 * DESCRIPTION
 *	Python's feedparser reads a header line only where its headerRE
 *	matches: "From ", or bytes from "!" to "~" but the colon and then
 *	a colon, or a space or tab first. The first line that does not
 *	match (and is not the empty line) ends the header and is the
 *	first line of the body: "--b1\et", "Content Type: x", a byte
 *	over 127 or a control byte before the colon. Dovecot's parser
 *	reads every line up to the empty one as a header: the headers
 *	after such a line (a Content-Type: application/pdf, a
 *	Content-Disposition: attachment) were the part's for the event
 *	and body for Python, and an attachment was listed that Python
 *	reads as the bill's text.
 *
 *	A "From " line that is not the first line of the header but the
 *	last one is the body's first line too (_parse_headers() pushes it
 *	back), and the empty line that ended the header is then no byte
 *	of anything. Elsewhere Python ignores a "From " line, as a line
 *	with white space first that begins the header, and so does the
 *	event: Dovecot reads them as headers no part of the plugin asks
 *	for (names "", "From x" or " Content-Type").
 *
 *	mime_pyhdr_line() says what one line (no line end) is to Python.
 *	mime_pyhdr_feed() takes a header block's bytes in order (off is
 *	the offset of the first one) until the header ends: it returns the
 *	count of bytes it took, and sets h->done and *end then (end->moved
 *	when Python's body begins elsewhere than after the empty line).
 *	mime_pyhdr_finish() ends the block at the end of the input.
 *
 *	Lines end at LF, as for the rest of the plugin; a CR first on a
 *	line ends the header, as for Python (a line of its own).
 */

#include <string.h>

#include "mime_pyhdr.h"

enum {
    PY_START,				/* at a line's first byte */
    PY_CR,				/* a CR first on the line */
    PY_NAME,				/* before the colon, undecided */
    PY_HEADER,				/* a header line: to its LF */
    PY_FROM,				/* a "From " line: to its LF */
};

/* mime_pyhdr_name - may the byte be in a header name, for headerRE? */

static bool mime_pyhdr_name(unsigned char c)
{
    return ((c >= 041 && c <= 071) || (c >= 073 && c <= 0176));
}

enum mime_pyhdr_kind mime_pyhdr_line(const unsigned char *line, size_t len)
{
    if (len > 0 && (line[0] == ' ' || line[0] == '\t'))
	return (MIME_PYHDR_HEADER);
    if (len >= 5 && memcmp(line, "From ", 5) == 0)
	return (MIME_PYHDR_FROM);
    for (size_t i = 0; i < len && line[i] != ':'; i++)
	if (!mime_pyhdr_name(line[i]))
	    return (MIME_PYHDR_BAD);
    return (memchr(line, ':', len) != NULL ? MIME_PYHDR_HEADER : MIME_PYHDR_BAD);
}

void    mime_pyhdr_init(struct mime_pyhdr *h, uint64_t off)
{
    memset(h, 0, sizeof(*h));
    h->off = h->line_start = off;
    h->state = PY_START;
}

/*
 * mime_pyhdr_end - the header ended: at a line that is none (blank_len
 * 0), or at the empty line of blank_len bytes. A "From " line last
 * before it is the body's first line. A CR alone (blank_len 1, no LF
 * after it) is Python's empty line, and for Dovecot's parser the first
 * byte of a header line: the body is moved there, without the CR.
 */
static void mime_pyhdr_end(struct mime_pyhdr *h, size_t blank_len, struct mime_pyhdr_end *end)
{
    memset(end, 0, sizeof(*end));
    h->done = true;
    end->body = h->from_pending ? h->from_start : h->line_start;
    end->moved = blank_len == 0 || h->from_pending || h->state == PY_CR;
    if (blank_len > 0 && end->moved) {
	end->drop = h->line_start;
	end->drop_len = blank_len;
    }
}

/* mime_pyhdr_step - one byte of a line, not its LF: false when the header ended */

static bool mime_pyhdr_step(struct mime_pyhdr *h, unsigned char c, struct mime_pyhdr_end *end)
{
    size_t  pos = h->pos++;

    if (h->state == PY_START) {
	if (c == '\r') {
	    h->state = PY_CR;
	    return (true);
	}
	h->state = c == ' ' || c == '\t' ? PY_HEADER : PY_NAME;
    } else if (h->state == PY_CR) {
	mime_pyhdr_end(h, 1, end);		/* a CR alone */
	return (false);
    }
    if (h->state != PY_NAME)
	return (true);
    h->from_match = pos < 5 && (pos == 0 || h->from_match) && c == (unsigned char) "From "[pos];
    if (h->from_match) {
	if (pos == 4)
	    h->state = PY_FROM;
	return (true);				/* "From" are name bytes */
    }
    if (c == ':')
	h->state = PY_HEADER;
    else if (!mime_pyhdr_name(c)) {
	mime_pyhdr_end(h, 0, end);
	return (false);
    }
    return (true);
}

/* mime_pyhdr_eol - a line ended (its LF): false when it ended the header */

static bool mime_pyhdr_eol(struct mime_pyhdr *h, struct mime_pyhdr_end *end)
{
    switch (h->state) {
    case PY_START:
    case PY_CR:
	h->state = PY_START;			/* for the PY_CR test in mime_pyhdr_end() */
	mime_pyhdr_end(h, h->pos + 1, end);
	return (false);
    case PY_NAME:				/* no colon */
	mime_pyhdr_end(h, 0, end);
	return (false);
    case PY_FROM:
	/* the first line is the envelope's; a later one the body's if last */
	if (h->lineno > 0) {
	    h->from_pending = true;
	    h->from_start = h->line_start;
	}
	break;
    default:					/* a header: the "From " was not last */
	h->from_pending = false;
	break;
    }
    h->lineno++;
    h->state = PY_START;
    h->pos = 0;
    h->line_start = h->off;
    return (true);
}

size_t  mime_pyhdr_feed(struct mime_pyhdr *h, const unsigned char *data, size_t size,
			        struct mime_pyhdr_end *end)
{
    size_t  i = 0;

    while (i < size && !h->done) {
	if (h->state == PY_HEADER || h->state == PY_FROM) {
	    const unsigned char *lf = memchr(data + i, '\n', size - i);
	    size_t  n = lf == NULL ? size - i : (size_t) (lf - (data + i));

	    h->off += n;			/* the rest of the line, not looked into */
	    h->pos += n;
	    i += n;
	    if (lf == NULL)
		break;
	}
	if (data[i] == '\n') {
	    h->off++;
	    i++;
	    (void) mime_pyhdr_eol(h, end);
	} else if (mime_pyhdr_step(h, data[i], end)) {
	    h->off++;
	    i++;
	}
    }
    return (i);
}

void    mime_pyhdr_finish(struct mime_pyhdr *h, struct mime_pyhdr_end *end)
{
    if (h->done)
	return;
    if (h->state == PY_NAME)			/* a last line without a colon */
	mime_pyhdr_end(h, 0, end);
    else if (h->state == PY_CR)			/* a CR alone, last */
	mime_pyhdr_end(h, 1, end);
    else if (h->state == PY_FROM && h->lineno > 0) {
	h->from_pending = true;			/* itself the last line */
	h->from_start = h->line_start;
	mime_pyhdr_end(h, 0, end);
    } else {
	if (h->state == PY_HEADER)
	    h->from_pending = false;
	memset(end, 0, sizeof(*end));
	if (h->from_pending)
	    mime_pyhdr_end(h, 0, end);
	h->done = true;
    }
}
