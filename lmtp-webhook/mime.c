/*
 * NAME
 *	mime 3
 * SUMMARY
 *	read a message with Dovecot's MIME parser into the event writer
 * SYNOPSIS
 *	#include "lib.h"
 *	#include "mime.h"
 *
 *	int	mime_read(input, &options, &msg, &envelope, &writer, &error)
 * DESCRIPTION
 *	mime_read() reads the whole message once with message_parser and
 *	writes the event with the payload writer as it goes (payload.c):
 *	nothing grows with the message. The top-level From, To, Cc,
 *	Subject, Date, Message-ID and every Authentication-Results are
 *	kept in msg, encoded words decoded to UTF-8 as Python's email
 *	decodes them (mime_header_utf8()), each at most 64 KB (a
 *	1 MB header does not become a 1 MB JSON string), and written when
 *	the first part starts. The first inline text/plain part is the
 *	text, the first inline text/html part the html, of the parts
 *	Python's get_body() looks at (mime_body.c), both converted to
 *	UTF-8 by Dovecot's message_decoder where the charset is not UTF-8,
 *	ASCII, none or unknown (mime_charset_read()). A part without
 *	Content-Type is text/plain, or message/rfc822 in a multipart/digest.
 *
 *	Every other part that is not a multipart is an attachment: its
 *	bytes are the body with the transfer encoding undone (decode.c)
 *	and nothing else, whatever charset= the part claims; size and
 *	SHA-256 are of those bytes; the content is sent when not over
 *	max_attachment_size. A message/rfc822 part is an attachment too
 *	(the embedded message's bytes, read from the input once the parse
 *	is done, so these come after the others in the list); the parts
 *	inside it are listed as well. One inside another is listed with
 *	no content (its bytes are in the outer one's). A multipart whose
 *	boundary Dovecot reads otherwise than Python's email (RFC 2231's
 *	forms, given twice, trailing white space: mime_boundary()), or
 *	none, and one where Dovecot's parser ends a part on a line Python
 *	does not take for a delimiter (mime_check.c: "--b1-more"), or a
 *	header line Python takes for the body's first (mime_pyhdr.c), have
 *	the whole event written again with every multipart split where
 *	Python splits it by mime_sub.c (w->strict, at most
 *	MIME_SUBPARSE_MAX deep), its parts in the message's order; so has
 *	one that cannot be split (no boundary, or one that never comes),
 *	which is an attachment too, its body, in the message's order. A
 *	multipart whose closing boundary never comes (a mail cut short)
 *	ends its last leaf one line end short, as Python's email reads it
 *	(mime_leaf_end()). The caller ends the event
 *	(payload_finish()).
 *
 *	"authentication" (authres.c) is made from the raw values of the
 *	top-level headers, before Dovecot decodes any encoded word: the
 *	first Authentication-Results whose authserv-id is
 *	options.trusted_id (the topmost: the one our host added last),
 *	From: (with how many there are), the DKIM-Signatures and the MIME
 *	headers they must sign (mime_auth.c). With options.raw_message the
 *	whole input, CRLF line ends (decode_crlf()), goes into
 *	raw_message after the attachments, its bytes up to
 *	options.max_raw (past it: size and sha256 only).
 *
 *	The filename is Content-Disposition's filename, else
 *	Content-Type's name, each in any form senders use: RFC 2231
 *	(name*=charset'lang'%XX, continuations name*0*=, name*1=), RFC
 *	2047 encoded words, quoted strings, any letter case. An RFC 2231
 *	form beats a plain one for the same parameter (RFC 6266 4.3).
 *
 *	Hostile structure is the parser's business: Dovecot limits nesting
 *	(100) and parts (10,000) and treats what follows as body. What
 *	could be parsed is returned, and msg.limit says which limit was
 *	reached (the plugin logs it), as for the split's own limits. But
 *	a header Dovecot would cut (its values past 10 MB of one part's
 *	header, or 50 MB of all, come out empty) makes mime_read() fail:
 *	an event with an empty From or filename that the mailbox copy has
 *	is a lie, not a limit.
 *
 *	Every byte mime_read() gives out went through decode_crlf() (the
 *	same whichever copy of the message Dovecot hands over), as
 *	mime_digest()'s (mime_lmtp.c).
 * DIAGNOSTICS
 *	-1 with error_r when the message cannot be read at all (an I/O
 *	error on the stream) or its header is past Dovecot's limits.
 */

