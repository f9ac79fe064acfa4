/*
 * NAME
 *	mime_check 3
 * SUMMARY
 *	does Dovecot's parser split a multipart where Python's email does?
 * SYNOPSIS
 *	#include "mime_int.h"
 *
 *	void	mime_check_multipart(w)
 *	void	mime_check_block(w, raw)
 *	void	mime_check_end(w)
 *	void	mime_check_header(w, hdr)
 * DESCRIPTION
 *	Dovecot's parser ends a part on any line that begins with "--"
 *	and a boundary (RFC 2046 asks senders never to write one); Python's
 *	email only on a delimiter line (mime_delim.c): "--b1-more" or
 *	"--b1--x" end a part for one and not for the other, and the bytes
 *	of the bill's attachments with it. Dovecot makes an empty part
 *	between two delimiter lines in a row, Python none; and a closing
 *	line before any other is the end of Dovecot's parts, while Python
 *	then makes the multipart one leaf.
 *
 *	A line that is a delimiter line of the multipart and of one
 *	around it (boundaries "b1" inside "b1--": "--b1--" closes the one
 *	and is a delimiter of the other) is the outer one's for Python:
 *	its feedparser ends a part at any line of a multipart around it
 *	before the part's own multipart reads it. Dovecot's parser gives
 *	it to the inner one: an attachment after it went missing from the
 *	event, or one Python reads as epilogue was posted.
 *
 *	The check costs nothing where they agree: each boundary line of
 *	a multipart Dovecot splits (MESSAGE_PARSER_FLAG_INCLUDE_BOUNDARIES
 *	gives it as the multipart's blocks, "[CR]LF--boundary[--]" and
 *	then the rest of the line) is read again as Python reads it. Where
 *	they differ, w->differs is set: mime_read() then writes the event
 *	again from the start with every multipart split by mime_split.c
 *	(w->strict).
 *
 *	mime_check_multipart() gives the current part, a multipart Dovecot
 *	splits under Python's boundary, its struct mime_bound
 *	(part->context: the parser leaves it to its caller);
 *	mime_check_block() reads each block of the parse;
 *	mime_check_end() ends a boundary line the input ended.
 *
 *	Where a part's (or the message's) header ends is checked the same
 *	way: mime_check_header() reads each header line Dovecot's parser
 *	gives as Python's feedparser reads it (mime_pyhdr.c). A line that
 *	ends Python's header there, where Dovecot's parser reads on, sets
 *	w->differs: the strict walk gives each part to Dovecot's parser
 *	with its header cut where Python cuts it (mime_sub.c).
 */

#include "lib.h"
#include "buffer.h"
#include "message-header-parser.h"

#include "mime_int.h"
#include "mime_pyhdr.h"

void    mime_check_multipart(struct mime_walk *w)
{
    struct mime_bound *b;

    if (w->boundary == NULL || w->dc_len == 0)
	return;
    b = p_new(w->pool, struct mime_bound, 1);
    b->sep = p_strconcat(w->pool, "--", w->boundary, NULL);
    b->dc_len = w->dc_len;
    w->part->context = b;
}

/*
 * mime_check_outer - may the delimiter line "sep[--]" and white space be
 * one of outer's too? Either outer's sep and then "--" or nothing is
 * what the line holds before its white space, or outer's sep holds the
 * line's text and then only spaces and tabs (which the line may have).
 */
static bool mime_check_outer(const char *outer, const char *sep, bool close)
{
    size_t  olen = strlen(outer), slen = strlen(sep), tlen = slen + (close ? 2 : 0);

    /* the line's text, before its white space: sep, then "--" if it closes */
#define TEXT_AT(i) ((i) < slen ? sep[i] : '-')
    for (size_t i = 0; i < olen && i < tlen; i++)
	if (outer[i] != TEXT_AT(i))
	    return (false);
    if (olen <= tlen)
	return (tlen == olen || (tlen == olen + 2 && TEXT_AT(olen) == '-'
				 && TEXT_AT(olen + 1) == '-'));
#undef TEXT_AT
    return (strspn(outer + tlen, " \t") == olen - tlen);
}

/* mime_check_line - a boundary line read: is it one for Python too? */

