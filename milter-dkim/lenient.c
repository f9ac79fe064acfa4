/*
 * NAME
 *	lenient 3
 * SUMMARY
 *	the domains a lenient reader finds in a From: value
 * SYNOPSIS
 *	#include "lenient.h"
 *
 *	int	lenient_domains(value, names, max)
 *	char	*lenient_decode(value)
 *	int	lenient_display_address(value)
 * DESCRIPTION
 *	A From: value the strict reader (rfc5322(3)) refuses is still shown
 *	by mail readers, as the address of whatever domain they find in it,
 *	so DMARC applies to each of those (auth(3)). These functions find
 *	them the way a lenient reader does (Python's email.headerregistry
 *	is the model: it skips comments anywhere and decodes RFC 2047
 *	encoded words even inside an address), and err towards finding
 *	more: every extra name only makes the verdict stricter.
 *
 *	lenient_domains() looks after each '@', wherever it stands (in a
 *	comment, a quoted string, a second address): CFWS is skipped
 *	(white space, folding, comments with nesting and quoted pairs), then
 *	the labels of a domain are read, with CFWS allowed around the dots
 *	(RFC 5322 obs-domain, which Python reads) and a trailing dot
 *	dropped; a name with UTF-8 labels (RFC 6532) is stored as its
 *	A-labels (IDNA2008, NFC), where its owner publishes its policy. It does the same again in the value with its encoded words
 *	decoded by lenient_decode(), where "billing@=?utf-8?q?vendor.test?="
 *	names vendor.test. Each name is lower-cased and stored once in
 *	names; only names of two or more LDH labels count.
 *
 *	lenient_decode() returns a copy of the value (to be freed) with
 *	every encoded word, "=?charset?Q?text?=" or "=?charset?B?text?=",
 *	replaced by its bytes, and the white space between two adjacent
 *	encoded words dropped (RFC 2047 6.2). Bytes past ASCII are
 *	converted from the word's charset to UTF-8 (iconv(3)), as a reader
 *	shows them; a word in a charset that does not write ASCII as ASCII
 *	(ISO-2022-JP, UTF-16, UTF-7, EBCDIC) is converted whole. A NUL left
 *	after the conversion becomes '?'. Both functions also read
 *	the value as Python's email package does, which decodes encoded
 *	words with white space or folds inside (RFC 2047 2 forbids them).
 *
 *	lenient_display_address() says whether the display name of a
 *	mailbox rfc5322(3) read (rfc5322_mailbox() returned NULL for it)
 *	shows something shaped like an address to a reader: its quoted
 *	strings unquoted, comments dropped, and then also with its encoded
 *	words decoded (joined and split, as above), an '@' between two
 *	characters other than white space, or a '<' with a '>' after it.
 *	"ceo@example.com" <alerts@example.net>,
 *	=?utf-8?q?ceo=40example.com?= <alerts@example.net>: a reader shows
 *	ceo@example.com. An encoded word that cannot be converted whole
 *	(a charset iconv(3) does not know, a byte its charset does not
 *	have, in a charset that does not write ASCII as ASCII) says yes too
 *	(its bytes cannot be read for sure), and
 *	so does one Python decodes but RFC 2047 does not allow (white space
 *	or a fold inside): readers show it either way. An at-sign look-alike
 *	(U+FF20, U+FE6B: NFKC makes them '@') counts as '@'.
 *	The text of the value's comments is judged the same way, as a
 *	display name: readers that show "alerts@example.net
 *	(ceo@example.com)" show the comment as the sender's name.
 * DIAGNOSTICS
 *	lenient_domains() returns the number of names stored, or -1 when
 *	the value names more than max domains or holds more than
 *	LENIENT_AT_MAX '@', as written or decoded (each can be a scan to
 *	the end of the value in a From: built to be expensive), or when a
 *	domain cannot be read for sure: an encoded word in a charset that
 *	does not write ASCII as ASCII and cannot be converted whole, a label
 *	longer than 63 bytes, a name longer than 253, 8-bit bytes in a
 *	domain that are not a valid IDN (Latin-1, a disallowed code
 *	point, an A-label longer than 63), or after an '@' (past CFWS) or a dot
 *	anything but a label, an encoded word, an address literal
 *	("[192.0.2.1]") or the end of the address (",", ";", ">", ")",
 *	another '@', the end of the value): a domain literal
 *	("[vendor.test]"), a leading dot, a backslash, a quote.
 *	Encoded words are read both joined (RFC 2047 6.2) and each ending
 *	its token (as Python's reader ends "=?...?=x" at the word).
 */

