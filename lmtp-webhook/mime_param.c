/*
 * NAME
 *	mime_param 3
 * SUMMARY
 *	MIME parameters in every form senders use
 * SYNOPSIS
 *	#include "mime_param.h"
 *
 *	const char *mime_param(parser, wanted)
 *	const char *mime_param_pick(parser, wanted, pick)
 *	const char *mime_param_dovecot(parser, wanted)
 *
 *	const char *mime_param_boundary(parser)
 *
 *	void	mime_words_utf8(data, size, out)
 * DESCRIPTION
 *	mime_param() returns the value of parameter "wanted" in what
 *	follows a Content-Type or Content-Disposition value (parser is
 *	just past it), as UTF-8, or NULL: RFC 2231 (wanted*=charset'lang'
 *	%XX, continuations wanted*0*=, wanted*1=), RFC 2047 encoded words
 *	(used in the wild), quoted strings, any letter case. An RFC 2231
 *	form beats a plain one (RFC 6266 4.3). Dovecot's rfc2231_parse()
 *	is not used: it returns extended values still encoded and loses
 *	name*= after an indexed parameter.
 *
 *	mime_param_pick() with MIME_PARAM_EXTENDED is mime_param(); with
 *	MIME_PARAM_FIRST the form that comes first wins, as Python's
 *	email package reads a boundary or a charset given twice
 *	(boundary*=''b2; boundary=b1 is b2).
 *
 *	mime_param_dovecot() returns the value as Dovecot's own parsers
 *	read it (rfc2231_parse(): the first plain wanted=, continuations
 *	joined; an extended form is not that parameter), or NULL.
 *
 *	mime_param_boundary() returns a multipart's boundary as Python's
 *	email reads it (get_boundary()), or NULL for one it never matches.
 *
 *	All consume the parser; the values are on the data stack. A
 *	parameter that does not parse is skipped to the next ";" (quoted
 *	strings and comments read as such), as Python's email skips it.
 *	Memory does not grow with the number of parameters: what reading
 *	one leaves behind is freed before the next.
 *
 *	mime_words_utf8() appends a header value with its RFC 2047 encoded
 *	words decoded, as Python's email package reads it: the bytes of a
 *	UTF-8 (or US-ASCII) word are kept as they are and joined with the
 *	next, so that a character a sender split across two words is one
 *	character again; other charsets are converted word by word. Bytes
 *	that are not UTF-8 after all are left to the payload writer, which
 *	makes them U+FFFD. Dovecot's message_header_decode_utf8() checks
 *	each word alone: the halves became two U+FFFD.
 */

#include "lib.h"

#include <ctype.h>

#include "str.h"
#include "array.h"
#include "charset-utf8.h"
#include "message-header-decode.h"
#include "rfc822-parser.h"
#include "rfc2231-parser.h"

#include "mime_param.h"

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
 * "invoice.pdf" while Python's email reads the ".exe"). The NULs are
 * looked for in the converted text: in UTF-16 or UTF-32 every character
 * of a Latin name has zero bytes, and cut there the name was U+FFFD
 * only (helper-124).
 */
static const char *mime_to_utf8(const char *charset, const char *bytes, size_t len)
{
    struct charset_translation *t;
    buffer_t *utf8 = t_buffer_create(len + 16);
    string_t *out = t_str_new(len + 16);
    const char *name = *charset == '\0' ? NULL : mime_charset_name(charset);
    const unsigned char *p, *end;
    size_t  size = len;

    if (name != NULL && charset_to_utf8_begin(name, NULL, &t) == 0) {
	(void) charset_to_utf8(t, (const unsigned char *) bytes, &size, utf8);
	charset_to_utf8_end(&t);
	if (size < len)				/* cut inside its last character */
	    buffer_append(utf8, "\xEF\xBF\xBD", 3);	/* Python: errors=replace */
    } else {
	buffer_append(utf8, bytes, len);
    }
    p = utf8->data;
    end = p + utf8->used;
    for (const unsigned char *nul; (nul = memchr(p, 0, (size_t) (end - p))) != NULL; p = nul + 1) {
	str_append_data(out, p, (size_t) (nul - p));
	str_append(out, "\xEF\xBF\xBD");
    }
    str_append_data(out, p, (size_t) (end - p));
    return (str_c(out));
}

/* RFC 2231 continuations: as many as the header holds (Dovecot bounds
   a header block at 10 MB); an index past this is not a continuation */
#define MIME_SEGMENT_MAX 100000

struct mime_segment {
    const char *value;
    bool    ext;
};
ARRAY_DEFINE_TYPE(mime_segment, struct mime_segment);

/* mime_param_prefix - past "charset'language'" in v, or NULL */

static const char *mime_param_prefix(const char *v)
{
    const char *q1 = strchr(v, '\'');

    return (q1 == NULL ? NULL : strchr(q1 + 1, '\''));
}

