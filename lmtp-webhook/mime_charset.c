/*
 * NAME
 *	mime_charset 3
 * SUMMARY
 *	a text's charset, as Python's email reads it, for Dovecot's decoder
 * SYNOPSIS
 *	#include "mime_int.h"
 *
 *	bool	mime_charset_converted(&params)
 *	bool	mime_charset_plain(&raw, &plain, &hdr)
 * DESCRIPTION
 *	mime_charset_converted() says whether the charset= in a
 *	Content-Type's parameters (the parser just past the type) is one
 *	Dovecot's decoder converts; mime_charset_plain() gives the decoder
 *	a Content-Type header whose charset it reads as Python does.
 */

#include "lib.h"

#include "str.h"
#include "charset-utf8.h"
#include "message-parser.h"
#include "message-header-parser.h"
#include "rfc822-parser.h"

#include "mime_int.h"
#include "mime_param.h"

/*
 * mime_charset_converted - how a text's charset (Python's pick) is read.
 * One Dovecot's decoder converts: MIME_TEXT_CONVERTED. UTF-8, none or an
 * unknown one it passes through, but keeps the bytes of a sequence cut
 * at the end and drops them with the part ("M" 0xFC "ller" at a text's
 * end lost "ller"): such a text goes to the writer as it is, which
 * makes each invalid subpart U+FFFD as Python does (MIME_TEXT_AS_IS).
 * US-ASCII it also read as UTF-8; Python makes each 8-bit byte U+FFFD
 * (MIME_TEXT_ASCII).
 */
enum mime_text_charset mime_charset_converted(const struct rfc822_parser_context *params)
{
    struct rfc822_parser_context copy = *params;
    const char *charset = mime_param_pick(&copy, "charset", MIME_PARAM_FIRST);
    struct charset_translation *t;

    if (charset != NULL && (strcasecmp(charset, "us-ascii") == 0
			    || strcasecmp(charset, "ascii") == 0))
	return (MIME_TEXT_ASCII);
    if (charset == NULL || charset_is_utf8(charset)
	|| charset_to_utf8_begin(charset, NULL, &t) < 0)
	return (MIME_TEXT_AS_IS);
    charset_to_utf8_end(&t);
    return (MIME_TEXT_CONVERTED);
}

/*
 * mime_charset_plain - a Content-Type whose charset Dovecot's decoder
 * reads otherwise than Python's email: only RFC 2231's form gives it
 * (charset*=''iso-8859-1: the decoder took the text for UTF-8), or it
 * is given twice (the first one wins for Python). The decoder is given
 * the header with Python's charset alone, plainly (*plain, *hdr);
 * FALSE when the two agree.
 */
bool    mime_charset_plain(const struct message_block *raw, struct message_block *plain,
		           struct message_header_line *hdr)
{
    struct rfc822_parser_context parser, plain_params;
    const char *charset = NULL, *dovecot = NULL, *value;
    string_t *type;

    if (raw->hdr->eoh || raw->hdr->continues || strcasecmp(raw->hdr->name, "Content-Type") != 0)
	return (FALSE);
    rfc822_parser_init(&parser, raw->hdr->full_value, raw->hdr->full_value_len, NULL);
    rfc822_skip_lwsp(&parser);
    type = t_str_new(64);
    if (rfc822_parse_content_type(&parser, type) >= 0) {
	plain_params = parser;
	charset = mime_param_pick(&parser, "charset", MIME_PARAM_FIRST);
	dovecot = mime_param_dovecot(&plain_params, "charset");
    }
    rfc822_parser_deinit(&parser);
    if (charset == NULL || (dovecot != NULL && strcasecmp(charset, dovecot) == 0)
	|| charset[strspn(charset, "abcdefghijklmnopqrstuvwxyz"
					  "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.:+()")] != '\0')
	return (FALSE);				/* none, or not a charset name */
    value = t_strdup_printf("%s; charset=\"%s\"", str_c(type), charset);
    *hdr = *raw->hdr;
    hdr->full_value = (const unsigned char *) value;
    hdr->full_value_len = strlen(value);
    *plain = *raw;
    plain->hdr = hdr;
    return (TRUE);
}