#include "build_config.h"

#include <ctype.h>
#include <iconv.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>


#include "charset_name.h"
#include "lenient.h"
#include "rfc5322.h"
#include "xalloc.h"

static int lenient_hex(int c)
{
    return (isdigit(c) ? c - '0' : isxdigit(c) ? tolower(c) - 'a' + 10 : -1);
}

static int lenient_b64(int c)
{
    const char *set = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    const char *hit = c ? strchr(set, c) : NULL;

    return (hit ? (int) (hit - set) : -1);
}

/* lenient_q - RFC 2047 4.2 "Q" text to out; the bytes written */

static size_t lenient_q(const char *text, size_t len, char *out)
{
    size_t  n = 0;

    for (size_t i = 0; i < len; i++) {
	unsigned char c = text[i];
	int     hi, lo;

	if (c == '_') {
	    c = ' ';
	} else if (c == '=' && i + 2 < len
		   && (hi = lenient_hex((unsigned char) text[i + 1])) >= 0
		   && (lo = lenient_hex((unsigned char) text[i + 2])) >= 0) {
	    c = hi * 16 + lo;
	    i += 2;
	}
	out[n++] = c;
    }
    return (n);
}

/* lenient_b - "B" text (base64, leniently: what is not base64 is skipped) to out */

static size_t lenient_b(const char *text, size_t len, char *out)
{
    unsigned acc = 0;
    int     bits = 0;
    size_t  n = 0;

    for (size_t i = 0; i < len; i++) {
	int     v = lenient_b64((unsigned char) text[i]);

	if (v < 0)
	    continue;
	acc = (acc << 6) | v;
	if ((bits += 6) >= 8) {
	    out[n++] = (acc >> (bits -= 8)) & 0xff;
	}
    }
    return (n);
}

/*
 * lenient_ascii_charset - does the charset write ASCII as ASCII? A
 * reader decodes UTF-16, UTF-7 or EBCDIC words too, and their bytes,
 * taken as they are, hide the domain (billing@=?utf-16be?b?...?=):
 * those are converted whatever their bytes (lenient_utf8()).
 */
static int lenient_ascii_charset(const char *cs, size_t len)
{
    static const char *const ok[] = {"us-ascii", "ascii", "utf-8", "utf8", "iso-8859-",
	"iso8859-", "latin", "windows-", "cp125", "koi8-", "gb2312", "gbk", "gb18030",
	"big5", "euc-", "shift_jis", "sjis", "tis-620", "viscii", 0};

    for (int i = 0; ok[i]; i++)
	if (len >= strlen(ok[i]) && strncasecmp(cs, ok[i], strlen(ok[i])) == 0)
	    return (1);
    return (0);
}

/*
 * lenient_utf8 - the n bytes at out, in charset cs, as UTF-8 (in place;
 * the new length). Readers convert the charset before they show it, and
 * a full-width at sign (U+FF20) is 0x81 0x97 in Shift_JIS, 0xA3 0xC0 in
 * GB2312: left as bytes, lenient_address_shaped() saw no '@' there. A
 * byte iconv(3) cannot convert stays as it is (Python shows the rest).
 * A charset that does not write ASCII as ASCII (ISO-2022-JP, the usual
 * charset of Japanese mail, writes its kanji as pairs of ASCII bytes;
 * UTF-16, UTF-7) is converted even when every byte is ASCII, and *bad is
 * set when it cannot be converted whole (a codec glibc lacks, a byte it
 * does not know): then the bytes say nothing. A name Python has no codec
 * for is no charset (charset_name(3)): Python's email reads the bytes as
 * ASCII, and so does this (glibc read IBM1047 as EBCDIC, and
 * "ceo@other.example" so labelled was harmless mojibake here: helper-124). out has room for 3 * n bytes:
 * one byte of a charset is at most three of UTF-8.
 */