#include "lib.h"

#include <ctype.h>

#include "array.h"
#include "str.h"
#include "istream.h"
#include "charset-utf8.h"
#include "message-parser.h"
#include "message-decoder.h"
#include "message-header-decode.h"
#include "message-header-parser.h"
#include "rfc822-parser.h"

#include <openssl/evp.h>

#include "decode.h"
#include "mime.h"
#include "mime_int.h"
#include "mime_param.h"
#include "payload.h"
#include "wh_alloc.h"

#ifndef MESSAGE_HEADER_BLOCK_DEFAULT_MAX_SIZE	/* a Dovecot that cuts no value */
#define MESSAGE_HEADER_BLOCK_DEFAULT_MAX_SIZE SIZE_MAX
#endif
#ifndef MESSAGE_PARSER_DEFAULT_ALL_HEADERS_MAX_SIZE
#define MESSAGE_PARSER_DEFAULT_ALL_HEADERS_MAX_SIZE SIZE_MAX
#endif

static const char *const mime_top_headers[PAYLOAD_HEADER_COUNT] = {
    "From", "To", "Cc", "Subject", "Date", "Message-ID",
};

/*
 * mime_boundary - a multipart's boundary as Python's email reads it: the
 * form given first (boundary*=''b2; boundary=b1 is b2), decoded, trailing
 * white space cut (get_boundary()); none when empty or not US-ASCII
 * (mime_param_boundary()). When Dovecot's parser reads another one (the
 * first plain boundary=: it does not read RFC 2231's forms), the part is
 * parsed again with Python's (w->reparse, mime_subparse()), or is one
 * attachment when Python reads none: the two disagreed on where the
 * bill's PDF is.
 */
static void mime_boundary(struct mime_walk *w, const struct rfc822_parser_context *params)
{
    struct rfc822_parser_context first = *params, plain = *params;
    const char *py = mime_param_boundary(&first);
    const char *dc = mime_param_dovecot(&plain, "boundary");

    i_free(w->boundary);
    w->boundary = i_strdup(py);
    w->reparse = py == NULL ? dc != NULL
	: dc == NULL || strcmp(t_strndup(py, MIME_BOUNDARY_CUT),
			       t_strndup(dc, MIME_BOUNDARY_CUT)) != 0;
    w->dc_len = dc == NULL ? 0 : I_MIN(strlen(dc), MIME_BOUNDARY_CUT);
}

/*
 * mime_part_header - what a part's own headers say about it (raw values).
 * Returns the Content-Type value Dovecot's decoder is to read instead of
 * the header's own (mime_charset_read()), or NULL.
 */
static const char *mime_part_header(struct mime_walk *w, const struct message_header_line *hdr)
{
    struct rfc822_parser_context parser, params;
    const char *decoder_value = NULL;
    string_t *token;

    rfc822_parser_init(&parser, hdr->full_value, hdr->full_value_len, NULL);
    rfc822_skip_lwsp(&parser);
    /* given twice, the first one counts even when it is invalid: so
       Dovecot's parser and Python's email read them */
    if (strcasecmp(hdr->name, "Content-Type") == 0 && !w->ct_seen) {
	w->ct_seen = TRUE;
	if (rfc822_parse_content_type(&parser, w->content_type) < 0)
	    str_truncate(w->content_type, 0);
	str_lcase(str_c_modifiable(w->content_type));
	i_free(w->ct_name);
	params = parser;			/* the parameters, read again */
	w->ct_name = i_strdup(mime_param(&parser, "name"));
	if (strncmp(str_c(w->content_type), "multipart/", 10) == 0)
	    mime_boundary(w, &params);
	if (strcmp(str_c(w->content_type), "multipart/related") == 0)
	    w->related_start = i_strdup_empty(mime_param_pick(&params, "start",
							       MIME_PARAM_FIRST));
	if (strncmp(str_c(w->content_type), "text/", 5) == 0)
	    w->text_charset = mime_charset_read(&params, str_c(w->content_type),
						&decoder_value);
    } else if (strcasecmp(hdr->name, "Content-ID") == 0 && w->content_id == NULL) {
	/* as get_body() compares it: white space after the colon cut */
	size_t  skip = 0;

	while (skip < hdr->full_value_len && (hdr->full_value[skip] == ' '
					      || hdr->full_value[skip] == '\t'))
	    skip++;
	w->content_id = i_strndup(hdr->full_value + skip, hdr->full_value_len - skip);
    } else if (strcasecmp(hdr->name, "Content-Disposition") == 0 && !w->cd_seen) {
	w->cd_seen = TRUE;
	token = t_str_new(32);
	if (rfc822_parse_mime_token(&parser, token) >= 0)
	    w->disposition_attachment = strcasecmp(str_c(token), "attachment") == 0;
	w->disp_filename = i_strdup(mime_param(&parser, "filename"));
    } else if (strcasecmp(hdr->name, "Content-Transfer-Encoding") == 0 && !w->cte_seen) {
	w->cte_seen = TRUE;
	w->cte = mime_cte_read(hdr->full_value, hdr->full_value_len);
    }
    rfc822_parser_deinit(&parser);
    return (decoder_value);
}

