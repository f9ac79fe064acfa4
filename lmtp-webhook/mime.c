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
 *	uoff_t	mime_lmtp_data_offset(input, session_id)
 *	int	mime_digest(input, prefix, md, &size, &error)
 * DESCRIPTION
 *	mime_read() reads the whole message once with message_parser and
 *	writes the event with the payload writer as it goes (payload.c):
 *	nothing grows with the message. The top-level From, To, Cc,
 *	Subject, Date, Message-ID and every Authentication-Results are
 *	kept in msg, encoded words decoded to UTF-8 (each at most 64 KB: a
 *	1 MB header does not become a 1 MB JSON string), and written when
 *	the first part starts. The first inline text/plain part is the
 *	text, the first inline text/html part the html, both converted to
 *	UTF-8 by Dovecot's message_decoder.
 *
 *	Every other part that is not a multipart is an attachment: its
 *	bytes are the body with the transfer encoding undone (decode.c)
 *	and nothing else, whatever charset= the part claims; size and
 *	SHA-256 are of those bytes; the content is sent when not over
 *	max_attachment_size. A message/rfc822 part is an attachment too
 *	(the embedded message's bytes, read from the input once the parse
 *	is done, so these come after the others in the list); the parts
 *	inside it are listed as well. The caller ends the event
 *	(payload_finish()).
 *
 *	"authentication" (authres.c) is made from the raw values of the
 *	top-level headers, before Dovecot decodes any encoded word: the
 *	first Authentication-Results whose authserv-id is
 *	options.trusted_id (the topmost: the one our host added last) and
 *	From: (with how many there are). With options.raw_message the
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
 *	could be parsed is returned. But a header Dovecot would cut (its
 *	values past 10 MB of one part's header, or 50 MB of all, come out
 *	empty) makes mime_read() fail: an event with an empty From or
 *	filename that the mailbox copy has is a lie, not a limit.
 *
 *	mime_lmtp_data_offset() finds where the message the LMTP client
 *	sent starts in the stream Dovecot's lmtp gives to delivery: lmtp
 *	puts its own Return-Path:, Delivered-To: (one recipient only) and
 *	Received: (with "id TRANSACTION") before it, and these differ
 *	from one attempt to the next while the client's bytes (Postfix's
 *	queue file) do not. A stream that does not start with Return-Path:
 *	is taken as it is (offset 0).
 *
 *	mime_digest() is the SHA-256 of prefix (with its NUL) and of the
 *	message, and its size, both with CRLF line ends (decode_crlf():
 *	the same whichever copy of the message Dovecot hands over). Every
 *	byte mime_read() gives out went through decode_crlf() too.
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

#include "authres.h"
#include "decode.h"
#include "mime.h"
#include "payload.h"
#include "wh_alloc.h"

#define MIME_HEADER_LIMIT (64 * 1024)

enum mime_kind { MIME_SKIP, MIME_TEXT, MIME_HTML, MIME_ATTACHMENT };

/* a message/rfc822 part, read when the parse is over */
struct mime_embedded {
    struct message_part *part;
    char   *filename, *content_type;
    enum decode_cte cte;
};

struct mime_walk {
    struct payload_message *msg;
    const struct payload_envelope *env;
    struct payload_writer *out;		/* where the event goes */
    uoff_t  max_attachment;
    struct message_part *part;
    /* the current part's headers */
    string_t *content_type;
    char   *disp_filename, *ct_name;
    bool    disposition_attachment, cte_seen;
    enum decode_cte cte;
    /* its body */
    enum mime_kind kind;
    bool    text_seen, html_seen, begun;
    size_t  att_size;			/* the current attachment's bytes */
    bool    att_kept;			/* and whether they are still sent */
    struct decode_state dec;
    int     last_cr;			/* for decode_crlf() */
    EVP_MD_CTX *sha;
    ARRAY(struct mime_embedded) embedded;
    size_t  hdr_block, hdr_all;		/* header bytes, as Dovecot counts */
    bool    hdr_cut;			/* past its limits: values lost */
    /* for "authentication": raw values of top-level headers */
    const char *trusted_id;
    char   *trusted_ar, *from_raw;	/* the first trusted A-R, From: */
    int     from_count;
};