static size_t lenient_utf8(const char *cs, size_t cslen, char *out, size_t n, int *bad)
{
    char    name[CHARSET_NAME_SIZE], *tmp, *in = out, *to;
    size_t  inleft = n, outleft = 3 * n;
    int     ascii = lenient_ascii_charset(cs, cslen);
    iconv_t cd = (iconv_t) - 1;
    size_t  i;

    for (i = 0; i < n && (unsigned char) out[i] < 0x80; i++)
	 /* void */ ;
    if (cslen == 0)
	*bad = 1;				/* "=?*en?q?...?=": no charset */
    if ((ascii && i == n) || cslen == 0 || n == 0)
	return (n);				/* ASCII as ASCII */
    if (cslen >= CHARSET_NAME_SIZE)
	return (n);				/* no charset: read as ASCII */
    if (charset_name(cs, cslen, name) == NULL) {
	if (charset_python_reads(cs, cslen))
	    *bad |= !ascii;			/* a codec glibc lacks (hz) */
	return (n);				/* else no charset: as ASCII */
    }
    if (ascii && strncasecmp(cs, "utf-8", 5) == 0)
	return (n);
    if ((cd = iconv_open("UTF-8", name)) == (iconv_t) - 1) {
	*bad |= !ascii;
	return (n);
    }
    to = tmp = xmalloc(outleft);
    while (inleft > 0) {
	if (iconv(cd, &in, &inleft, &to, &outleft) != (size_t) -1 || outleft == 0)
	    break;
	*bad |= !ascii;
	*to++ = *in++;				/* not convertible: as it is */
	inleft--;
	outleft--;
    }
    if (inleft == 0 && iconv(cd, NULL, NULL, &to, &outleft) == (size_t) -1)
	*bad |= !ascii;				/* a shift state left open */
    iconv_close(cd);
    n = to - tmp;
    memcpy(out, tmp, n);
    free(tmp);
    return (n);
}

/*
 * lenient_word_cs - the encoded word at p, decoded to out (*n bytes, up
 * to three per byte of p: lenient_utf8()); what follows it, or NULL when
 * p is no encoded word. Strictly, as in RFC 2047 2, its parts hold no
 * '?' and no white space. With loose set, as Python's email package
 * reads one (headerregistry and decode_header()): the charset is
 * anything up to the next '?', the text anything up to the next "?="
 * (white space and folds too: "=?utf-8?b?Q0VPIDxj ZW9A...?="), which
 * it shows decoded. *odd is set for a charset that does not write ASCII
 * as ASCII (the bytes then say nothing).
 */
static const char *lenient_word_cs(const char *p, char *out, size_t *n, int *odd,
				           int loose)
{
    const char *cs = p + 2, *enc, *text, *end;
    size_t  cslen;

    if (p[0] != '=' || p[1] != '?')
	return (NULL);
    enc = cs + strcspn(cs, loose ? "?" : "? \t\r\n");
    if (enc == cs || *enc != '?' || enc[1] == 0 || strchr("qQbB", enc[1]) == NULL
	|| enc[2] != '?')
	return (NULL);
    text = enc + 3;
    if (loose)
	end = (end = strstr(text, "?=")) ? end : text + strlen(text);
    else
	end = text + strcspn(text, "? \t\r\n");
    if (end[0] != '?' || end[1] != '=')
	return (NULL);
    cslen = strcspn(cs, "*?");
    cslen = cslen < (size_t) (enc - cs) ? cslen : (size_t) (enc - cs);
    while (loose && cslen > 0 && strchr(" \t\r\n", cs[cslen - 1]))
	cslen--;				/* Python: "utf-8 " is utf-8 */
    if (out) {
	int     bad = 0;

	*n = (enc[1] == 'q' || enc[1] == 'Q') ? lenient_q(text, end - text, out)
	    : lenient_b(text, end - text, out);
	*n = lenient_utf8(cs, cslen, out, *n, &bad);
	for (size_t i = 0; i < *n; i++)
	    out[i] = out[i] ? out[i] : '?';	/* after the charset: UTF-16 */
	if (odd && bad)
	    *odd = 1;
    }
    return (end + 2);
}