/* mime_top_header - a top-level header the event carries, decoded (raw) */

static void mime_top_header(struct mime_walk *w, const struct message_header_line *hdr)
{
    struct payload_message *msg = w->msg;
    struct payload_bytes *into = NULL;
    buffer_t *value;

    for (int i = 0; i < PAYLOAD_HEADER_COUNT && into == NULL; i++)
	if (strcasecmp(hdr->name, mime_top_headers[i]) == 0)
	    into = msg->header[i].data == NULL ? &msg->header[i] : NULL;
    /* every one: their number is bounded by Dovecot's header limit */
    if (into == NULL && strcasecmp(hdr->name, "Authentication-Results") == 0) {
	msg->auth_results = wh_realloc(msg->auth_results,
				       (msg->auth_count + 1) * sizeof(*msg->auth_results));
	memset(&msg->auth_results[msg->auth_count], 0, sizeof(*msg->auth_results));
	into = &msg->auth_results[msg->auth_count++];
    }
    if (into == NULL)
	return;
    value = t_buffer_create(hdr->full_value_len + 16);
    if (into == &msg->header[PAYLOAD_FROM] || into == &msg->header[PAYLOAD_TO]
	|| into == &msg->header[PAYLOAD_CC])	/* an encoded name quoted */
	mime_address_utf8(hdr->full_value, hdr->full_value_len, value);
    else
	mime_header_utf8(hdr->full_value, hdr->full_value_len, value);
    payload_bytes_append(into, value->data, value->used, MIME_HEADER_LIMIT);
}

/* mime_attachment - an attachment starts: its sha256 and size from 0 */

void    mime_attachment(struct mime_walk *w, const char *name, const char *ctype,
			            enum decode_cte cte)
{
    payload_attachment_begin(w->out, name, ctype);
    w->att_size = 0;
    w->att_kept = TRUE;
    decode_init(&w->dec, cte);
    if (EVP_DigestInit_ex(w->sha, EVP_sha256(), NULL) != 1)
	i_panic("SHA-256 unavailable");
}

/* mime_in_embedded - is the part inside a message/rfc822 part? */

bool    mime_in_embedded(const struct mime_walk *w, const struct message_part *part)
{
    for (part = part->parent; part != NULL; part = part->parent)
	if ((part->flags & MESSAGE_PART_FLAG_MESSAGE_RFC822) != 0)
	    return (TRUE);
    return (w->under_embedded);
}

/* mime_in_unsplit - is the part inside a multipart that is parsed again? */

static bool mime_in_unsplit(const struct mime_walk *w, const struct message_part *part)
{
    struct message_part *const *u;

    for (part = part->parent; part != NULL; part = part->parent)
	array_foreach(&w->unsplit, u)
	    if (*u == part)
	    return (TRUE);
    return (FALSE);
}

/* mime_later - list the part once the parse is over (mime_embedded_read) */

