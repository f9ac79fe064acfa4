/*
 * NAME
 *	mime_sub 3
 * SUMMARY
 *	the parts of a message read once its parse is over
 * SYNOPSIS
 *	#include "mime_int.h"
 *
 *	void	mime_embedded_read(w, input)
 *	void	mime_sub_top(w, input)
 * DESCRIPTION
 *	mime_embedded_read() lists what mime_parse() left for the end of
 *	its parse (w->embedded), reading it again from input: the bytes of
 *	each message/rfc822 part, and each multipart that Dovecot's parser
 *	did not split as Python's email splits it.
 *
 *	In a strict walk (once a multipart's boundary was given only in
 *	RFC 2231's form, or twice, or with trailing white space, or
 *	mime_check.c saw Dovecot split one, or end a header, where Python
 *	does not) every multipart is split here where Python's feedparser
 *	splits it (mime_split.c), and each of its parts is parsed alone,
 *	in order, as the one part of a
 *	multipart of the same type (a multipart/digest's parts default to
 *	message/rfc822) under a random boundary of our own: Dovecot's
 *	parser then never sees the sender's boundary lines, and cannot end
 *	a part on a line that only begins with one. A multipart Python
 *	does not split (no delimiter line, a closing one first, no
 *	boundary) is one attachment: its body, or what comes before that
 *	closing line.
 *
 *	Each part parsed alone, and the whole message in a strict walk
 *	(mime_sub_top()), has its header ended where Python's email ends
 *	it (mime_pyhdr.c): an empty line of ours goes before the line that
 *	is the first of Python's body, and the empty line Python drops
 *	after a last "From " line is left out. Dovecot's parser then reads
 *	no header that Python reads as body, and every byte is kept.
 *
 *	At most MIME_SUBPARSE_MAX such multiparts lie one inside another;
 *	a deeper one is one attachment (no byte is lost).
 */

#include "lib.h"
#include "istream.h"
#include "istream-concat.h"
#include "hex-binary.h"
#include "randgen.h"
#include "message-header-parser.h"
#include "rfc822-parser.h"

#include "mime_int.h"
#include "mime_pyhdr.h"
#include "mime_split.h"
#include "payload.h"

/*
 * mime_body_attachment - bytes of a part read again from the input, as
 * one attachment. A message/rfc822 part inside another one is listed
 * with its size and sha256 but no content: its bytes are in the
 * enclosing one's content already. Sent again, each layer repeated
 * every byte below it: a PDF wrapped 95 times made an event 127 times
 * the mail. Every byte of the message is sent at most twice (in its
 * leaf, and in the outermost message/rfc822 part around it).
 */
