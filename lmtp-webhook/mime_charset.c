/*
 * NAME
 *	mime_charset 3
 * SUMMARY
 *	a text's charset, as Python's email reads it, for Dovecot's decoder
 * SYNOPSIS
 *	#include "mime_int.h"
 *
 *	enum mime_text_charset mime_charset_read(&params, type, &decoder_value)
 *
 *	const char *mime_charset_name(charset)
 * DESCRIPTION
 *	mime_charset_read() reads the charset= of a text part's first
 *	Content-Type (params: the parser just past the type) once, as
 *	Python's email picks it, and says how the text is to be read. For
 *	a charset Dovecot's decoder converts, *decoder_value is the
 *	Content-Type value the decoder is to be given instead of the
 *	header's own (on the data stack), else NULL.
 *
 *	mime_charset_name() is the name iconv(3) opens for a charset name
 *	Python reads as a charset iconv(3) knows under another name
 *	(charset_name(3)), else the name: every charset the plugin converts
 *	(a text, an encoded word, an RFC 2231 parameter) is opened by it.
 */

#include "lib.h"

#include "charset-utf8.h"
#include "rfc822-parser.h"

#include "charset_name.h"
#include "mime_int.h"
#include "mime_param.h"

/*
 * mime_charset_name - the name Dovecot's charset_to_utf8 (iconv(3))
 * opens for the codec Python reads a charset name as (charset_name(3):
 * "ks_c_5601-1987" is EUC-KR, "latin-1" ISO-8859-1), on the data stack;
 * NULL for a name Python has no codec for (IBM1047, which glibc reads
 * as EBCDIC where Python reads ASCII: helper-124) or one glibc lacks.
 * A charset name is what comes before RFC 2231's "*language" (Python's
 * email: "=?iso-2022-jp*ja?B?...?=" is ISO-2022-JP; helper-124).
 */
const char *mime_charset_name(const char *charset)
{
    char    buf[CHARSET_NAME_SIZE];

    return (t_strdup(charset_name(charset, strcspn(charset, "*"), buf)));
}

/*
 * mime_charset_read - how a text's charset (Python's pick) is read.
 * One Dovecot's decoder converts: MIME_TEXT_CONVERTED. UTF-8, none or an
 * unknown one it passes through, but keeps the bytes of a sequence cut
 * at the end and drops them with the part ("M" 0xFC "ller" at a text's
 * end lost "ller"): such a text goes to the writer as it is, which
 * makes each invalid subpart U+FFFD as Python does (MIME_TEXT_AS_IS).
 * US-ASCII it also read as UTF-8; Python makes each 8-bit byte U+FFFD
 * (MIME_TEXT_ASCII).
 *
 * The decoder reads the charset from the same (first) Content-Type, but
 * by its own rules: only RFC 2231's form (charset*=''iso-8859-1) or the
 * parameter given twice, and it reads another one or none. So a
 * converted text's decoder is given "TYPE; charset="NAME"" with Python's
 * pick; a name that would need quoting is no charset iconv knows.
 */
enum mime_text_charset mime_charset_read(const struct rfc822_parser_context *params,
				                 const char *type, const char **decoder_value)
{
    struct rfc822_parser_context copy = *params;
    const char *charset = mime_param_pick(&copy, "charset", MIME_PARAM_FIRST);
    struct charset_translation *t;

    *decoder_value = NULL;
    if (charset != NULL && (strcasecmp(charset, "us-ascii") == 0
			    || strcasecmp(charset, "ascii") == 0))
	return (MIME_TEXT_ASCII);
    if (charset == NULL || charset_is_utf8(charset)
	|| (charset = mime_charset_name(charset)) == NULL
	|| charset_to_utf8_begin(charset, NULL, &t) < 0)
	return (MIME_TEXT_AS_IS);
    charset_to_utf8_end(&t);
    if (charset[strspn(charset, "abcdefghijklmnopqrstuvwxyz"
		       "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.:+()")] == '\0')
	*decoder_value = t_strdup_printf("%s; charset=\"%s\"", type, charset);
    return (MIME_TEXT_CONVERTED);
}