static void mime_later(struct mime_walk *w, const char *ctype, bool body_ok, int related)
{
    struct mime_embedded *e = array_append_space(&w->embedded);
    const char *name = w->disp_filename ? w->disp_filename : w->ct_name;

    e->part = w->part;
    e->filename = i_strdup(name);
    e->content_type = i_strdup(ctype);
    e->cte = w->cte;
    e->body_ok = body_ok;
    e->related = related;
    if ((w->part->flags & MESSAGE_PART_FLAG_MULTIPART) != 0) {
	e->boundary = i_strdup(w->boundary);
	e->reparse = w->reparse;
    }
}

/*
 * mime_part_start - end of a part's headers: where its body goes. With
 * no Content-Type a part is text/plain, or message/rfc822 in a
 * multipart/digest (RFC 2046 5.1.5: Dovecot's flag says which). The
 * text and html are the first of the parts Python's get_body() looks
 * at (mime_body.c): never inside an attached message, nor a part of a
 * multipart/related but its root.
 */
static void mime_part_start(struct mime_walk *w)
{
    bool    embedded = (w->part->flags & MESSAGE_PART_FLAG_MESSAGE_RFC822) != 0;
    const char *ctype = str_len(w->content_type) ? str_c(w->content_type)
	: embedded ? "message/rfc822" : "text/plain";
    bool    body_ok, inline_part;
    const struct mime_box *box;

    w->kind = MIME_SKIP;
    if (!w->begun)				/* the top headers are all in */
	mime_begin(w);
    if (mime_in_unsplit(w, w->part))
	return;					/* listed from its subparse */
    body_ok = mime_body_part(w, ctype);
    inline_part = body_ok && w->disp_filename == NULL && w->ct_name == NULL
	&& !mime_in_embedded(w, w->part);
    if ((w->part->flags & MESSAGE_PART_FLAG_MULTIPART) != 0) {
	/* a container: its children follow; without any, it is a leaf.
	   Strict, each is split by mime_sub.c, but for the one around a
	   part split there (the top of a subparse: its boundary is ours).
	   Not strict, one Dovecot splits otherwise (or not at all) means
	   a strict walk: its parts must be read in the message's order,
	   the text is the first of them */
	if (w->strict && (w->depth == 0 || w->part->parent != NULL))
	    w->reparse = TRUE;
	else if (!w->strict && (w->reparse || w->boundary == NULL))
	    w->differs = TRUE;
	box = array_back(&w->boxes);		/* mime_body_part() made it */
	mime_later(w, ctype, body_ok, box->related);
	if (w->reparse)
	    array_push_back(&w->unsplit, &w->part);
	else
	    mime_check_multipart(w);
    } else if (embedded) {
	/* its children follow; it is listed, and its bytes read, at the end */
	mime_later(w, ctype, FALSE, -1);
    } else if (inline_part && strcmp(ctype, "text/plain") == 0 && !w->text_seen) {
	w->kind = MIME_TEXT;
	w->text_seen = TRUE;
	decode_init(&w->dec, w->cte);
	payload_text_begin(w->out, 0);
    } else if (inline_part && strcmp(ctype, "text/html") == 0 && !w->html_seen) {
	w->kind = MIME_HTML;
	w->html_seen = TRUE;
	decode_init(&w->dec, w->cte);
	payload_text_begin(w->out, 1);
    } else {
	w->kind = MIME_ATTACHMENT;
	mime_attachment(w, w->disp_filename ? w->disp_filename : w->ct_name, ctype, w->cte);
    }
}

/* mime_attachment_bytes - decoded bytes of the current attachment */

static void mime_attachment_bytes(struct mime_walk *w, const unsigned char *data, size_t size)
{
    (void) EVP_DigestUpdate(w->sha, data, size);
    w->att_size += size;
    if (w->att_kept && w->att_size <= w->max_attachment) {
	payload_attachment_data(w->out, data, size);
    } else if (w->att_kept) {			/* over the limit: listed only */
	w->att_kept = FALSE;
	payload_attachment_drop(w->out);
    }
}

void    mime_attachment_raw(struct mime_walk *w, const unsigned char *data, size_t size)
{
    unsigned char *out = t_malloc_no0(DECODE_OUT_MAX(size));

    mime_attachment_bytes(w, out, decode_more(&w->dec, data, size, out));
}