#ifndef MESSAGE_HEADER_BLOCK_DEFAULT_MAX_SIZE	/* a Dovecot that cuts no value */
#define MESSAGE_HEADER_BLOCK_DEFAULT_MAX_SIZE SIZE_MAX
#endif
#ifndef MESSAGE_PARSER_DEFAULT_ALL_HEADERS_MAX_SIZE
#define MESSAGE_PARSER_DEFAULT_ALL_HEADERS_MAX_SIZE SIZE_MAX
#endif

static const char *const mime_top_headers[PAYLOAD_HEADER_COUNT] = {
    "From", "To", "Cc", "Subject", "Date", "Message-ID",
};

/* mime_pct_decode - RFC 2231 %XX; a bad escape is kept as it is */

static void mime_pct_decode(string_t *dest, const char *s)
{
    for (; *s != '\0'; s++) {
	if (s[0] == '%' && i_isxdigit(s[1]) && i_isxdigit(s[2])) {
	    char    hex[3] = {s[1], s[2], '\0'};

	    str_append_c(dest, (char) strtol(hex, NULL, 16));
	    s += 2;
	} else {
	    str_append_c(dest, *s);
	}
    }
}

/*
 * mime_to_utf8 - len bytes in charset as UTF-8; unknown charsets as they
 * are (payload_utf8_clean() replaces what is not UTF-8). A NUL (%00, =00)
 * is the one character a C string cannot carry: it becomes U+FFFD rather
 * than end the name there ("invoice.pdf%00.exe" must not read as
 * "invoice.pdf" while Python's email reads the ".exe").
 */
static const char *mime_to_utf8(const char *charset, const char *bytes, size_t len)
{
    enum charset_result result;
    string_t *out = t_str_new(len + 16);
    const char *end = bytes + len, *nul, *seg;

    for (;;) {
	nul = memchr(bytes, '\0', (size_t) (end - bytes));
	seg = t_strdup_until(bytes, nul != NULL ? nul : end);
	if (*charset == '\0' || charset_to_utf8_str(charset, NULL, seg, out, &result) < 0)
	    str_append(out, seg);
	if (nul == NULL)
	    return (str_c(out));
	str_append(out, "\xEF\xBF\xBD");
	bytes = nul + 1;
    }
}

/* RFC 2231 continuations: as many as the header holds (Dovecot bounds
   a header block at 10 MB); an index past this is not a continuation */
#define MIME_SEGMENT_MAX 100000

struct mime_segment {
    const char *value;
    bool    ext;
};

/*
 * mime_param_ext - an RFC 2231 value from its segments (one, or a
 * continuation): the first, if extended, starts with charset'language';
 * extended segments are %-encoded, the others literal.
 */
static const char *mime_param_ext(const struct mime_segment *seg, unsigned int n)
{
    string_t *raw = t_str_new(128);
    const char *charset = "", *v, *q1, *q2;

    for (unsigned int i = 0; i < n; i++) {
	v = seg[i].value;
	if (i == 0 && seg[0].ext && (q1 = strchr(v, '\'')) != NULL
	    && (q2 = strchr(q1 + 1, '\'')) != NULL) {
	    charset = t_strdup_until(v, q1);
	    v = q2 + 1;
	}
	if (seg[i].ext)
	    mime_pct_decode(raw, v);
	else
	    str_append(raw, v);
    }
    return (mime_to_utf8(charset, (const char *) str_data(raw), str_len(raw)));
}

/* mime_param_key - "name" 0, "name*" 1, "name*N" 2, "name*N*" 3, else -1 */

static int mime_param_key(const char *key, const char *wanted, unsigned int *idx)
{
    size_t  wlen = strlen(wanted);
    const char *p = key + wlen;

    if (strncasecmp(key, wanted, wlen) != 0)
	return (-1);
    if (*p == '\0')
	return (0);
    if (strcmp(p, "*") == 0)
	return (1);
    if (*p != '*' || !i_isdigit(p[1]))
	return (-1);
    for (*idx = 0, p++; i_isdigit(*p) && *idx < MIME_SEGMENT_MAX; p++)
	*idx = *idx * 10 + (unsigned int) (*p - '0');
    if (*idx >= MIME_SEGMENT_MAX)
	return (-1);
    return (*p == '\0' ? 2 : strcmp(p, "*") == 0 ? 3 : -1);
}

