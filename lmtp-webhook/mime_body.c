/*
 * NAME
 *	mime_body 3
 * SUMMARY
 *	which parts may be the bill's own text or html, as get_body() says
 * SYNOPSIS
 *	#include "mime_int.h"
 *
 *	bool	mime_body_part(w, content_type)
 *	void	mime_body_sub(w, e, index)
 *	bool	mime_body_again(related)
 *	void	mime_body_free(related)
 * DESCRIPTION
 *	The event's text is the first text/plain part, and its html the
 *	first text/html part, that Python's get_body() would look at: not
 *	one marked Content-Disposition: attachment, nor inside a multipart
 *	so marked, nor inside an attached message; and of a
 *	multipart/related only its root part (RFC 2387): the one whose
 *	Content-ID is the start= parameter, else the first. The other
 *	parts of a related (the logo, a stray text/plain) are attachments.
 *
 *	mime_body_part() says so for the current part, at the end of its
 *	headers, and registers a multipart for its children (w->boxes of
 *	the parse under way). A multipart split by mime_sub.c has its
 *	parts parsed alone, each under a multipart of ours:
 *	mime_body_sub() gives that one what the sender's multipart says
 *	(e) and which of its parts this is.
 *
 *	A related whose start= names none of its parts has its first part
 *	as root, which is known only once every part was seen; until then
 *	the first part is not taken for the root (the usual start= names a
 *	part, often a later one). mime_body_again() says, at the end of a
 *	walk, whether such a related came: mime_read() then writes the
 *	event again with those relateds' first parts as roots (their
 *	numbers, in the order of the walk, are the same in a walk of the
 *	same kind). All of them at once, wherever they are (the parts
 *	are counted and their Content-IDs compared in a related that
 *	cannot hold the text too): a related inside another's first part
 *	is looked at only in the second walk, and one walk per level of
 *	a hostile nest would be a hundred. Such mail is malformed, and
 *	one more walk is its cost.
 */

#include "lib.h"

#include "mime_int.h"

/* mime_body_box - the multipart registered for part (NULL: none, or not
   a multipart) */

static struct mime_box *mime_body_box(struct mime_walk *w, const struct message_part *part)
{
    struct mime_box *boxes;
    unsigned int count;

    boxes = array_get_modifiable(&w->boxes, &count);
    while (count-- > 0)				/* the parent is usually the latest */
	if (boxes[count].part == part)
	    return (&boxes[count]);
    return (NULL);
}

/* mime_body_child - is the current part its multipart's part to look in? */

static bool mime_body_child(struct mime_walk *w, struct mime_box *box)
{
    unsigned int index = box->fixed ? box->index : box->index++;
    struct mime_related *rel;

    if (box->related < 0)
	return (TRUE);				/* mixed, alternative, ...: all */
    rel = array_idx_modifiable(w->related, box->related);
    if (rel->start == NULL || rel->first)
	return (index == 0);
    if (!rel->matched && w->content_id != NULL && strcmp(w->content_id, rel->start) == 0) {
	rel->matched = TRUE;
	return (TRUE);
    }
    return (FALSE);
}

/* mime_body_related - a multipart/related: its number in the walk */

static int mime_body_related(struct mime_walk *w)
{
    unsigned int n = w->related_next++;
    struct mime_related *rel;

    if (n >= array_count(w->related)) {
	rel = array_append_space(w->related);
	rel->start = i_strdup(w->related_start);
    }
    rel = array_idx_modifiable(w->related, n);
    rel->matched = FALSE;
    return ((int) n);
}

bool    mime_body_part(struct mime_walk *w, const char *ctype)
{
    struct message_part *part = w->part;
    struct mime_box *parent, *box;
    bool    ok;

    if (part->parent == NULL && w->depth > 0) {
	/* the multipart of ours around one part of a sender's multipart */
	box = array_append_space(&w->boxes);
	*box = w->sub_box;
	box->part = part;
	return (box->ok);
    }
    if (part->parent == NULL)
	ok = !w->disposition_attachment;	/* the message itself */
    else if ((parent = mime_body_box(w, part->parent)) == NULL)
	ok = FALSE;				/* in an attached message */
    else					/* each part counted, each match seen */
	ok = mime_body_child(w, parent) && parent->ok && !w->disposition_attachment;
    if ((part->flags & MESSAGE_PART_FLAG_MULTIPART) != 0) {
	box = array_append_space(&w->boxes);
	box->part = part;
	box->ok = ok;
	box->related = strcmp(ctype, "multipart/related") == 0 ? mime_body_related(w) : -1;
    }
    return (ok);
}

void    mime_body_sub(struct mime_walk *w, const struct mime_embedded *e, unsigned int index)
{
    i_zero(&w->sub_box);
    w->sub_box.ok = e->body_ok;
    w->sub_box.related = e->related;
    w->sub_box.fixed = TRUE;
    w->sub_box.index = index;
}

bool    mime_body_again(ARRAY_TYPE(mime_related) *related)
{
    struct mime_related *rel;
    bool    again = FALSE;

    array_foreach_modifiable(related, rel) {
	if (rel->start != NULL && !rel->matched && !rel->first)
	    again = rel->first = TRUE;
    }
    return (again);
}

void    mime_body_free(ARRAY_TYPE(mime_related) *related)
{
    struct mime_related *rel;

    array_foreach_modifiable(related, rel)
	i_free(rel->start);
    array_clear(related);
}