static const char *lenient_word(const char *p, char *out, size_t *n)
{
    return (lenient_word_cs(p, out, n, NULL, 0));
}

/*
 * lenient_decode_as - lenient_decode() (LENIENT_JOINED), or each
 * decoded word followed by a space and adjacent words not joined
 * (LENIENT_SPLIT): Python's reader ends a token at an encoded word's end
 * ("=?...?=x" is the word alone) where RFC 2047 6.2 joins words; both
 * readings are looked at. LENIENT_LOOSE splits too, and reads words as
 * Python does (lenient_word_cs()); a loose word that is no strict one
 * sets *unsure: other readers may show it either way.
 */
#define LENIENT_JOINED	0
#define LENIENT_SPLIT	1
#define LENIENT_LOOSE	2

static char *lenient_decode_as(const char *value, int how, int *odd, int *unsure)
{
    char   *out = xmalloc(3 * strlen(value) + 1);
    size_t  used = 0, n;
    const char *p = value, *next;
    int     after_word = 0, loose = how == LENIENT_LOOSE;

    while (*p) {
	if ((next = lenient_word_cs(p, out + used, &n, odd, loose)) != NULL) {
	    if (loose && unsure && lenient_word(p, NULL, NULL) != next)
		*unsure = 1;
	    used += n;
	    if (how != LENIENT_JOINED)
		out[used++] = ' ';
	    p = next;
	    after_word = 1;
	    continue;
	}
	if (how == LENIENT_JOINED && after_word && strchr(" \t\r\n", *p)) {
	    const char *q = p + strspn(p, " \t\r\n");

	    if (lenient_word(q, NULL, NULL) != NULL) {
		p = q;				/* RFC 2047 6.2: not shown */
		continue;
	    }
	}
	after_word = 0;
	out[used++] = *p++;
    }
    out[used] = 0;
    return (out);
}

char   *lenient_decode(const char *value)
{
    return (lenient_decode_as(value, LENIENT_JOINED, NULL, NULL));
}

/*
 * lenient_label - the length of the label at p: LDH bytes, and 8-bit
 * bytes (a U-label, RFC 6532 mail; rfc5322_alabels() judges it); *wide
 * is set when there are 8-bit bytes
 */
static size_t lenient_label(const char *p, int *wide)
{
    size_t  n = 0;

    while (isalnum((unsigned char) p[n]) || p[n] == '-' || p[n] == '_'
	   || (unsigned char) p[n] >= 0x80)
	*wide |= (unsigned char) p[n++] >= 0x80;
    return (n);
}

/*
 * lenient_no_domain - a byte after which a reader shows no domain: the
 * end, or one that ends an address, a list or a comment ("billing@,",
 * "(a@)"); another '@' is looked at by itself
 */
static int lenient_no_domain(int c)
{
    return (c == 0 || strchr(",;>)@", c) != NULL);
}

/*
 * lenient_ip_literal - an address literal, "[192.0.2.1]" or "[IPv6:...]"
 * (RFC 5321 4.1.3): a reader shows an address there, no domain
 */
static int lenient_ip_literal(const char *p)
{
    size_t  n;

    if (*p++ != '[')
	return (0);
    if (strncasecmp(p, "IPv6:", 5) == 0)
	n = strspn(p += 5, "0123456789abcdefABCDEF:.");
    else
	n = strspn(p, "0123456789.");
    return (n > 0 && p[n] == ']');
}

/*
 * lenient_domain - the domain after an '@' (p just after it) into name;
 * 0, or -1 when there is none of two labels or more; -2 when it cannot
 * be read for sure: a label longer than DNS allows (a reader still shows
 * it as under its parent, whose policy it would escape), a name longer
 * than 253 bytes, 8-bit bytes that are no valid IDN (a Unicode name is
 * read as its A-labels, rfc5322_alabels()), and where a name should
 * start anything but a label,
 * the end of the address or an encoded word (read in the decoded
 * value) or an address literal: a domain literal "[vendor.test]", a
 * leading or double dot, a backslash, a quote, '<'; after a label
 * anything but a dot, white space, a comment or the end of the
 * address (a control byte). Readers show "billing@[vendor.test]" or
 * "billing@.vendor.test" as an address at vendor.test, and finding no
 * name there let such a From: escape a p=reject policy.
 */
