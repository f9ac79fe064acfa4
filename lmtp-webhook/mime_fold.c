/*
 * NAME
 *	mime_fold 3
 * SUMMARY
 *	a folded header's TABs, as RFC 5322 unfolding keeps them
 * SYNOPSIS
 *	#include "mime_int.h"
 *
 *	void	mime_fold_note(&walk, hdr)
 *	struct message_header_line *mime_fold_restore(&walk, hdr, &copy)
 * DESCRIPTION
 *	Dovecot's header parser, asked for one-line values
 *	(MESSAGE_HEADER_PARSER_FLAG_CLEAN_ONELINE), writes the white space
 *	that starts a continuation line as a space; RFC 5322 unfolding,
 *	Python's email's, removes the line break only, so a TAB there
 *	stays a TAB. mime_fold_note() is called for every line of a header
 *	and notes where such a TAB was; mime_fold_restore(), on its last
 *	line, returns hdr, or copy with a value that has them back (in
 *	the data stack).
 */

#include "lib.h"
#include "array.h"
#include "message-header-parser.h"

#include "mime_int.h"

/*
 * mime_fold_note - where a folded header's continuation line began with
 * a TAB. The parser (CLEAN_ONELINE) puts a space there; RFC 5322's
 * unfolding, Python's email's, removes the line break only, so a name
 * or Subject folded before a TAB keeps it (mime_fold_restore()). Noted
 * on each line: the whole value comes with the last one.
 */
void    mime_fold_note(struct mime_walk *w, const struct message_header_line *hdr)
{
    unsigned int at;

    if (!hdr->continued)
	array_clear(&w->fold_tabs);
    else if (hdr->value_len > 0 && hdr->value[0] == '\t' && hdr->full_value != NULL
	     && hdr->full_value_len >= hdr->value_len) {
	at = (unsigned int) (hdr->full_value_len - hdr->value_len);
	array_push_back(&w->fold_tabs, &at);
    }
}

/* mime_fold_restore - the last line of a header, its TABs given back */

struct message_header_line *mime_fold_restore(struct mime_walk *w,
				              struct message_header_line *hdr,
				              struct message_header_line *copy)
{
    const unsigned int *at;
    unsigned char *value;

    if (array_count(&w->fold_tabs) == 0 || hdr->full_value == NULL)
	return (hdr);
    value = t_malloc_no0(hdr->full_value_len + 1);
    memcpy(value, hdr->full_value, hdr->full_value_len);
    value[hdr->full_value_len] = '\0';
    array_foreach(&w->fold_tabs, at)
	if (*at < hdr->full_value_len && value[*at] == ' ')
	    value[*at] = '\t';
    array_clear(&w->fold_tabs);
    *copy = *hdr;
    copy->full_value = value;
    return (copy);
}