void    mime_attachment_done(struct mime_walk *w)
{
    unsigned char tail[2], sha256[32];
    unsigned int len = 0;

    mime_attachment_bytes(w, tail, decode_finish(&w->dec, tail));
    (void) EVP_DigestFinal_ex(w->sha, sha256, &len);
    payload_attachment_end(w->out, w->att_kept, w->att_size, sha256);
}

static void mime_part_end(struct mime_walk *w)
{
    if (w->kind == MIME_ATTACHMENT)
	mime_attachment_done(w);
    else if (w->kind == MIME_TEXT || w->kind == MIME_HTML)
	payload_text_end(w->out);
    w->kind = MIME_SKIP;
    w->disposition_attachment = FALSE;
    w->cte_seen = w->ct_seen = w->cd_seen = FALSE;
    w->text_charset = MIME_TEXT_AS_IS;
    w->cte = DECODE_IDENTITY;
    i_free_and_null(w->disp_filename);
    i_free_and_null(w->ct_name);
    i_free_and_null(w->content_id);
    i_free_and_null(w->related_start);
    i_free_and_null(w->boundary);
    w->reparse = FALSE;
    str_truncate(w->content_type, 0);
}

/*
 * mime_header_count - Dovecot's parser silently empties the header values
 * that come past 10 MB of one part's header (50 MB of all parts'): the
 * event would then say From, Subject or a filename is "" while the
 * mailbox copy and every other parser read them. Counted as Dovecot
 * counts (the values' bytes; name, colon and value for all parts), such
 * a message is refused rather than described wrongly.
 */
static void mime_header_count(struct mime_walk *w, const struct message_header_line *hdr)
{
    w->hdr_block += hdr->full_value_len;
    w->hdr_all += hdr->name_len + hdr->middle_len + hdr->full_value_len;
    if (w->hdr_block >= MESSAGE_HEADER_BLOCK_DEFAULT_MAX_SIZE
	|| w->hdr_all + w->hdr_block >= MESSAGE_PARSER_DEFAULT_ALL_HEADERS_MAX_SIZE)
	w->hdr_cut = TRUE;
}

static void mime_header_block(struct mime_walk *w, struct message_decoder_context *decoder,
			              struct message_block *whole)
{
    struct message_block block, plain, unfolded, *raw = whole;
    struct message_header_line hdr, restored;
    const char *decoder_value;
    bool    decoded;

    mime_check_header(w, raw->hdr);		/* where Python's header ends */
    mime_fold_note(w, raw->hdr);
    /* the decoder sees each line first: on the first of a folded header
       it asks the parser for the whole value, which the last line has */
    if (raw->hdr->eoh || raw->hdr->continues) {
	(void) message_decoder_decode_next_block(decoder, raw, &block);
	return;
    }
    unfolded = *raw;
    unfolded.hdr = mime_fold_restore(w, raw->hdr, &restored);
    raw = &unfolded;
    mime_header_count(w, raw->hdr);
    decoder_value = mime_part_header(w, raw->hdr);
    if (decoder_value != NULL) {
	hdr = *raw->hdr;
	hdr.full_value = (const unsigned char *) decoder_value;
	hdr.full_value_len = strlen(decoder_value);
	plain = *raw;
	plain.hdr = &hdr;
	decoded = message_decoder_decode_next_block(decoder, &plain, &block);
    } else if (strcasecmp(raw->hdr->name, "Content-Transfer-Encoding") == 0) {
	decoded = FALSE;			/* decode.c undoes it (mime_body_data()) */
    } else {
	decoded = message_decoder_decode_next_block(decoder, raw, &block);
    }
    if (raw->part->parent == NULL && w->depth == 0)
	mime_raw_top(w, raw->hdr);
    /* not the decoder's value: it checks each encoded word alone */
    if (decoded && raw->part->parent == NULL && w->depth == 0)
	mime_top_header(w, raw->hdr);
}

/* mime_body_data - body bytes (CRLF line ends) of the current leaf */

/* mime_text_ascii - US-ASCII text as Python reads it: 8-bit bytes U+FFFD */

static void mime_text_ascii(struct mime_walk *w, const unsigned char *data, size_t size)
{
    size_t  start = 0;

    for (size_t i = 0; i < size; i++)
	if (data[i] >= 0x80) {
	    payload_text_data(w->out, data + start, i - start);
	    payload_text_data(w->out, "\xEF\xBF\xBD", 3);
	    start = i + 1;
	}
    payload_text_data(w->out, data + start, size - start);
}