/* a name as written: 253 bytes, or four times that for UTF-8 labels */
#define LENIENT_RAW_SIZE (4 * LENIENT_NAME_SIZE)

static int lenient_domain(const char *p, char *name)
{
    char    raw[LENIENT_RAW_SIZE];
    size_t  len = 0, n;
    const char *q;
    int     wide = 0, label_wide;

    for (;;) {
	if ((p = rfc5322_skip_cfws(p)) == NULL)
	    break;				/* a comment to the end */
	label_wide = 0;
	n = lenient_label(p, &label_wide);
	wide |= label_wide;
	if ((n > 63 && !label_wide) || p[n] == '\\')
	    return (-2);
	if (n == 0 && (lenient_no_domain(*p) || lenient_word(p, NULL, NULL)
		       || (len == 0 && lenient_ip_literal(p))))
	    break;
	if (n == 0 || len + n + 1 >= LENIENT_RAW_SIZE)
	    return (-2);
	if (len)
	    raw[len++] = '.';
	for (size_t i = 0; i < n; i++)
	    raw[len++] = tolower((unsigned char) p[i]);
	p += n;
	if ((q = rfc5322_skip_cfws(p)) == NULL)
	    break;
	/* after a label: a dot, or what ends the address (or the quoted
	   string or display name it stood in); a byte that
	   can do neither ("vendor\x0b.test": Python drops the VT and
	   reads vendor.test, a reader may show it) leaves the name
	   unknown, and a name of one label was not counted at all */
	if (*q != '.' && !lenient_no_domain(*q) && *q != '"' && *q != '<' && q == p)
	    return (-2);
	if (*q != '.')
	    break;
	p = q + 1;
    }
    raw[len] = 0;
    if (wide) {
	if (rfc5322_alabels(raw, name, LENIENT_NAME_SIZE) < 0)
	    return (-2);
    } else if (len >= LENIENT_NAME_SIZE) {
	return (-2);				/* longer than 253 */
    } else {
	memcpy(name, raw, len + 1);
    }
    return (strchr(name, '.') ? 0 : -1);
}

/* lenient_scan - add each domain after an '@' in text to names; -1: too many */

static int lenient_scan(const char *text, char (*names)[LENIENT_NAME_SIZE], int max,
			        int *count)
{
    char    name[LENIENT_NAME_SIZE];
    int     i, ats = 0;

    for (const char *at = strchr(text, '@'); at; at = strchr(at + 1, '@')) {
	if (++ats > LENIENT_AT_MAX)
	    return (-1);
	if ((i = lenient_domain(at + 1, name)) == -2)
	    return (-1);			/* cannot tell: the strictest */
	if (i < 0)
	    continue;
	for (i = 0; i < *count && strcmp(names[i], name) != 0; i++)
	     /* void */ ;
	if (i < *count)
	    continue;
	if (*count >= max)
	    return (-1);
	strcpy(names[(*count)++], name);
    }
    return (0);
}

int     lenient_domains(const char *value, char (*names)[LENIENT_NAME_SIZE], int max)
{
    int     odd = 0;
    char   *joined = lenient_decode_as(value, LENIENT_JOINED, &odd, NULL);
    char   *split = lenient_decode_as(value, LENIENT_SPLIT, &odd, NULL);
    char   *loose = lenient_decode_as(value, LENIENT_LOOSE, &odd, NULL);
    int     count = 0, err;

    err = odd ? -1 : lenient_scan(value, names, max, &count);
    if (err == 0 && strcmp(joined, value) != 0)
	err = lenient_scan(joined, names, max, &count);
    if (err == 0 && strcmp(split, joined) != 0)
	err = lenient_scan(split, names, max, &count);
    if (err == 0 && strcmp(loose, split) != 0)
	err = lenient_scan(loose, names, max, &count);
    free(joined);
    free(split);
    free(loose);
    return (err < 0 ? -1 : count);
}