static void mime_check_line(struct mime_walk *w, bool delimiter, bool close)
{
    struct mime_bound *b = w->line_part->context, *outer;

    /* not one; one of the other kind; or a closing line before any part */
    if (!delimiter || close != w->line_close || (close && !b->seen_line))
	w->differs = TRUE;
    for (struct message_part *up = w->line_part->parent; delimiter && up != NULL; up = up->parent)
	if ((outer = up->context) != NULL && !outer->closed
	    && mime_check_outer(outer->sep, b->sep, close))
	    w->differs = TRUE;			/* the outer one's, for Python */
    if (close)
	b->closed = TRUE;
    b->seen_line = TRUE;
    b->child_seen = FALSE;
    w->line_part = NULL;
}

static void mime_check_feed(struct mime_walk *w, const unsigned char *data, size_t size)
{
    struct mime_delim_line line;
    bool    found;

    (void) mime_delim_feed(&w->line, data, size, &line, &found);
    if (found)
	mime_check_line(w, TRUE, line.close);
    else if (size > 0 && data[size - 1] == '\n')
	mime_check_line(w, FALSE, FALSE);
}

void    mime_check_end(struct mime_walk *w)
{
    struct mime_delim_line line;
    bool    delimiter;

    if (w->line_part != NULL) {
	delimiter = mime_delim_finish(&w->line, &line);
	mime_check_line(w, delimiter, delimiter && line.close);
    }
}

/*
 * mime_check_begins - is the block a boundary line's beginning as Dovecot
 * gives it, "[CR]LF--boundary[--]"? *skip: the line end before it.
 */
static bool mime_check_begins(const struct mime_bound *b, const unsigned char *data,
			              size_t size, size_t *skip)
{
    *skip = size >= 2 && data[0] == '\r' && data[1] == '\n' ? 2
	: size >= 1 && data[0] == '\n' ? 1 : 0;
    data += *skip;
    size -= *skip;
    return ((size == 2 + b->dc_len || (size == 4 + b->dc_len && memcmp(data + size - 2, "--", 2) == 0))
	    && memcmp(data, b->sep, 2 + b->dc_len) == 0);
}

void    mime_check_block(struct mime_walk *w, const struct message_block *raw)
{
    struct message_part *part = raw->part;
    struct mime_bound *b = part->context, *parent;
    size_t  skip;

    if (w->line_part != NULL && (part != w->line_part || raw->hdr != NULL))
	mime_check_end(w);			/* the line ended without a LF */
    if (part->parent != NULL && (parent = part->parent->context) != NULL
	&& (raw->hdr != NULL || raw->size > 0))
	parent->child_seen = TRUE;
    if (b == NULL || raw->hdr != NULL || raw->size == 0) {
	/* not a multipart Dovecot splits, or not its body */
    } else if (w->line_part == part) {
	mime_check_feed(w, raw->data, raw->size);
    } else if (!b->closed && mime_check_begins(b, raw->data, raw->size, &skip)) {
	if (b->seen_line && !b->child_seen)	/* right after another one */
	    w->differs = TRUE;
	w->line_part = part;
	w->line_close = raw->size - skip == 4 + b->dc_len;
	mime_delim_init(&w->line, b->sep, strlen(b->sep), 0);
	mime_check_feed(w, raw->data + skip, raw->size - skip);
    }
}

/*
 * mime_check_header - a header line of the parse, as Python's email
 * reads it (mime_pyhdr.c): one it takes for no header line ends its
 * header there, where Dovecot's parser reads on; a "From " line after
 * the first may be the last of the header, and the body's first line
 * for Python. Either means a strict walk, whose parts' headers are
 * read as Python reads them (mime_sub_header()). A line's name and
 * colon are what it is: only they are looked at.
 */
void    mime_check_header(struct mime_walk *w, const struct message_header_line *hdr)
{
    const unsigned char *line = hdr->value;
    size_t  len = hdr->value_len;
    enum mime_pyhdr_kind kind;

    if (w->strict || hdr->eoh || hdr->continued)
	return;
    if (hdr->name_len > 0 || hdr->middle_len > 0) {
	buffer_t *buf = t_buffer_create(hdr->name_len + hdr->middle_len + 5);

	buffer_append(buf, hdr->name, hdr->name_len);
	buffer_append(buf, hdr->middle, hdr->middle_len);
	buffer_append(buf, hdr->value, I_MIN(hdr->value_len, 5));
	line = buf->data;
	len = buf->used;
    }					/* else no colon: the line is the value */
    kind = mime_pyhdr_line(line, len);
    if (kind == MIME_PYHDR_BAD || (kind == MIME_PYHDR_FROM && w->hdr_lines > 0 && !hdr->continues))
	w->differs = TRUE;
    w->hdr_lines++;
}