/*
 * mime_text_data - decoded bytes of the text or html, to UTF-8 by Dovecot's
 * decoder (the charset only: it is not shown the Content-Transfer-Encoding,
 * mime_header_block()) where there is one to convert, else as they are
 */
static void mime_text_data(struct mime_walk *w, struct message_decoder_context *decoder,
			           const unsigned char *data, size_t size)
{
    struct message_block plain, block;

    if (size == 0)
	return;
    if (w->text_charset == MIME_TEXT_ASCII) {
	mime_text_ascii(w, data, size);
	return;
    }
    if (w->text_charset == MIME_TEXT_AS_IS) {
	payload_text_data(w->out, data, size);
	return;
    }
    i_zero(&plain);
    plain.part = w->part;
    plain.data = data;
    plain.size = size;
    if (message_decoder_decode_next_block(decoder, &plain, &block) && block.size > 0)
	payload_text_data(w->out, block.data, block.size);
}

/*
 * mime_body_data - body bytes (CRLF line ends) of the current leaf. The
 * transfer encoding is undone by decode.c for the text and html as for
 * attachments: as Python's email undoes it (Dovecot's decoder dropped
 * white space before a quoted-printable line end, and base64 after a
 * stray byte).
 */
static void mime_body_data(struct mime_walk *w, struct message_decoder_context *decoder,
			           const unsigned char *data, size_t size)
{
    unsigned char *out;

    if (size == 0)
	return;
    if (w->kind == MIME_ATTACHMENT) {
	mime_attachment_raw(w, data, size);
	return;
    }
    out = t_malloc_no0(DECODE_OUT_MAX(size));
    mime_text_data(w, decoder, out, decode_more(&w->dec, data, size, out));
}

/* mime_eol_tail - bytes of a line end that data ends with (0, 1 or 2) */

static size_t mime_eol_tail(const unsigned char *data, size_t size)
{
    if (size >= 2 && data[size - 2] == '\r' && data[size - 1] == '\n')
	return (2);
    return (size >= 1 && (data[size - 1] == '\n' || data[size - 1] == '\r') ? 1 : 0);
}

/*
 * mime_leaf_end - the end of the current part. A leaf of a multipart
 * holds back its last line end (mime_block()): before a boundary it is
 * the boundary's and Dovecot leaves it out already; where the input
 * ended without one (a bill cut short, no closing boundary), Python's
 * email strips one line end from that last part too (feedparser's
 * NLCRE_eol), and so must the event's bytes. Anywhere else it is the
 * body's.
 */
static void mime_leaf_end(struct mime_walk *w, struct message_decoder_context *decoder,
			          bool at_eof)
{
    unsigned char tail[2];

    if (w->held_len > 0 && !at_eof)
	mime_body_data(w, decoder, w->held, w->held_len);
    w->held_len = 0;
    if (w->kind == MIME_TEXT || w->kind == MIME_HTML)
	mime_text_data(w, decoder, tail, decode_finish(&w->dec, tail));
    mime_part_end(w);
}

/*
 * mime_in_multipart - whether a leaf lies in a multipart, directly or
 * through attached messages: a bill cut short whose last part is a
 * message/rfc822 has the leaf that ends it trimmed by Python too
 */
static bool mime_in_multipart(const struct message_part *part)
{
    const struct message_part *up = part->parent;

    while (up != NULL && (up->flags & MESSAGE_PART_FLAG_MESSAGE_RFC822) != 0)
	up = up->parent;
    return (up != NULL && (up->flags & MESSAGE_PART_FLAG_MULTIPART) != 0);
}

/*
 * mime_block - one block of the parse. Boundary lines come as blocks of
 * their multipart (MESSAGE_PARSER_FLAG_INCLUDE_BOUNDARIES), so that a
 * leaf that a boundary ended is told from one the input's end ended.
 */
static void mime_block(struct mime_walk *w, struct message_decoder_context *decoder,
		               struct message_block *raw)
{
    struct message_block block;
    unsigned char *data;
    size_t  size;