/*
 * lenient_at - the length of an at sign at p: '@', or a character NFKC
 * maps to '@' (U+FF20 FULLWIDTH and U+FE6B SMALL COMMERCIAL AT, the only
 * two in Unicode 15), which a reader shows as an address's at sign all
 * the same: "ceo\uFE6Bplana.solutions" <billing@planapulse.ai>
 */
static size_t lenient_at(const char *p)
{
    if (*p == '@')
	return (1);
    if (strncmp(p, "\xef\xbc\xa0", 3) == 0 || strncmp(p, "\xef\xb9\xab", 3) == 0)
	return (3);
    return (0);
}

/* lenient_address_shaped - an at sign between two non-space bytes, or '<' then '>' */

static int lenient_address_shaped(const char *text)
{
    size_t  at;

    for (const char *p = text; *p; p++) {
	if ((at = lenient_at(p)) > 0 && p > text && !isspace((unsigned char) p[-1])
	    && p[at] && !isspace((unsigned char) p[at]))
	    return (1);
	if (*p == '<' && strchr(p + 1, '>') != NULL)
	    return (1);
    }
    return (0);
}

/*
 * lenient_display_name - the display name of a mailbox rfc5322(3) read:
 * quoted strings unquoted, comments dropped, words one space apart;
 * "" for an addr-spec without angle brackets.
 */
static char *lenient_display_name(const char *value)
{
    size_t  size = strlen(value) + 2, used = 0;
    char   *out = xmalloc(size);
    const char *p = rfc5322_skip_cfws(value), *next;

    out[0] = 0;
    while (p && *p && *p != '<') {
	if (*p == '"') {
	    if ((next = rfc5322_quoted_string(p, out + used, size - used)) == NULL)
		break;
	    used += strlen(out + used);
	} else {
	    for (next = p; *next && !isspace((unsigned char) *next)
		 && strchr("(\"<", *next) == NULL; next++)
		out[used++] = *next;
	    if (next == p)
		break;				/* cannot be: rfc5322(3) read it */
	}
	if ((p = rfc5322_skip_cfws(next)) != NULL && p != next && used)
	    out[used++] = ' ';
	out[used] = 0;
    }
    if (p == NULL || *p != '<')
	out[0] = 0;				/* no display name */
    return (out);
}

/*
 * lenient_comments - the text of every comment outside quoted strings,
 * quoted pairs unquoted, nested comments' parentheses dropped, each
 * comment one space apart. Readers that show "addr (Name)" take the
 * comment as the name (Thunderbird does), so it is looked at as one.
 */
static char *lenient_comments(const char *value)
{
    char   *out = xmalloc(strlen(value) + 2);
    size_t  used = 0;
    int     depth = 0, quoted = 0;

    for (const char *p = value; *p; p++) {
	if (*p == '\\' && p[1] && (quoted || depth > 0)) {
	    if (depth > 0)
		out[used++] = p[1];
	    p++;
	} else if (depth == 0 && *p == '"') {
	    quoted = !quoted;
	} else if (quoted) {
	    continue;
	} else if (*p == '(') {
	    if (depth++ == 0 && used)
		out[used++] = ' ';
	} else if (*p == ')' && depth > 0) {
	    depth--;
	} else if (depth > 0) {
	    out[used++] = *p;
	}
    }
    out[used] = 0;
    return (out);
}

/* lenient_shows_address - text, as written and decoded, shaped like one */

static int lenient_shows_address(const char *text)
{
    int     odd = 0, unsure = 0;
    char   *joined = lenient_decode_as(text, LENIENT_JOINED, &odd, NULL);
    char   *split = lenient_decode_as(text, LENIENT_SPLIT, &odd, NULL);
    char   *loose = lenient_decode_as(text, LENIENT_LOOSE, &odd, &unsure);
    int     shaped = odd || unsure || lenient_address_shaped(text)
    || lenient_address_shaped(joined) || lenient_address_shaped(split)
    || lenient_address_shaped(loose);

    free(joined);
    free(split);
    free(loose);
    return (shaped);
}

int     lenient_display_address(const char *value)
{
    char   *name = lenient_display_name(value);
    char   *comments = lenient_comments(value);
    int     shaped = lenient_shows_address(name) || lenient_shows_address(comments);

    free(name);
    free(comments);
    return (shaped);
}