/*
 * mime_param - the value of parameter "wanted" (name or filename) in
 * what follows a Content-Type or Content-Disposition value, as UTF-8,
 * or NULL. Dovecot's rfc2231_parse() is not used: it returns extended
 * values still encoded and loses name*= after an indexed parameter.
 */
static const char *mime_param(struct rfc822_parser_context *parser, const char *wanted)
{
    const char *plain = NULL, *ext = NULL, *key;
    ARRAY(struct mime_segment) segs;
    struct mime_segment *seg;
    unsigned int idx = 0, count;
    string_t *value = t_str_new(128), *out;
    bool    contiguous = TRUE;
    int     ret, kind;

    t_array_init(&segs, 4);
    while ((ret = rfc822_parse_content_param(parser, &key, value)) != 0) {
	if (ret < 0) {				/* skip the bad one, go on */
	    if (parser->data >= parser->end)
		break;
	    parser->data++;
	    continue;
	}
	kind = mime_param_key(key, wanted, &idx);
	if (kind == 0 && plain == NULL)
	    plain = t_strdup(str_c(value));
	else if (kind == 1 && ext == NULL)
	    ext = t_strdup(str_c(value));
	else if (kind >= 2 && ((seg = array_idx_get_space(&segs, idx))->value == NULL)) {
	    seg->value = t_strdup(str_c(value));
	    seg->ext = kind == 3;
	}
    }
    seg = array_get_modifiable(&segs, &count);
    for (unsigned int i = 0; i < count; i++)
	contiguous = contiguous && seg[i].value != NULL;
    if (count > 0 && contiguous)
	return (mime_param_ext(seg, count));
    if (ext != NULL) {
	struct mime_segment one = {ext, TRUE};

	return (mime_param_ext(&one, 1));
    }
    if (plain == NULL)
	return (NULL);
    if (strstr(plain, "=?") == NULL)		/* RFC 2047, used in the wild */
	return (plain);
    out = t_str_new(strlen(plain) + 16);
    message_header_decode_utf8((const unsigned char *) plain, strlen(plain), out, NULL);
    return (mime_to_utf8("", (const char *) str_data(out), str_len(out)));
}

/* mime_part_header - what a part's own headers say about it (raw values) */