/*
 * mime_param_segment - segment i of an RFC 2231 value, as the joined value
 * is to hold it. A segment that is not extended (name*1=) is literal for
 * RFC 2231 and Python's email ("b%41" stays so): where another one is
 * extended, its "%" is written "%25" to come out of the %-decoding as it
 * is. A later extended segment's own charset'language' prefix is dropped
 * when the first one has its own: Python's email reads the value with the
 * first one's charset (iso-8859-1''%E9 then utf-8''%E9.pdf is "\xe9\xe9.pdf").
 */
static void mime_param_segment(string_t *joined, const struct mime_segment *seg,
			               unsigned int i, bool ext)
{
    const char *v = seg[i].value, *prefix;

    if (!ext) {
	str_append(joined, v);
    } else if (!seg[i].ext) {
	for (; *v != '\0'; v++)
	    str_append(joined, *v == '%' ? "%25" : t_strndup(v, 1));
    } else if (i > 0 && seg[0].ext && mime_param_prefix(seg[0].value) != NULL
	       && (prefix = mime_param_prefix(v)) != NULL) {
	str_append(joined, prefix + 1);
    } else {
	str_append(joined, v);
    }
}

/*
 * mime_param_ext - an RFC 2231 value from its segments (one, or a
 * continuation), read as Python's email reads it (get_param(),
 * decode_rfc2231()): when any segment is extended, the joined value
 * starts with charset'language' (wherever the two quotes are: a prefix
 * in a later segment was read as the name before) and is %-decoded as
 * a whole; otherwise the segments are literal.
 */
