/*
 * NAME
 *	mime 3
 * SUMMARY
 *	fill a payload_message with Dovecot's MIME parser
 * SYNOPSIS
 *	#include "lib.h"
 *	#include "mime.h"
 *
 *	int	mime_read(input, max_attachment_size, &msg, &error)
 * DESCRIPTION
 *	Reads the whole message once with message_parser and
 *	message_decoder: quoted-printable and base64 are decoded, text
 *	parts and encoded-word headers come out as UTF-8. The top-level
 *	From, To, Cc, Subject, Date, Message-ID and every
 *	Authentication-Results are kept (each at most 64 KB: a 1 MB
 *	header does not become a 1 MB JSON string). The first inline
 *	text/plain part is the text, the first inline text/html part the
 *	html; every other leaf part is an attachment with its decoded
 *	size and SHA-256, and its content when not over
 *	max_attachment_size.
 *
 *	Hostile structure is the parser's business: Dovecot limits nesting
 *	(100) and parts (10,000) and treats what follows as body; bad
 *	base64 ends the part's content where it goes wrong. What could be
 *	parsed is returned.
 * DIAGNOSTICS
 *	-1 with error_r only when the message cannot be read at all
 *	(an I/O error on the stream).
 */

#include "lib.h"
#include "str.h"
#include "istream.h"
#include "message-parser.h"
#include "message-decoder.h"
#include "rfc822-parser.h"
#include "rfc2231-parser.h"

#include <openssl/evp.h>

#include "mime.h"
#include "payload.h"
#include "wh_alloc.h"

#define MIME_HEADER_LIMIT (64 * 1024)

enum mime_kind { MIME_SKIP, MIME_TEXT, MIME_HTML, MIME_ATTACHMENT };

struct mime_walk {
    struct payload_message *msg;
    uoff_t  max_attachment;
    struct message_part *part;
    string_t *content_type;		/* of the current part */
    char   *filename;
    bool    disposition_attachment;
    enum mime_kind kind;
    struct payload_attachment *att;
    EVP_MD_CTX *sha;
};

static const char *const mime_top_headers[PAYLOAD_HEADER_COUNT] = {
    "From", "To", "Cc", "Subject", "Date", "Message-ID",
};

/* mime_params - remember a filename= or name= parameter */

static void mime_params(struct mime_walk *w, struct rfc822_parser_context *parser,
			        const char *wanted)
{
    const char *const *params;

    (void) rfc2231_parse(parser, &params);
    for (; params[0] != NULL; params += 2)
	if (strcasecmp(params[0], wanted) == 0 && w->filename == NULL)
	    w->filename = i_strdup(params[1]);
}

static void mime_part_header(struct mime_walk *w, const struct message_header_line *hdr)
{
    struct rfc822_parser_context parser;
    string_t *token;

    rfc822_parser_init(&parser, hdr->full_value, hdr->full_value_len, NULL);
    rfc822_skip_lwsp(&parser);
    if (strcasecmp(hdr->name, "Content-Type") == 0) {
	str_truncate(w->content_type, 0);
	if (rfc822_parse_content_type(&parser, w->content_type) < 0)
	    str_truncate(w->content_type, 0);
	str_lcase(str_c_modifiable(w->content_type));
	mime_params(w, &parser, "name");
    } else if (strcasecmp(hdr->name, "Content-Disposition") == 0) {
	token = t_str_new(32);
	if (rfc822_parse_mime_token(&parser, token) >= 0)
	    w->disposition_attachment = strcasecmp(str_c(token), "attachment") == 0;
	i_free_and_null(w->filename);	/* filename= beats Content-Type's name= */
	mime_params(w, &parser, "filename");
    }
    rfc822_parser_deinit(&parser);
}

static void mime_top_header(struct mime_walk *w, const struct message_header_line *hdr)
{
    struct payload_message *msg = w->msg;

    for (int i = 0; i < PAYLOAD_HEADER_COUNT; i++)
	if (strcasecmp(hdr->name, mime_top_headers[i]) == 0 && msg->header[i].data == NULL) {
	    payload_bytes_append(&msg->header[i], hdr->full_value, hdr->full_value_len,
				 MIME_HEADER_LIMIT);
	    return;
	}
    if (strcasecmp(hdr->name, "Authentication-Results") == 0 && msg->auth_count < 100) {
	msg->auth_results = wh_realloc(msg->auth_results,
				       (msg->auth_count + 1) * sizeof(*msg->auth_results));
	memset(&msg->auth_results[msg->auth_count], 0, sizeof(*msg->auth_results));
	payload_bytes_append(&msg->auth_results[msg->auth_count++], hdr->full_value,
			     hdr->full_value_len, MIME_HEADER_LIMIT);
    }
}

/* mime_part_start - end of a part's headers: where its body goes */