static void mime_body_attachment(struct mime_walk *w, struct istream *input,
				         const struct mime_embedded *e, uoff_t start, uoff_t left)
{
    const unsigned char *data;
    size_t  size;

    mime_attachment(w, e->filename, e->content_type, e->cte);
    if ((e->part->flags & MESSAGE_PART_FLAG_MESSAGE_RFC822) != 0
	&& mime_in_embedded(w, e->part)) {
	w->att_kept = FALSE;			/* in the enclosing one's content */
	payload_attachment_drop(w->out);
    }
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

/* mime_sub_find - mime_split's finder: the next delimiter line in input */

struct mime_sub_find {
    struct istream *input;
    uoff_t  end;				/* of the multipart's body */
    const char *sep;
};

static int mime_sub_find(void *ctx, uint64_t from, struct mime_delim_line *line)
{
    struct mime_sub_find *f = ctx;
    struct mime_delim d;
    const unsigned char *data;
    size_t  size, took;
    uoff_t  pos = from;
    bool    found;

    mime_delim_init(&d, f->sep, strlen(f->sep), from);
    i_stream_seek(f->input, from);
    while (pos < f->end && i_stream_read_more(f->input, &data, &size) > 0) {
	if (size > f->end - pos)
	    size = f->end - pos;
	took = mime_delim_feed(&d, data, size, line, &found);
	if (found)
	    return (1);
	i_stream_skip(f->input, took);
	pos += took;
    }
    if (f->input->stream_errno != 0)
	return (-1);
    return (mime_delim_finish(&d, line) ? 1 : 0);
}

/* mime_sub_bytes - up to 4 bytes of input at off (fewer at its end) */

static size_t mime_sub_bytes(struct istream *input, uoff_t off, unsigned char out[4])
{
    const unsigned char *data = NULL;
    size_t  len = 0;

    i_stream_seek(input, off);
    if (i_stream_read_bytes(input, &data, &len, 4) <= 0 && len == 0)
	return (0);
    len = I_MIN(len, 4);
    memcpy(out, data, len);
    return (len);
}

/* mime_sub_ends_line - do the size bytes at start end with a LF? */

static bool mime_sub_ends_line(struct istream *input, uoff_t start, uoff_t size)
{
    unsigned char last[4];

    return (size > 0 && mime_sub_bytes(input, start + size - 1, last) >= 1 && last[0] == '\n');
}

/* mime_sub_eol - the length of a line end at the start of b (0: none) */

static size_t mime_sub_eol(const unsigned char *b, size_t len)
{
    return (len >= 2 && b[0] == '\r' && b[1] == '\n' ? 2 : len >= 1 && b[0] == '\n' ? 1 : 0);
}

/*
 * mime_sub_body - a multipart's body, as Python's email reads it.
 * Dovecot's parser gives the line end before the enclosing multipart's
 * next boundary line to that line, where Python leaves it in the body
 * (it strips it from the last leaf, or keeps it where the multipart is
 * not split). And where the body is empty before that line, Dovecot
 * leaves the header's blank line out of the header: it is the line end
 * it gave the boundary line, and for Python no byte of the body.
 */
static void mime_sub_body(struct istream *input, const struct message_part *part,
			          uoff_t *start_r, uoff_t *size_r)
{
    uoff_t  hdr = part->header_size.physical_size;
    unsigned char before[4], after[4];
    size_t  nb = 0, na, eol;
    bool    blank_ended;

    *start_r = part->physical_pos + hdr;
    *size_r = part->body_size.physical_size;
    if (hdr > 0)
	nb = mime_sub_bytes(input, *start_r - I_MIN(hdr, 4), before);
    /* does the header end with its blank line ("...\n\r\n", or itself)? */
    blank_ended = (nb >= 1 && before[nb - 1] == '\n'
		   && ((nb >= 2 && before[nb - 2] == '\n') || hdr == 1
		       || (nb >= 2 && before[nb - 2] == '\r'
			   && ((nb >= 3 && before[nb - 3] == '\n') || hdr == 2))));
    na = mime_sub_bytes(input, *start_r, after);
    if (!blank_ended && (eol = mime_sub_eol(after, na)) > 0) {
	if (*size_r == 0)
	    return;				/* that blank line, and no body */
	*start_r += eol;			/* the blank line: not the body's */
	*size_r -= I_MIN(eol, *size_r);
    }
    na = mime_sub_bytes(input, *start_r + *size_r, after);
    eol = mime_sub_eol(after, na);
    if (eol > 0 && na >= eol + 2 && after[eol] == '-' && after[eol + 1] == '-')
	*size_r += eol;
}

/* mime_sub_range - a part of input to concatenate; NULL when empty */

static struct istream *mime_sub_range(struct istream *input, uoff_t start, uoff_t size)
{
    return (size == 0 ? NULL : i_stream_create_range(input, start, size));
}

/*
 * mime_sub_scan - the header block at start, as Python's email ends it
 * (*end), and where the block and its empty line end for Dovecot's
 * parser once it is cut there: the offset its body begins at
 */
static uoff_t mime_sub_scan(struct istream *input, uoff_t start, uoff_t stop,
			            struct mime_pyhdr_end *end)
{
    struct mime_pyhdr h;
    const unsigned char *data;
    size_t  n;

    mime_pyhdr_init(&h, start);
    i_stream_seek(input, start);
    while (!h.done && h.off < stop && i_stream_read_more(input, &data, &n) > 0)
	i_stream_skip(input, mime_pyhdr_feed(&h, data, I_MIN(n, stop - h.off), end));
    mime_pyhdr_finish(&h, end);
    return (end->moved ? end->body : h.off);
}

/*
 * mime_sub_rfc822 - is the entity whose header is [start, end) a
 * message/rfc822 part for Dovecot's parser (its first Content-Type, or
 * none in a multipart/digest)? Then its body is a message whose header
 * Dovecot's parser reads too, and Python's email with its own rules.
 */
static bool mime_sub_rfc822(struct istream *input, uoff_t start, uoff_t end, bool digest)
{
    struct istream *hdr_input = i_stream_create_range(input, start, end - start);
    struct message_header_parser_ctx *ctx;
    struct message_header_line *hdr;
    struct rfc822_parser_context parser;
    string_t *type = t_str_new(64);
    bool    seen = FALSE;

    ctx = message_parse_header_init(hdr_input, NULL, MESSAGE_HEADER_PARSER_FLAG_CLEAN_ONELINE);
    while (!seen && message_parse_header_next(ctx, &hdr) > 0 && !hdr->eoh) {
	if (strcasecmp(hdr->name, "Content-Type") != 0)
	    continue;
	if (hdr->continues) {
	    hdr->use_full_value = TRUE;		/* read it whole on its last line */
	    continue;
	}
	seen = TRUE;
	rfc822_parser_init(&parser, hdr->full_value, hdr->full_value_len, NULL);
	rfc822_skip_lwsp(&parser);
	(void) rfc822_parse_content_type(&parser, type);	/* as Dovecot's parser reads it */
	rfc822_parser_deinit(&parser);
    }
    message_parse_header_deinit(&ctx);
    i_stream_unref(&hdr_input);
    return (seen ? strcasecmp(str_c(type), "message/rfc822") == 0 : digest);
}

/*
 * mime_sub_header - size bytes of input at start (UOFF_T_MAX: to its
 * end), a part or a message, with its header as Python's email reads
 * it: where a line ends that header which Dovecot's parser would read
 * as a header (mime_pyhdr.c), an empty line goes before it, and the
 * empty line Python drops after a last "From " line is left out; so for
 * the header of the message inside a message/rfc822 part, and of one
 * inside that, MIME_SUB_HDR_CHAIN deep (the parts of a multipart
 * come each through here). Every other byte is kept: the body Dovecot's
 * parser then reads is Python's.
 */
#define MIME_SUB_HDR_CHAIN 8

static struct istream *mime_sub_header(struct istream *input, uoff_t start, uoff_t size,
				               bool digest)
{
    struct mime_pyhdr_end cut[MIME_SUB_HDR_CHAIN];
    struct istream *streams[3 * MIME_SUB_HDR_CHAIN + 2], *joined;
    uoff_t  stop = size == UOFF_T_MAX ? UOFF_T_MAX : start + size, at = start, body;
    size_t  cuts = 0, count = 0;

    for (int i = 0; i < MIME_SUB_HDR_CHAIN; i++, digest = FALSE) {
	body = mime_sub_scan(input, at, stop, &cut[cuts]);
	if (input->stream_errno != 0)
	    return (i_stream_create_range(input, start, size));	/* read again: fails */
	if (cut[cuts].moved && cut[cuts++].drop_len > 0)
	    break;			/* a message's header would go on past the
					   empty line dropped: not followed */
	if (!mime_sub_rfc822(input, at, body, digest))
	    break;
	at = body;
    }
    if (cuts == 0)				/* as Dovecot's parser reads it */
	return (i_stream_create_range(input, start, size));
    at = start;
    for (size_t i = 0; i < cuts; i++) {
	streams[count] = mime_sub_range(input, at, cut[i].body - at);
	count += streams[count] != NULL;
	streams[count++] = i_stream_create_copy_from_data("\r\n", 2);
	at = cut[i].body;
	if (cut[i].drop_len > 0) {		/* the "From " line, not the empty line */
	    streams[count] = mime_sub_range(input, at, cut[i].drop - at);
	    count += streams[count] != NULL;
	    at = cut[i].drop + cut[i].drop_len;
	}
    }
    streams[count] = mime_sub_range(input, at, stop == UOFF_T_MAX ? UOFF_T_MAX : stop - at);
    count += streams[count] != NULL;
    streams[count] = NULL;
    joined = i_stream_create_concat(streams);
    for (size_t i = 0; i < count; i++)
	i_stream_unref(&streams[i]);
    return (joined);
}

/*
 * mime_sub_top - a strict walk's parse of the whole message, its own
 * header read as Python reads it too
 */
void    mime_sub_top(struct mime_walk *w, struct istream *input)
{
    struct istream *top = mime_sub_header(input, input->v_offset, UOFF_T_MAX, FALSE);

    mime_parse(w, top);
    if (top->stream_errno != 0 && w->error == NULL)
	w->error = i_strdup_printf("read(%s) failed: %s", i_stream_get_name(input),
				   i_stream_get_error(top));
    i_stream_unref(&top);
}

/*
 * mime_sub_part - one part of a multipart split here, parsed alone as the
 * one part of a multipart of the same type under a boundary of our own
 */
static void mime_sub_part(struct mime_walk *w, struct istream *input,
			          const struct mime_embedded *e, uoff_t start, uoff_t size)
{
    unsigned char rnd[16];
    const char *sep, *head, *tail;
    struct istream *streams[4], *sub;
    bool    was_under = w->under_embedded;

    random_fill(rnd, sizeof(rnd));
    sep = t_strconcat("mxkit-", binary_to_hex(rnd, sizeof(rnd)), NULL);
    head = t_strdup_printf("MIME-Version: 1.0\r\nContent-Type: %s; boundary=\"%s\"\r\n\r\n"
			   "--%s\r\n", e->content_type, sep, sep);
    /* the part's own line end before our closing line: Dovecot's parser
       takes it as the delimiter's, and strips it where Python does */
    tail = t_strdup_printf("%s--%s--\r\n", mime_sub_ends_line(input, start, size) ? "" : "\r\n",
			   sep);
    streams[0] = i_stream_create_copy_from_data(head, strlen(head));
    streams[1] = mime_sub_header(input, start, size,
				 strcmp(e->content_type, "multipart/digest") == 0);
    streams[2] = i_stream_create_copy_from_data(tail, strlen(tail));
    streams[3] = NULL;
    sub = i_stream_create_concat(streams);
    for (int i = 0; i < 3; i++)
	i_stream_unref(&streams[i]);
    w->depth++;
    w->under_embedded = mime_in_embedded(w, e->part);
    mime_parse(w, sub);
    w->under_embedded = was_under;
    w->depth--;
    if (sub->stream_errno != 0 && w->error == NULL)
	w->error = i_strdup_printf("read(%s) failed: %s", i_stream_get_name(input),
				   i_stream_get_error(sub));
    i_stream_unref(&sub);
}

/* mime_subparse - a multipart split here, as Python's email splits it */

static void mime_subparse(struct mime_walk *w, struct istream *input,
			          const struct mime_embedded *e, uoff_t start, uoff_t size)
{
    struct mime_sub_find find = {input, start + size, t_strconcat("--", e->boundary, NULL)};
    struct mime_split split;
    enum mime_split_next ret;
    uint64_t part_start, part_size;
    unsigned int index = 0;

    mime_split_init(&split, start, size);
    while ((ret = mime_split_next(&split, mime_sub_find, &find, &part_start, &part_size)) > 0) {
	if (ret == MIME_SPLIT_LEAF)
	    mime_body_attachment(w, input, e, part_start, part_size);
	else
	    T_BEGIN {
	    mime_body_sub(w, e, index++);
	    mime_sub_part(w, input, e, part_start, part_size);
	    } T_END;
    }
    if (split.capped)
	mime_limit(w, "a multipart of 10,000 parts or more: its last attachment holds the rest");
    if (ret == MIME_SPLIT_ERROR && w->error == NULL)
	w->error = i_strdup_printf("read(%s) failed: %s", i_stream_get_name(input),
				   i_stream_get_error(input));
}

void    mime_embedded_read(struct mime_walk *w, struct istream *input)
{
    struct mime_embedded *e;

    array_foreach_modifiable(&w->embedded, e) {
	bool    multipart = (e->part->flags & MESSAGE_PART_FLAG_MULTIPART) != 0;
	uoff_t  start = e->part->physical_pos + e->part->header_size.physical_size;
	uoff_t  size = e->part->body_size.physical_size;

	if (multipart)
	    mime_sub_body(input, e->part, &start, &size);
	if (multipart && !w->strict && !e->reparse && e->part->children == NULL)
	    w->differs = TRUE;		/* its boundary never came: one leaf, listed
					   where Python lists it, before the parts
					   after it: a strict walk (mime_read()) */
	if (w->differs) {
	    /* parsed again from the start (mime_read()): nothing to list */
	} else if (multipart && !e->reparse && e->part->children != NULL) {
	    /* a container, as it should be: its parts were read */
	} else if (multipart && e->reparse && e->boundary != NULL
		   && w->depth < MIME_SUBPARSE_MAX
		   && e->boundary[strcspn(e->boundary, "\r\n")] == '\0') {
	    T_BEGIN {
		mime_subparse(w, input, e, start, size);
	    } T_END;
	} else {
	    if (multipart && e->reparse && e->boundary != NULL
		&& w->depth >= MIME_SUBPARSE_MAX)
		mime_limit(w, "multiparts split by the plugin nested more than 8 deep: "
			   "the deepest is one attachment");
	    mime_body_attachment(w, input, e, start, size);
	}
	i_free(e->filename);
	i_free(e->content_type);
	i_free(e->boundary);
    }
}
