/*
 * NAME
 *	mime_delim 3
 * SUMMARY
 *	a multipart's delimiter lines, as Python's email reads them
 * SYNOPSIS
 *	#include "mime_delim.h"
 *
 *	void	mime_delim_init(&d, sep, sep_len, off)
 *	size_t	mime_delim_feed(&d, data, size, &line, &found)
 *	bool	mime_delim_finish(&d, &line)
 * DESCRIPTION
 *	A delimiter line is what Python's feedparser takes for one (its
 *	boundaryre): the line is "--boundary" (sep), then "--" or not,
 *	then any spaces and tabs, then its line end (CRLF or LF) or the end
 *	of the input. Nothing else: "--boundary-more" is a line of the
 *	part, though Dovecot's parser, which matches the boundary as a
 *	prefix of the line, ends the part there.
 *
 *	mime_delim_feed() takes the bytes in order (off is the offset of
 *	the first one) and stops after the first delimiter line it finds:
 *	*found, *line, and the count of bytes it took (all of them when
 *	none). mime_delim_finish() says whether the input ended inside a
 *	delimiter line without a line end.
 *
 *	Lines end at LF, as for the rest of the plugin: a bare CR inside
 *	a line does not end it (Python's email would end the line there).
 */

#include <string.h>

#include "mime_delim.h"

enum {
    DELIM_SEP,				/* matching sep: d->matched bytes so far */
    DELIM_AFTER,			/* sep matched */
    DELIM_DASH,				/* one '-' after it */
    DELIM_WS,				/* "--" or white space after it */
    DELIM_CR,				/* and a CR */
    DELIM_SKIP,				/* not one: to the end of the line */
};

void    mime_delim_init(struct mime_delim *d, const char *sep, size_t sep_len, uint64_t off)
{
    memset(d, 0, sizeof(*d));
    d->sep = sep;
    d->sep_len = sep_len;
    d->off = d->line_start = off;
    d->state = sep_len == 0 ? DELIM_AFTER : DELIM_SEP;
}

/* mime_delim_newline - the next byte starts a line */

static void mime_delim_newline(struct mime_delim *d)
{
    d->line_start = d->off;
    d->matched = 0;
    d->close = false;
    d->state = d->sep_len == 0 ? DELIM_AFTER : DELIM_SEP;
}

/* mime_delim_step - one byte of a line, not its LF, outside DELIM_SKIP */

static void mime_delim_step(struct mime_delim *d, unsigned char c)
{
    switch (d->state) {
    case DELIM_SEP:
	if (c != (unsigned char) d->sep[d->matched])
	    d->state = DELIM_SKIP;
	else if (++d->matched == d->sep_len)
	    d->state = DELIM_AFTER;
	break;
    case DELIM_AFTER:
	d->state = c == '-' ? DELIM_DASH : c == ' ' || c == '\t' ? DELIM_WS
	    : c == '\r' ? DELIM_CR : DELIM_SKIP;
	break;
    case DELIM_DASH:
	d->close = c == '-';
	d->state = d->close ? DELIM_WS : DELIM_SKIP;
	break;
    case DELIM_WS:
	d->state = c == ' ' || c == '\t' ? DELIM_WS : c == '\r' ? DELIM_CR : DELIM_SKIP;
	break;
    default:				/* a CR not before the LF */
	d->state = DELIM_SKIP;
	break;
    }
}

/* mime_delim_ends - does the line end here make it a delimiter line? */

static bool mime_delim_ends(const struct mime_delim *d)
{
    return (d->state == DELIM_AFTER || d->state == DELIM_WS || d->state == DELIM_CR);
}

size_t  mime_delim_feed(struct mime_delim *d, const unsigned char *data, size_t size,
			        struct mime_delim_line *line, bool *found)
{
    size_t  i = 0;

    *found = false;
    while (i < size) {
	if (d->state == DELIM_SKIP) {
	    const unsigned char *lf = memchr(data + i, '\n', size - i);

	    if (lf == NULL) {
		d->off += size - i;
		return (size);
	    }
	    d->off += (size_t) (lf - (data + i)) + 1;
	    i = (size_t) (lf - data) + 1;
	    mime_delim_newline(d);
	    continue;
	}
	d->off++;
	if (data[i++] != '\n') {
	    mime_delim_step(d, data[i - 1]);
	    continue;
	}
	if (mime_delim_ends(d)) {
	    line->start = d->line_start;
	    line->end = d->off;
	    line->close = d->close;
	    *found = true;
	    mime_delim_newline(d);
	    return (i);
	}
	mime_delim_newline(d);
    }
    return (i);
}

/* mime_delim_finish - at the end of the input: did it end a delimiter line (one without a line end)? */

bool    mime_delim_finish(struct mime_delim *d, struct mime_delim_line *line)
{
    if (!mime_delim_ends(d) || d->off == d->line_start)
	return (false);
    line->start = d->line_start;
    line->end = d->off;
    line->close = d->close;
    return (true);
}
