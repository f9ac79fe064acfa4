/*
 * NAME
 *	mime_split 3
 * SUMMARY
 *	a multipart's parts, where Python's email finds them
 * SYNOPSIS
 *	#include "mime_split.h"
 *
 *	void	mime_split_init(&s, start, size)
 *	enum mime_split_next mime_split_next(&s, find, ctx, &start, &size)
 * DESCRIPTION
 *	The parts of a multipart body [start, start + size), one call each,
 *	in order, as Python's feedparser splits it (find gives the
 *	delimiter lines: mime_delim.c):
 *
 *	- no delimiter line at all, or a closing one first: the multipart
 *	  is not split; MIME_SPLIT_LEAF, once: its body, or what comes
 *	  before that closing line;
 *	- else each part is what lies between two delimiter lines;
 *	  delimiter lines that follow one another make no empty part
 *	  (even a closing one among them: it is skipped too); the part
 *	  after the last one runs to the end of the body;
 *	- a closing delimiter line ends the parts: the rest is epilogue.
 *
 *	A part keeps the line end before the delimiter line that ends it
 *	(RFC 2046 gives it to the delimiter): Python's email strips it
 *	from the part's last leaf, or from the epilogue of a multipart
 *	part, but never from a multipart it does not split; the caller
 *	knows which (mime_sub.c lets Dovecot's parser strip it where
 *	Python does).
 *
 *	Past MIME_SPLIT_MAX_PARTS parts the last one holds the rest of the
 *	body: memory and work stay bounded whatever the sender's count.
 */

#include <string.h>

#include "mime_split.h"

enum { SPLIT_PREAMBLE, SPLIT_PARTS, SPLIT_DONE };

void    mime_split_init(struct mime_split *s, uint64_t start, uint64_t size)
{
    memset(s, 0, sizeof(*s));
    s->start = start;
    s->end = start + size;
    s->state = SPLIT_PREAMBLE;
}

/* mime_split_first - the first delimiter line: the parts begin, or none do */

static enum mime_split_next mime_split_first(struct mime_split *s, mime_split_find_fn find,
					             void *ctx, uint64_t *start_r, uint64_t *size_r)
{
    struct mime_delim_line line;
    int     ret = find(ctx, s->start, &line);

    if (ret < 0)
	return (MIME_SPLIT_ERROR);
    if (ret > 0 && !line.close) {
	s->next = line;
	s->state = SPLIT_PARTS;
	return (MIME_SPLIT_DONE);		/* not the caller's: go on */
    }
    s->state = SPLIT_DONE;
    *start_r = s->start;
    *size_r = (ret > 0 ? line.start : s->end) - s->start;
    return (MIME_SPLIT_LEAF);
}

enum mime_split_next mime_split_next(struct mime_split *s, mime_split_find_fn find, void *ctx,
				             uint64_t *start_r, uint64_t *size_r)
{
    struct mime_delim_line line;
    uint64_t from, end;
    enum mime_split_next first;
    int     ret;

    if (s->state == SPLIT_PREAMBLE
	&& (first = mime_split_first(s, find, ctx, start_r, size_r)) != MIME_SPLIT_DONE)
	return (first);
    if (s->state != SPLIT_PARTS)
	return (MIME_SPLIT_DONE);
    /* after s->next, an opening delimiter line: skip those right after it */
    for (from = s->next.end;; from = line.end) {
	if (s->parts + 1 >= MIME_SPLIT_MAX_PARTS) {
	    ret = 0;				/* the last part: the rest */
	    s->capped = true;
	    break;
	}
	if ((ret = find(ctx, from, &line)) < 0)
	    return (MIME_SPLIT_ERROR);
	if (ret == 0 || line.start != from)
	    break;
    }
    s->parts++;
    if (ret == 0) {
	end = s->end;
	s->state = SPLIT_DONE;
    } else {
	end = line.start;
	s->next = line;
	if (line.close)
	    s->state = SPLIT_DONE;
    }
    *start_r = from;
    *size_r = end - from;
    return (MIME_SPLIT_PART);
}