    mime_check_block(w, raw);
    if (raw->part != w->part) {
	mime_leaf_end(w, decoder, FALSE);
	w->part = raw->part;
	w->last_cr = 0;
	w->hdr_block = w->hdr_lines = 0;
    }
    if (raw->hdr != NULL) {
	mime_header_block(w, decoder, raw);
    } else if (raw->size == 0) {
	(void) message_decoder_decode_next_block(decoder, raw, &block);
	mime_part_start(w);
    } else if (w->kind != MIME_SKIP) {
	data = t_malloc_no0(DECODE_CRLF_MAX(raw->size) + sizeof(w->held));
	memcpy(data, w->held, w->held_len);
	size = w->held_len + decode_crlf(&w->last_cr, raw->data, raw->size, data + w->held_len);
	w->held_len = 0;
	if (mime_in_multipart(w->part)) {
	    w->held_len = mime_eol_tail(data, size);
	    size -= w->held_len;
	    memcpy(w->held, data + size, w->held_len);
	}
	mime_body_data(w, decoder, data, size);
    }
}

/*
 * mime_raw - the message as it arrived: the input again, with CRLF line
 * ends, base64-encoded and hashed as it is read; its bytes only up to
 * max_raw.
 */
static void mime_raw(struct mime_walk *w, struct istream *input, uoff_t max_raw)
{
    const unsigned char *data;
    size_t  size;

    payload_raw_begin(w->out);
    w->att_size = 0;
    w->att_kept = TRUE;
    w->max_attachment = max_raw;
    w->last_cr = 0;
    if (EVP_DigestInit_ex(w->sha, EVP_sha256(), NULL) != 1)
	i_panic("SHA-256 unavailable");
    i_stream_seek(input, 0);
    while (i_stream_read_more(input, &data, &size) > 0) {
	T_BEGIN {
	    unsigned char *crlf = t_malloc_no0(DECODE_CRLF_MAX(size));

	    mime_attachment_bytes(w, crlf, decode_crlf(&w->last_cr, data, size, crlf));
	} T_END;
	i_stream_skip(input, size);
    }
    {
	unsigned char sha256[32];
	unsigned int len = 0;

	(void) EVP_DigestFinal_ex(w->sha, sha256, &len);
	payload_attachment_end(w->out, w->att_kept, w->att_size, sha256);
    }
}

/*
 * mime_limit - a limit of the parse was reached: what it was, for the
 * log (the event holds every byte still; the first one reached is said)
 */
void    mime_limit(struct mime_walk *w, const char *what)
{
    if (w->msg->limit == NULL)
	w->msg->limit = what;
}

/* mime_overflow - whether Dovecot's parser stopped looking into a part */

static bool mime_overflow(const struct message_part *part)
{
    for (; part != NULL; part = part->next)
	if ((part->flags & MESSAGE_PART_FLAG_OVERFLOW) != 0 || mime_overflow(part->children))
	    return (TRUE);
    return (FALSE);
}

/*
 * mime_parse - the parts of input, then what waits for the parse to end
 * (message/rfc822 parts, multiparts Dovecot did not split), with their
 * own list: a subparse runs while its caller's list is being read.
 */