static const char *mime_param_ext(const struct mime_segment *seg, unsigned int n)
{
    string_t *joined = t_str_new(128), *raw;
    const char *charset = "", *v, *q2;
    bool    ext = FALSE;

    for (unsigned int i = 0; i < n; i++)
	ext = ext || seg[i].ext;
    for (unsigned int i = 0; i < n; i++)
	mime_param_segment(joined, seg, i, ext);
    v = str_c(joined);
    if (!ext)
	return (mime_to_utf8("", v, str_len(joined)));
    if ((q2 = mime_param_prefix(v)) != NULL) {
	charset = t_strdup_until(v, strchr(v, '\''));
	v = q2 + 1;
    }
    raw = t_str_new(strlen(v) + 1);
    mime_pct_decode(raw, v);
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
 * mime_param_skip - past a parameter rfc822_parse_content_param() could
 * not read ("; x;", "; ;", "; x y=z"), to the ";" of the next one, as
 * Python's email goes on: a ";" inside a quoted string or a comment
 * does not end it. It stops at a ";" it has not read past.
 */
static void mime_param_skip(struct rfc822_parser_context *parser)
{
    string_t *scratch = t_str_new(64);

    while (parser->data < parser->end && *parser->data != ';') {
	if (*parser->data == '"') {
	    if (rfc822_parse_quoted_string(parser, scratch) < 0)
		parser->data = parser->end;	/* never closed: the rest */
	} else if (*parser->data == '(') {
	    if (rfc822_skip_comment(parser) < 0)
		parser->data = parser->end;
	} else {
	    parser->data++;
	}
	str_truncate(scratch, 0);
    }
}

/*
 * mime_param - the value of parameter "wanted" (name or filename) in
 * what follows a Content-Type or Content-Disposition value, as UTF-8,
 * or NULL. Dovecot's rfc2231_parse() is not used: it returns extended
 * values still encoded and loses name*= after an indexed parameter.
 */
const char *mime_param(struct rfc822_parser_context *parser, const char *wanted)
{
    return (mime_param_pick(parser, wanted, MIME_PARAM_EXTENDED));
}

/*
 * mime_param_scan - the forms of "wanted" in the parameters, kept in pool
 * (*plain, *ext, segs by index; *first: the kind of the first form). A
 * header may hold hundreds of thousands of parameters: what reading one
 * leaves on the data stack (Dovecot's parser's scratch, ours) goes with
 * it, so memory does not grow with their count.
 */
static void mime_param_scan(struct rfc822_parser_context *parser, const char *wanted, pool_t pool,
			            const char **plain, const char **ext,
			            ARRAY_TYPE(mime_segment) *segs, int *first)
{
    string_t *value = str_new(pool, 128);
    int     ret = 1;

    while (ret != 0) {
	T_BEGIN {
	    const char *key;
	    unsigned int idx = 0;
	    int     kind;
	    struct mime_segment *seg;

	    if ((ret = rfc822_parse_content_param(parser, &key, value)) < 0)
		mime_param_skip(parser);	/* skip the bad one, go on */
	    else if (ret > 0 && (kind = mime_param_key(key, wanted, &idx)) >= 0) {
		if (*first < 0)
		    *first = kind;
		if (kind == 0 && *plain == NULL)
		    *plain = p_strdup(pool, str_c(value));
		else if (kind == 1 && *ext == NULL)
		    *ext = p_strdup(pool, str_c(value));
		else if (kind >= 2 && (seg = array_idx_get_space(segs, idx))->value == NULL) {
		    seg->value = p_strdup(pool, str_c(value));
		    seg->ext = kind == 3;
		}
	    }
	} T_END;
    }
}

/* mime_param_form - the value of the form that counts, on the data stack */

static const char *mime_param_form(const char *plain, const char *ext,
				           ARRAY_TYPE(mime_segment) *segs, int first,
				           enum mime_param_pick pick)
{
    struct mime_segment *seg;
    unsigned int count, present = 0;
    const char *value;
    string_t *out;

    /* the segments there are, in order: with one missing (name*0*,
       name*2*), Python's email joins the others; the name was lost */
    seg = array_get_modifiable(segs, &count);
    for (unsigned int i = 0; i < count; i++)
	if (seg[i].value != NULL)
	    seg[present++] = seg[i];
    if (pick == MIME_PARAM_FIRST && first == 0)
	present = 0, ext = NULL;		/* the plain one came first */
    else if (pick == MIME_PARAM_FIRST && first == 1)
	present = 0;				/* name*= came first */
    /* an extended value that is empty (name*=''), Python's email drops:
       the plain one counts, or none */
    if (present > 0 && *(value = mime_param_ext(seg, present)) != '\0')
	return (value);
    if (ext != NULL) {
	struct mime_segment one = {ext, TRUE};

	if (*(value = mime_param_ext(&one, 1)) != '\0')
	    return (value);
    }
    if (plain == NULL)
	return (NULL);
    /* RFC 2047 in names, in the wild; Python's email decodes them in any
       quoted value (boundary="=?utf-8?q?b1?=" is b1, charset the same) */
    if (strstr(plain, "=?") == NULL)
	return (t_strdup(plain));
    out = t_str_new(strlen(plain) + 16);
    mime_words_utf8((const unsigned char *) plain, strlen(plain), out);
    return (mime_to_utf8("", (const char *) str_data(out), str_len(out)));
}

const char *mime_param_pick(struct rfc822_parser_context *parser, const char *wanted,
			            enum mime_param_pick pick)
{
    pool_t  pool = pool_alloconly_create("mime_param", 1024);
    const char *plain = NULL, *ext = NULL, *value;
    ARRAY_TYPE(mime_segment) segs;
    int     first = -1;

    p_array_init(&segs, pool, 4);
    mime_param_scan(parser, wanted, pool, &plain, &ext, &segs, &first);
    value = mime_param_form(plain, ext, &segs, first, pick);
    pool_unref(&pool);
    return (value);
}

/*
 * mime_param_boundary - a multipart's boundary as Python's email reads it
 * (get_boundary()): the form given first, decoded (an RFC 2047 word in a
 * quoted value too), trailing white space cut. NULL when it is empty, or
 * not US-ASCII: Python's boundary is then text its lines (surrogate-escaped
 * bytes) never match, and the part one leaf (boundary="b\xc3\xa9",
 * boundary*=utf-8''b%C3%A9, iso-8859-1''b%E9); the plugin split it.
 */
const char *mime_param_boundary(struct rfc822_parser_context *parser)
{
    const char *py = mime_param_pick(parser, "boundary", MIME_PARAM_FIRST);
    size_t  len = py == NULL ? 0 : strlen(py);

    while (len > 0 && i_isspace(py[len - 1]))
	len--;
    for (size_t i = 0; i < len; i++)
	if ((unsigned char) py[i] >= 0x80)
	    return (NULL);
    return (len == 0 ? NULL : t_strndup(py, len));
}

static bool mime_word(const unsigned char *data, size_t size, const char *charset,
		              void *context)
{
    buffer_t *out = context;
    struct charset_translation *t;

    /* unencoded text, UTF-8 and ASCII: their bytes, to be joined; so a
       word in a charset Python has no codec for (mime_charset_name()) */
    if (charset == NULL || charset_is_utf8(t_strcut(charset, '*'))
	|| strcasecmp(t_strcut(charset, '*'), "us-ascii") == 0
	|| (charset = mime_charset_name(charset)) == NULL
	|| charset_to_utf8_begin(charset, NULL, &t) < 0) {
	buffer_append(out, data, size);
	return (TRUE);
    }
    (void) charset_to_utf8(t, data, &size, out);
    charset_to_utf8_end(&t);
    return (TRUE);
}

void    mime_words_utf8(const unsigned char *data, size_t size, buffer_t *out)
{
    message_header_decode(data, size, mime_word, out);
}

const char *mime_param_dovecot(struct rfc822_parser_context *parser, const char *wanted)
{
    char   *found = NULL;
    const char *value;

    T_BEGIN {				/* its array of every parameter goes */
	const char *const *results;

	(void) rfc2231_parse(parser, &results);
	for (; *results != NULL && found == NULL; results += 2)
	    if (strcasecmp(results[0], wanted) == 0)
		found = i_strdup(results[1]);
    } T_END;
    value = t_strdup(found);
    i_free(found);
    return (value);
}