static void mime_part_start(struct mime_walk *w)
{
    const char *ctype = str_len(w->content_type) ? str_c(w->content_type) : "text/plain";
    bool    inline_part = !w->disposition_attachment && w->filename == NULL;

    if ((w->part->flags & MESSAGE_PART_FLAG_MULTIPART) != 0
	|| (w->part->flags & MESSAGE_PART_FLAG_MESSAGE_RFC822) != 0) {
	w->kind = MIME_SKIP;		/* containers: their children follow */
    } else if (inline_part && strcmp(ctype, "text/plain") == 0 && w->msg->text.data == NULL) {
	w->kind = MIME_TEXT;
	payload_bytes_append(&w->msg->text, "", 0, 1);
    } else if (inline_part && strcmp(ctype, "text/html") == 0 && w->msg->html.data == NULL) {
	w->kind = MIME_HTML;
	payload_bytes_append(&w->msg->html, "", 0, 1);
    } else {
	w->kind = MIME_ATTACHMENT;
	w->att = payload_attachment_add(w->msg);
	w->att->filename = w->filename ? wh_strdup(w->filename) : NULL;
	w->att->content_type = wh_strdup(ctype);
	w->att->content_kept = 1;
	if (EVP_DigestInit_ex(w->sha, EVP_sha256(), NULL) != 1)
	    i_panic("SHA-256 unavailable");
    }
}

static void mime_part_body(struct mime_walk *w, const unsigned char *data, size_t size)
{
    struct payload_attachment *att = w->att;

    switch (w->kind) {
    case MIME_TEXT:
	payload_bytes_append(&w->msg->text, data, size, SIZE_MAX - 1);
	break;
    case MIME_HTML:
	payload_bytes_append(&w->msg->html, data, size, SIZE_MAX - 1);
	break;
    case MIME_ATTACHMENT:
	(void) EVP_DigestUpdate(w->sha, data, size);
	att->size += size;
	if (att->content_kept && att->size <= w->max_attachment) {
	    payload_bytes_append(&att->content, data, size, SIZE_MAX - 1);
	} else if (att->content_kept) {	/* over the limit: listed only */
	    att->content_kept = 0;
	    free(att->content.data);
	    att->content.data = NULL;
	    att->content.len = 0;
	}
	break;
    case MIME_SKIP:
	break;
    }
}

static void mime_part_end(struct mime_walk *w)
{
    if (w->kind == MIME_ATTACHMENT) {
	unsigned int len = 0;

	(void) EVP_DigestFinal_ex(w->sha, w->att->sha256, &len);
	if (w->att->content_kept && w->att->content.data == NULL)
	    payload_bytes_append(&w->att->content, "", 0, 1);
    }
    w->kind = MIME_SKIP;
    w->att = NULL;
    w->disposition_attachment = FALSE;
    i_free_and_null(w->filename);
    str_truncate(w->content_type, 0);
}

static void mime_block(struct mime_walk *w, const struct message_block *block)
{
    if (block->part != w->part) {
	mime_part_end(w);
	w->part = block->part;
    }
    if (block->hdr != NULL) {
	if (block->hdr->eoh)
	    return;
	if (block->part->parent == NULL)
	    mime_top_header(w, block->hdr);
	mime_part_header(w, block->hdr);
    } else if (block->size == 0) {
	mime_part_start(w);
    } else {
	mime_part_body(w, block->data, block->size);
    }
}

int     mime_read(struct istream *input, uoff_t max_attachment_size,
		          struct payload_message *msg, const char **error_r)
{
    const struct message_parser_settings set = {
	.hdr_flags = MESSAGE_HEADER_PARSER_FLAG_CLEAN_ONELINE,
    };
    struct mime_walk w;
    struct message_parser_ctx *parser;
    struct message_decoder_context *decoder;
    struct message_block raw, block;
    struct message_part *parts;
    pool_t  pool = pool_alloconly_create("lmtp_webhook mime", 8192);
    int     ret;

    i_zero(&w);
    w.msg = msg;
    w.max_attachment = max_attachment_size;
    w.content_type = str_new(default_pool, 64);
    if ((w.sha = EVP_MD_CTX_new()) == NULL)
	i_fatal_status(FATAL_OUTOFMEM, "EVP_MD_CTX_new() failed");
    parser = message_parser_init(pool, input, &set);
    decoder = message_decoder_init(NULL, MESSAGE_DECODER_FLAG_RETURN_BINARY);
    while ((ret = message_parser_parse_next_block(parser, &raw)) > 0) {
	if (message_decoder_decode_next_block(decoder, &raw, &block))
	    mime_block(&w, &block);
    }
    mime_part_end(&w);
    message_decoder_deinit(&decoder);
    message_parser_deinit(&parser, &parts);
    msg->size = input->v_offset;
    EVP_MD_CTX_free(w.sha);
    str_free(&w.content_type);
    pool_unref(&pool);
    if (input->stream_errno != 0) {
	*error_r = t_strdup_printf("read(%s) failed: %s", i_stream_get_name(input),
				   i_stream_get_error(input));
	return (-1);
    }
    return (0);
}
