/*
 * NAME
 *	mime_auth 3
 * SUMMARY
 *	the top-level header values the event's "authentication" is made of
 * SYNOPSIS
 *	#include "mime_int.h"
 *
 *	void	mime_raw_top(&walk, hdr)
 *	void	mime_begin(&walk)
 *	void	mime_auth_free(&walk)
 * DESCRIPTION
 *	mime_raw_top() is given each top-level header, its raw value
 *	(before any encoded word is decoded), and keeps what authres.c
 *	reads: the first From: (and how many there are), the first
 *	Authentication-Results with the trusted authserv-id (the topmost:
 *	our host added it last), every DKIM-Signature and how many
 *	Content-Type, Content-Transfer-Encoding, Content-Disposition,
 *	MIME-Version, To and Cc headers there are (dkimsig.c: does the
 *	passing signature sign how the body reads, and to whom?).
 *
 *	mime_begin() is called when the top headers are in: it makes
 *	"authentication" and starts the event.
 *
 *	mime_auth_free() frees what mime_raw_top() kept.
 */

#include "lib.h"
#include "message-header-parser.h"

#include "authres.h"
#include "mime_int.h"
#include "payload.h"

void    mime_raw_top(struct mime_walk *w, const struct message_header_line *hdr)
{
    dkimsig_header(&w->sigs, hdr->name, (const char *) hdr->full_value,
		   hdr->full_value_len);
    if (strcasecmp(hdr->name, "From") == 0 && w->from_count++ == 0)
	w->from_raw = i_strndup(hdr->full_value, hdr->full_value_len);
    else if (strcasecmp(hdr->name, "Authentication-Results") == 0 && w->trusted_ar == NULL
	     && authres_trusted((const char *) hdr->full_value, hdr->full_value_len,
				w->trusted_id))
	w->trusted_ar = i_strndup(hdr->full_value, hdr->full_value_len);
}

void    mime_begin(struct mime_walk *w)
{
    w->msg->authentication = authres_authentication(w->trusted_ar, w->from_raw,
						    w->from_count, w->trusted_id, &w->sigs);
    payload_begin(w->out, w->msg, w->env);
    w->begun = TRUE;
}

void    mime_auth_free(struct mime_walk *w)
{
    i_free(w->trusted_ar);
    i_free(w->from_raw);
    dkimsig_free(&w->sigs);
}