static void mime_part_header(struct mime_walk *w, const struct message_header_line *hdr)
{
    struct rfc822_parser_context parser;
    string_t *token;

    rfc822_parser_init(&parser, hdr->full_value, hdr->full_value_len, NULL);
    rfc822_skip_lwsp(&parser);
    if (strcasecmp(hdr->name, "Content-Type") == 0 && str_len(w->content_type) == 0) {
	if (rfc822_parse_content_type(&parser, w->content_type) < 0)
	    str_truncate(w->content_type, 0);
	str_lcase(str_c_modifiable(w->content_type));
	i_free(w->ct_name);
	w->ct_name = i_strdup(mime_param(&parser, "name"));
    } else if (strcasecmp(hdr->name, "Content-Disposition") == 0 && w->disp_filename == NULL) {
	token = t_str_new(32);
	if (rfc822_parse_mime_token(&parser, token) >= 0)
	    w->disposition_attachment = strcasecmp(str_c(token), "attachment") == 0;
	w->disp_filename = i_strdup(mime_param(&parser, "filename"));
    } else if (strcasecmp(hdr->name, "Content-Transfer-Encoding") == 0 && !w->cte_seen) {
	token = t_str_new(32);
	w->cte_seen = TRUE;
	if (rfc822_parse_mime_token(&parser, token) >= 0)
	    w->cte = decode_cte_parse(str_c(token));
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
    /* every one: their number is bounded by Dovecot's header limit */
    if (strcasecmp(hdr->name, "Authentication-Results") == 0) {
	msg->auth_results = wh_realloc(msg->auth_results,
				       (msg->auth_count + 1) * sizeof(*msg->auth_results));
	memset(&msg->auth_results[msg->auth_count], 0, sizeof(*msg->auth_results));
	payload_bytes_append(&msg->auth_results[msg->auth_count++], hdr->full_value,
			     hdr->full_value_len, MIME_HEADER_LIMIT);
    }
}

/* mime_raw_top - the raw values "authentication" is made of */

static void mime_raw_top(struct mime_walk *w, const struct message_header_line *hdr)
{
    if (strcasecmp(hdr->name, "From") == 0 && w->from_count++ == 0)
	w->from_raw = i_strndup(hdr->full_value, hdr->full_value_len);
    else if (strcasecmp(hdr->name, "Authentication-Results") == 0 && w->trusted_ar == NULL
	     && authres_trusted((const char *) hdr->full_value, hdr->full_value_len,
				w->trusted_id))
	w->trusted_ar = i_strndup(hdr->full_value, hdr->full_value_len);
}

/* mime_begin - the top headers are in: the event starts */

static void mime_begin(struct mime_walk *w)
{
    w->msg->authentication = authres_authentication(w->trusted_ar, w->from_raw,
						    w->from_count, w->trusted_id);
    payload_begin(w->out, w->msg, w->env);
    w->begun = TRUE;
}

/* mime_attachment - an attachment starts: its sha256 and size from 0 */

static void mime_attachment(struct mime_walk *w, const char *name, const char *ctype,
			            enum decode_cte cte)
{
    payload_attachment_begin(w->out, name, ctype);
    w->att_size = 0;
    w->att_kept = TRUE;
    decode_init(&w->dec, cte);
    if (EVP_DigestInit_ex(w->sha, EVP_sha256(), NULL) != 1)
	i_panic("SHA-256 unavailable");
}

/* mime_part_start - end of a part's headers: where its body goes */

static void mime_part_start(struct mime_walk *w)
{
    const char *ctype = str_len(w->content_type) ? str_c(w->content_type) : "text/plain";
    bool    inline_part = !w->disposition_attachment && w->disp_filename == NULL
	&& w->ct_name == NULL;

    w->kind = MIME_SKIP;
    if (!w->begun)				/* the top headers are all in */
	mime_begin(w);
    if ((w->part->flags & MESSAGE_PART_FLAG_MULTIPART) != 0) {
	/* a container: its children follow */
    } else if ((w->part->flags & MESSAGE_PART_FLAG_MESSAGE_RFC822) != 0) {
	struct mime_embedded *e = array_append_space(&w->embedded);
	const char *name = w->disp_filename ? w->disp_filename : w->ct_name;

	/* its children follow; it is listed, and its bytes read, at the end */
	e->part = w->part;
	e->filename = i_strdup(name);
	e->content_type = i_strdup(ctype);
	e->cte = w->cte;
    } else if (inline_part && strcmp(ctype, "text/plain") == 0 && !w->text_seen) {
	w->kind = MIME_TEXT;
	w->text_seen = TRUE;
	payload_text_begin(w->out, 0);
    } else if (inline_part && strcmp(ctype, "text/html") == 0 && !w->html_seen) {
	w->kind = MIME_HTML;
	w->html_seen = TRUE;
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

static void mime_attachment_raw(struct mime_walk *w, const unsigned char *data, size_t size)
{
    unsigned char *out = t_malloc_no0(DECODE_OUT_MAX(size));

    mime_attachment_bytes(w, out, decode_more(&w->dec, data, size, out));
}

static void mime_attachment_done(struct mime_walk *w)
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
    w->cte_seen = FALSE;
    w->cte = DECODE_IDENTITY;
    i_free_and_null(w->disp_filename);
    i_free_and_null(w->ct_name);
    str_truncate(w->content_type, 0);
}

/*
 * mime_embedded_read - the body of each message/rfc822 part, from the
 * input: the parser gives the embedded message as its parts, not as
 * the bytes (the boundaries of its multiparts are not in any block).
 */
static void mime_embedded_read(struct mime_walk *w, struct istream *input)
{
    struct mime_embedded *e;

    array_foreach_modifiable(&w->embedded, e) {
	uoff_t  start = e->part->physical_pos + e->part->header_size.physical_size;
	uoff_t  left = e->part->body_size.physical_size;
	const unsigned char *data;
	size_t  size;

	mime_attachment(w, e->filename, e->content_type, e->cte);
	i_free(e->filename);
	i_free(e->content_type);
	i_stream_seek(input, start);
	w->last_cr = 0;
	while (left > 0 && i_stream_read_more(input, &data, &size) > 0) {
	    if (size > left)
		size = left;
	    T_BEGIN {
		unsigned char *crlf = t_malloc_no0(DECODE_CRLF_MAX(size));

		mime_attachment_raw(w, crlf, decode_crlf(&w->last_cr, data, size, crlf));
	    } T_END;
	    i_stream_skip(input, size);
	    left -= size;
	}
	mime_attachment_done(w);
    }
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
			              struct message_block *raw)
{
    struct message_block block;
    bool    decoded;

    /* the decoder first: it asks the parser for the whole value of a
       folded header, which the raw line then has too */
    decoded = message_decoder_decode_next_block(decoder, raw, &block);
    if (raw->hdr->eoh || raw->hdr->continues)
	return;
    mime_header_count(w, raw->hdr);
    mime_part_header(w, raw->hdr);
    if (raw->part->parent == NULL)
	mime_raw_top(w, raw->hdr);
    if (decoded && raw->part->parent == NULL)
	mime_top_header(w, block.hdr);
}

static void mime_block(struct mime_walk *w, struct message_decoder_context *decoder,
		               struct message_block *raw)
{
    struct message_block block, crlf;
    unsigned char *data;

    if (raw->part != w->part) {
	mime_part_end(w);
	w->part = raw->part;
	w->last_cr = 0;
	w->hdr_block = 0;
    }
    if (raw->hdr != NULL) {
	mime_header_block(w, decoder, raw);
    } else if (raw->size == 0) {
	(void) message_decoder_decode_next_block(decoder, raw, &block);
	mime_part_start(w);
    } else if (w->kind != MIME_SKIP) {
	data = t_malloc_no0(DECODE_CRLF_MAX(raw->size));
	crlf = *raw;
	crlf.data = data;
	crlf.size = decode_crlf(&w->last_cr, raw->data, raw->size, data);
	if (w->kind == MIME_ATTACHMENT)
	    mime_attachment_raw(w, crlf.data, crlf.size);
	else if (message_decoder_decode_next_block(decoder, &crlf, &block) && block.size > 0)
	    payload_text_data(w->out, block.data, block.size);
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

int     mime_read(struct istream *input, const struct mime_options *opt,
		          struct payload_message *msg, const struct payload_envelope *env,
		          struct payload_writer *out, const char **error_r)
{
    const struct message_parser_settings set = {
	.hdr_flags = MESSAGE_HEADER_PARSER_FLAG_CLEAN_ONELINE,
    };
    struct mime_walk w;
    struct message_parser_ctx *parser;
    struct message_decoder_context *decoder;
    struct message_block raw;
    struct message_part *parts;
    pool_t  pool = pool_alloconly_create("lmtp_webhook mime", 8192);
    int     ret;

    i_zero(&w);
    w.msg = msg;
    w.env = env;
    w.out = out;
    w.max_attachment = opt->max_attachment;
    w.trusted_id = opt->trusted_id;
    w.content_type = str_new(default_pool, 64);
    i_array_init(&w.embedded, 4);
    if ((w.sha = EVP_MD_CTX_new()) == NULL)
	i_fatal_status(FATAL_OUTOFMEM, "EVP_MD_CTX_new() failed");
    parser = message_parser_init(pool, input, &set);
    decoder = message_decoder_init(NULL, MESSAGE_DECODER_FLAG_RETURN_BINARY);
    while ((ret = message_parser_parse_next_block(parser, &raw)) > 0) {
	T_BEGIN {
	    mime_block(&w, decoder, &raw);
	} T_END;
    }
    mime_part_end(&w);
    if (!w.begun)				/* no part at all (an I/O error) */
	mime_begin(&w);
    message_decoder_deinit(&decoder);
    message_parser_deinit(&parser, &parts);
    mime_embedded_read(&w, input);	/* after an error: lists, frees */
    if (opt->raw_message && input->stream_errno == 0)
	mime_raw(&w, input, opt->max_raw);
    EVP_MD_CTX_free(w.sha);
    i_free(w.trusted_ar);
    i_free(w.from_raw);
    str_free(&w.content_type);
    array_free(&w.embedded);
    pool_unref(&pool);
    if (input->stream_errno != 0) {
	*error_r = t_strdup_printf("read(%s) failed: %s", i_stream_get_name(input),
				   i_stream_get_error(input));
	return (-1);
    }
    if (w.hdr_cut) {
	*error_r = "the message's header is past what Dovecot parses whole (10 MB in "
	    "one part, 50 MB in all), so the event would lack its values: refused";
	return (-1);
    }
    return (0);
}

/* mime_dovecot_received - lmtp's own trace header for this transaction */

static bool mime_dovecot_received(const struct message_header_line *hdr, const char *trans_id)
{
    const char *value = t_strndup(hdr->full_value, hdr->full_value_len);
    const char *want = t_strconcat("id ", trans_id, NULL), *p = value;
    size_t  len = strlen(want);

    if (strcasecmp(hdr->name, "Received") != 0 || strstr(value, " with LMTP") == NULL)
	return (FALSE);
    while ((p = strstr(p, want)) != NULL) {
	if (p[len] == '\0' || p[len] == '\r' || p[len] == '\n' || p[len] == ' '
	    || p[len] == ';')
	    return (TRUE);
	p += len;
    }
    return (FALSE);
}

uoff_t  mime_lmtp_data_offset(struct istream *input, const char *session_id)
{
    struct message_header_parser_ctx *hp;
    struct message_header_line *hdr;
    const char *trans_id = session_id ? session_id : "", *r;
    uoff_t  start = 0, offset;
    int     stage = 0, ret;		/* 0: Return-Path, 1: Delivered-To, 2: done */

    /* a recipient's session id is the transaction's, or it and ":R<n>" */
    if ((r = strrchr(trans_id, ':')) != NULL && r[1] == 'R' && r[2] != '\0'
	&& strspn(r + 2, "0123456789") == strlen(r + 2))
	trans_id = t_strdup_until(trans_id, r);
    i_stream_seek(input, 0);
    hp = message_parse_header_init(input, NULL, 0);
    while ((ret = message_parse_header_next(hp, &hdr)) > 0) {
	if (!hdr->continued)
	    start = hdr->name_offset;
	if (hdr->continues) {
	    hdr->use_full_value = TRUE;
	    continue;
	}
	if (hdr->eoh)
	    break;
	if (stage == 0 && strcasecmp(hdr->name, "Return-Path") == 0)
	    stage = 1;
	else if (stage == 1 && strcasecmp(hdr->name, "Delivered-To") == 0)
	    continue;
	else if (stage == 1 && *trans_id != '\0' && mime_dovecot_received(hdr, trans_id))
	    stage = 2;
	else
	    break;
    }
    /* the first header (or the empty line) that is not lmtp's */
    offset = stage == 0 ? 0 : ret > 0 ? start : input->v_offset;
    message_parse_header_deinit(&hp);
    i_stream_seek(input, 0);
    return (offset);
}

int     mime_digest(struct istream *input, const char *prefix, unsigned char md[32],
		            uoff_t *size_r, const char **error_r)
{
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    const unsigned char *data;
    unsigned int len = 0;
    size_t  size;
    int     last_cr = 0;

    *size_r = 0;
    if (ctx == NULL || EVP_DigestInit_ex(ctx, EVP_sha256(), NULL) != 1)
	i_panic("SHA-256 unavailable");
    (void) EVP_DigestUpdate(ctx, prefix, strlen(prefix) + 1);
    i_stream_seek(input, 0);
    while (i_stream_read_more(input, &data, &size) > 0) {
	T_BEGIN {
	    unsigned char *crlf = t_malloc_no0(DECODE_CRLF_MAX(size));
	    size_t  n = decode_crlf(&last_cr, data, size, crlf);

	    (void) EVP_DigestUpdate(ctx, crlf, n);
	    *size_r += n;
	} T_END;
	i_stream_skip(input, size);
    }
    (void) EVP_DigestFinal_ex(ctx, md, &len);
    EVP_MD_CTX_free(ctx);
    if (input->stream_errno != 0) {
	*error_r = t_strdup_printf("read(%s) failed: %s", i_stream_get_name(input),
				   i_stream_get_error(input));
	return (-1);
    }
    i_stream_seek(input, 0);
    return (0);
}