void    mime_parse(struct mime_walk *w, struct istream *input)
{
    const struct message_parser_settings set = {
	.hdr_flags = MESSAGE_HEADER_PARSER_FLAG_CLEAN_ONELINE,
	.flags = MESSAGE_PARSER_FLAG_INCLUDE_BOUNDARIES,	/* see mime_block() */
    };
    ARRAY_TYPE(mime_embedded) callers = w->embedded;
    ARRAY_TYPE(mime_part_ptr) callers_unsplit = w->unsplit;
    ARRAY_TYPE(mime_box) callers_boxes = w->boxes;
    pool_t  callers_pool = w->pool;
    struct message_parser_ctx *parser;
    struct message_decoder_context *decoder;
    struct message_block raw;
    struct message_part *parts;
    pool_t  pool = pool_alloconly_create("lmtp_webhook mime", 8192);

    i_array_init(&w->embedded, 4);
    i_array_init(&w->unsplit, 4);
    i_array_init(&w->boxes, 4);
    w->part = NULL;
    w->pool = pool;
    parser = message_parser_init(pool, input, &set);
    decoder = message_decoder_init(NULL, MESSAGE_DECODER_FLAG_RETURN_BINARY);
    /* once Dovecot split a part Python does not, all is read again */
    while (!w->differs && message_parser_parse_next_block(parser, &raw) > 0) {
	T_BEGIN {
	    mime_block(w, decoder, &raw);
	} T_END;
    }
    mime_check_end(w);
    mime_leaf_end(w, decoder, TRUE);		/* no boundary ended it */
    if (!w->begun)				/* no part at all (an I/O error) */
	mime_begin(w);
    message_decoder_deinit(&decoder);
    message_parser_deinit(&parser, &parts);
    if (mime_overflow(parts))
	mime_limit(w, "more MIME parts than Dovecot's parser reads (10,000, or 100 levels): "
		   "the last attachment holds the rest, not looked into");
    mime_embedded_read(w, input);		/* after an error: lists, frees */
    array_free(&w->embedded);
    array_free(&w->unsplit);
    array_free(&w->boxes);
    w->embedded = callers;
    w->unsplit = callers_unsplit;
    w->boxes = callers_boxes;
    w->pool = callers_pool;
    pool_unref(&pool);
}

/*
 * mime_walk_run - one walk of the whole message. Strict, every multipart
 * is split by mime_sub.c where Python's email splits it; else Dovecot's
 * parser splits those it reads as Python does (mime_check.c says when
 * one differs: w->differs).
 */
static void mime_walk_run(struct mime_walk *w, struct istream *input,
			          const struct mime_options *opt, struct payload_message *msg,
			          const struct payload_envelope *env, struct payload_writer *out,
			          ARRAY_TYPE(mime_related) *related, bool strict)
{
    i_zero(w);
    w->related = related;
    w->msg = msg;
    w->env = env;
    w->out = out;
    w->max_attachment = opt->max_attachment;
    w->trusted_id = opt->trusted_id;
    w->strict = strict;
    w->content_type = str_new(default_pool, 64);
    i_array_init(&w->fold_tabs, 4);
    if ((w->sha = EVP_MD_CTX_new()) == NULL)
	i_fatal_status(FATAL_OUTOFMEM, "EVP_MD_CTX_new() failed");
    if (strict)
	mime_sub_top(w, input);			/* its header as Python reads it too */
    else
	mime_parse(w, input);
    if (opt->raw_message && !w->differs && input->stream_errno == 0 && w->error == NULL)
	mime_raw(w, input, opt->max_raw);
    EVP_MD_CTX_free(w->sha);
    mime_auth_free(w);
    array_free(&w->fold_tabs);
    str_free(&w->content_type);
}

int     mime_read(struct istream *input, const struct mime_options *opt,
		          struct payload_message *msg, const struct payload_envelope *env,
		          struct payload_writer *out, const char **error_r)
{
    struct mime_walk w;
    uoff_t  start = input->v_offset;
    ARRAY_TYPE(mime_related) related;
    bool    strict = FALSE;

    i_array_init(&related, 4);
    mime_walk_run(&w, input, opt, msg, env, out, &related, FALSE);
    while (input->stream_errno == 0 && w.error == NULL) {
	if (w.differs && !strict) {
	    /* Dovecot's parser split a multipart where Python's email
	       does not: the event again, each multipart split here */
	    strict = TRUE;
	    mime_body_free(&related);		/* numbered otherwise there */
	} else if (w.differs || !mime_body_again(&related)) {
	    break;
	}					/* else a related's root was not known */
	payload_message_free(msg);
	payload_writer_rewind(out);
	i_stream_seek(input, start);
	mime_walk_run(&w, input, opt, msg, env, out, &related, strict);
    }
    mime_body_free(&related);
    array_free(&related);
    if (input->stream_errno != 0 || w.error != NULL) {
	*error_r = input->stream_errno == 0 ? t_strdup(w.error)
	    : t_strdup_printf("read(%s) failed: %s", i_stream_get_name(input),
			      i_stream_get_error(input));
	i_free(w.error);
	return (-1);
    }
    if (w.hdr_cut) {
	*error_r = "the message's header is past what Dovecot parses whole (10 MB in "
	    "one part, 50 MB in all), so the event would lack its values: refused";
	return (-1);
    }
    return (0);
}
