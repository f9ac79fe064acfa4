/*
 * NAME
 *	rfc5322 3
 * SUMMARY
 *	strict readers: the mailbox of a From: value, the authserv-id of
 *	an Authentication-Results value
 * SYNOPSIS
 *	#include <idn2.h>

#include "rfc5322.h"
 *
 *	const char *rfc5322_mailbox(value, buf, len)
 *	int	rfc5322_alabels(raw, name, size)
 *	const char *rfc8601_authserv_id(value, buf, len)
 *	int	rfc8601_same_id(a, b)
 *	char	*rfc8601_value(value)
 * DESCRIPTION
 *	Both readers decide trust, so they accept only what every parser
 *	reads the same way, and refuse the rest instead of guessing: a
 *	receiver's parser that reads another address than ours (or
 *	another authserv-id) is exactly the attack.
 *
 *	rfc5322_mailbox() reads a From: value as RFC 5322 "mailbox":
 *	[CFWS] addr-spec [CFWS], or [phrase] [CFWS] "<" addr-spec ">"
 *	[CFWS], with comments (nested, quoted-pairs) and folding wherever
 *	CFWS may stand. The display name is a phrase: atoms (8-bit
 *	bytes allowed, RFC 6532), quoted strings and, from obs-phrase,
 *	dots between words ("John Q. Public"; not a dot right before the
 *	'<', on which Python's reader fails). The addr-spec is a
 *	dot-atom or a quoted local part whose content is a dot-atom
 *	(written unquoted, as every parser normalises it), "@", and a
 *	dot-atom domain, lower-cased. Both may hold UTF-8 (RFC 6532: an
 *	SMTPUTF8 sender, jörg@bücher.example); a domain with U-labels is
 *	given as its A-labels (IDNA2008, NFC: xn--bcher-kva.example, the
 *	name its keys and DMARC policy are published under, RFC 8616).
 *	Refused: groups, lists,
 *	a second angle address or any text after the address, source
 *	routes, domain literals, obs-local-part (CFWS between dots),
 *	quoted local parts that need quoting, 8-bit bytes that are no
 *	UTF-8 and UTF-8 characters readers show as another, as nothing or
 *	elsewhere in the address (rfc5322_refused[]: look-alikes,
 *	invisibles, right-to-left scripts), a domain that is no valid IDN
 *	or A-labels that are not what their U-labels give, an 8-bit byte
 *	before a backslash or a control character anywhere in the value
 *	(rfc5322_legacy_risk()), an
 *	addr-spec with "=?" in it (an RFC 2047 encoded word, which lenient
 *	readers decode there), anything longer than the buffer.
 *
 *	rfc5322_alabels() writes a name with U-labels as its A-labels
 *	(0), or returns -1 for one that is no valid IDN or does not fit.
 *
 *	rfc8601_authserv_id() reads "[CFWS] authserv-id [CFWS
 *	authres-version] [CFWS] ;" where authserv-id is an RFC 2045 token
 *	or a quoted string; a quoted id must contain a token (an id with
 *	spaces, NBSP or ';' inside quotes is read differently by lax
 *	parsers). rfc8601_same_id() compares two ids ignoring case and a
 *	trailing dot. rfc8601_value() returns a pvalue safe to emit in our
 *	own A-R: the text itself when it is a token (or local@domain),
 *	else a quoted string with control and 8-bit bytes replaced by '?'.
 * DIAGNOSTICS
 *	The readers return NULL, or a static string saying what is wrong
 *	("group syntax", "several addresses", ...); buf is then undefined.
 */

#include "build_config.h"

#include <ctype.h>
#include <string.h>
#include <strings.h>

#include <idn2.h>

#include "rfc5322.h"
#include "utf8.h"
#include "xalloc.h"

struct rfc5322_out {
    char   *buf;			/* NULL: discard */
    size_t  len;
    size_t  used;
    int     overflow;
};

static void rfc5322_put(struct rfc5322_out *o, int c)
{
    if (o == NULL || o->buf == NULL)
	return;
    if (o->used + 1 >= o->len) {
	o->overflow = 1;
	return;
    }
    o->buf[o->used++] = c;
    o->buf[o->used] = 0;
}

static int rfc5322_wsp(int c)
{
    return (c == ' ' || c == '\t' || c == '\r' || c == '\n');
}

static int rfc5322_atext(int c)
{
    return (c > 0 && c < 128 && (isalnum(c) || strchr("!#$%&'*+-/=?^_`{|}~", c) != NULL));
}

static int rfc5322_token(int c)
{
    return (c > 32 && c < 127 && strchr("()<>@,;:\\\"/[]?=", c) == NULL);
}

/* rfc5322_cfws - skip white space, folding and (nested) comments */

static int rfc5322_cfws(const char **pp)
{
    const char *p = *pp;
    int     depth = 0;

    for (;;) {
	if (*p == '(') {
	    depth++, p++;
	} else if (depth == 0) {
	    if (!rfc5322_wsp((unsigned char) *p))
		break;
	    p++;
	} else if (*p == 0) {
	    return (-1);			/* unterminated comment */
	} else if (*p == '\\' && p[1]) {
	    p += 2;
	} else {
	    depth -= (*p++ == ')');
	}
    }
    *pp = p;
    return (0);
}

/* rfc5322_quoted - a quoted string, its content (unescaped, unfolded) to o */

static int rfc5322_quoted(const char **pp, struct rfc5322_out *o)
{
    const char *p = *pp + 1;

    for (;; p++) {
	if (*p == 0 || (*p == '\\' && p[1] == 0))
	    return (-1);
	if (*p == '"')
	    break;
	if (*p == '\\')
	    rfc5322_put(o, *++p);
	else if (*p != '\r' && *p != '\n')
	    rfc5322_put(o, *p);
    }
    *pp = p + 1;
    return (0);
}

/*
 * What an address may not hold although it is UTF-8 (helper-132): what a
 * reader shows as another character, as nothing, or elsewhere than it
 * stands. C1 controls and NBSP; the soft hyphen; the look-alikes of '@'
 * (U+FF20, U+FE6B), '.' (U+00B7, U+0387, U+0660, U+06D4, U+0701-0702,
 * U+2024, U+2219, U+22C5, U+2E31, U+2E33, U+3002, U+30FB, U+A4F8, U+FE52,
 * U+FF0E, U+FF61, U+FF65, and Ŀ/ŀ, which IDNA maps to l and U+00B7) and
 * '_' (U+FE33-FE34, U+FE4D-FE4F, U+FF3F); spaces, fillers and blanks
 * (U+115F-1160, U+1680, U+17B4-17B5, U+2000-200A, U+2800, U+3000, U+3164,
 * U+FFA0); zero-width, joiner and direction marks and the other format
 * characters (U+061C, U+180E, U+200B-200F, U+2028-202F, U+205F-206F,
 * U+FEFF, U+FFF9-FFFB, U+1D173-1D17A, tags); variation selectors and the
 * grapheme joiner (U+034F, U+180B-180F, U+FE00-FE0F, U+E0100-E01EF,
 * U+1BCA0-1BCA3); private use and noncharacters; and every right-to-left
 * script (U+0590-08FF, U+FB1D-FDFF, U+FE70-FEFF, U+10800-10FFF,
 * U+1E800-1EFFF): reordered around the '@' and the dots, "א@ב.ג.com"
 * shows as another domain than it names.
 */
static const unsigned int rfc5322_refused[][2] = {
    {0x80, 0xa0}, {0xad, 0xad}, {0xb7, 0xb7}, {0x13f, 0x140}, {0x34f, 0x34f},
    {0x387, 0x387}, {0x590, 0x8ff}, {0x115f, 0x1160}, {0x1680, 0x1680},
    {0x17b4, 0x17b5}, {0x180b, 0x180f}, {0x2000, 0x200f}, {0x2024, 0x2024},
    {0x2028, 0x202f}, {0x205f, 0x206f}, {0x2219, 0x2219}, {0x22c5, 0x22c5},
    {0x2800, 0x2800}, {0x2e31, 0x2e31}, {0x2e33, 0x2e33}, {0x3000, 0x3000},
    {0x3002, 0x3002}, {0x30fb, 0x30fb}, {0x3164, 0x3164}, {0xa4f8, 0xa4f8},
    {0xe000, 0xf8ff}, {0xfb1d, 0xfdff}, {0xfe00, 0xfe0f}, {0xfe33, 0xfe34},
    {0xfe4d, 0xfe4f}, {0xfe52, 0xfe52}, {0xfe6b, 0xfe6b}, {0xfe70, 0xfeff},
    {0xff0e, 0xff0e}, {0xff20, 0xff20}, {0xff3f, 0xff3f}, {0xff61, 0xff61},
    {0xff65, 0xff65}, {0xffa0, 0xffa0}, {0xfff9, 0xfffb}, {0xfffe, 0xffff},
    {0x10800, 0x10fff}, {0x1bca0, 0x1bca3}, {0x1d173, 0x1d17a},
    {0x1e800, 0x1efff}, {0xe0000, 0xe01ef}, {0xf0000, 0x10ffff},
};

/*
 * rfc5322_utf8 - the length of the UTF-8 character at s when an address
 * may hold it (RFC 6532 UTF8-non-ascii, well-formed as RFC 3629 says, not
 * in rfc5322_refused[], not a noncharacter), else 0
 */
static size_t rfc5322_utf8(const char *s)
{
    unsigned int cp;
    size_t  n = utf8_decode((const unsigned char *) s, strnlen(s, 4), &cp);

    if (n < 2 || (cp >= 0xfdd0 && cp <= 0xfdef) || (cp & 0xfffe) == 0xfffe)
	return (0);				/* ASCII is not for here, or no UTF-8 */
    for (size_t i = 0; i < sizeof(rfc5322_refused) / sizeof(rfc5322_refused[0]); i++)
	if (cp >= rfc5322_refused[i][0] && cp <= rfc5322_refused[i][1])
	    return (0);
    return (n);
}

/* rfc5322_atext_len - one atext at p: 1, (wide) a UTF-8 character's length, or 0 */

static size_t rfc5322_atext_len(const char *p, int wide)
{
    if (rfc5322_atext((unsigned char) *p))
	return (1);
    return (wide && (unsigned char) *p >= 0x80 ? rfc5322_utf8(p) : 0);
}

/* rfc5322_dot_atom - 1*atext *("." 1*atext) to o; wide: RFC 6532 UTF-8 too */

static int rfc5322_dot_atom(const char **pp, struct rfc5322_out *o, int wide)
{
    const char *p = *pp;
    size_t  n;

    for (;;) {
	if (rfc5322_atext_len(p, wide) == 0)
	    return (-1);			/* empty, "..", leading dot */
	while ((n = rfc5322_atext_len(p, wide)) > 0)
	    while (n-- > 0)
		rfc5322_put(o, *p++);
	if (*p != '.' || rfc5322_atext_len(p + 1, wide) == 0)
	    break;
	rfc5322_put(o, *p++);
    }
    *pp = p;
    return (*p == '.' ? -1 : 0);		/* trailing dot */
}

/* rfc5322_is_dot_atom - the whole string is a dot-atom-text (RFC 6532) */

static int rfc5322_is_dot_atom(const char *s)
{
    const char *p = s;

    return (rfc5322_dot_atom(&p, NULL, 1) == 0 && *p == 0);
}

/*
 * rfc5322_alabels - raw, a name with U-labels, as its A-labels into name
 * (IDNA2008 after NFC, as a reader shows it and as its owner publishes
 * its keys and _dmarc in DNS); -1 when it is no valid IDN, or its result
 * is no name of LDH labels of 63 bytes at most that fits in size.
 * libidn2's mapping (UTS 46) turns some code points into ASCII no name
 * may hold: U+3000 and U+00A0 into a space, U+FF20 into '@'
 * ("vendor.test" followed by U+3000, which readers show as vendor.test,
 * came out "vendor.test " and was then skipped as no name: a p=reject
 * spoof delivered).
 */
int     rfc5322_alabels(const char *raw, char *name, size_t size)
{
    char   *out = NULL;
    size_t  label = 0, len;
    int     err = -1;

    /* U+1E9E: libidn2 (UTS 46 before 15.1) maps it to "ss", readers of
       today to U+00DF: faẞ.de would be read as fass.de, shown as faß.de */
    if (strstr(raw, "\xe1\xba\x9e") != NULL
	|| idn2_to_ascii_8z(raw, &out, IDN2_NFC_INPUT | IDN2_NONTRANSITIONAL) != IDN2_OK)
	goto done;
    if ((len = strlen(out)) == 0 || len >= size)
	goto done;
    for (size_t i = 0; i < len; i++) {
	if (out[i] == '.') {
	    if (label == 0)
		goto done;
	    label = 0;
	} else if ((!isalnum((unsigned char) out[i]) && out[i] != '-' && out[i] != '_')
		   || ++label > 63) {
	    goto done;
	}
	name[i] = tolower((unsigned char) out[i]);
    }
    if (label == 0)
	goto done;
    name[len] = 0;
    err = 0;
done:
    idn2_free(out);
    return (err);
}

/* rfc5322_unexpected - why the text at p ends the parse */

static const char *rfc5322_unexpected(const char *p)
{
    switch (*p) {
    case 0:
	return ("no address");
    case ',':
	return ("several addresses");
    case ':':
    case ';':
	return ("group syntax");
    case '<':
    case '>':
	return ("text around the address is not a display name");
    case '[':
	return ("domain literal");
    case '(':
	return ("unterminated comment");
    case '"':
	return ("unterminated quoted string");
    default:
	return ((unsigned char) *p >= 0x80 ? "8-bit address that is no UTF-8 (RFC 6532), or "
		"with a character readers show as another, as nothing or elsewhere "
		"(a look-alike, an invisible or a right-to-left one)"
		: "invalid address syntax");
    }
}

/*
 * rfc5322_alabels_valid - a name written in A-labels is what its U-labels
 * give (RFC 5891 5.4: decoded, checked, encoded again, the same), and
 * those hold nothing an address may not (rfc5322_utf8()): a reader shows
 * xn--bucher-xyd (a decomposed u-umlaut) as bücher, which is
 * xn--bcher-kva, and xn--paypal-dla as pay·pal; a name without "xn--"
 * labels is valid as it stands
 */
static int rfc5322_alabels_valid(const char *name)
{
    char   *unicode = NULL, again[254];
    int     valid = 0;

    if (strncmp(name, "xn--", 4) != 0 && strstr(name, ".xn--") == NULL)
	return (1);
    if (idn2_to_unicode_8z8z(name, &unicode, 0) != IDN2_OK)
	goto done;
    for (const char *u = unicode; *u; u++)
	if ((unsigned char) *u >= 0x80) {
	    size_t  n = rfc5322_utf8(u);

	    if (n == 0)
		goto done;
	    u += n - 1;
	}
    valid = rfc5322_alabels(unicode, again, sizeof(again)) == 0 && strcmp(again, name) == 0;
done:
    idn2_free(unicode);
    return (valid);
}

/*
 * rfc5322_domain - the domain at buf + domain, lower-cased; one with
 * U-labels (RFC 6532) as its A-labels, the name its DKIM keys and DMARC
 * policy are published under (RFC 8616)
 */
static const char *rfc5322_domain(char *buf, size_t domain, size_t len)
{
    char    alabels[254];			/* a name of 253 bytes, its NUL */
    int     wide = 0;

    for (char *c = buf + domain; *c; c++) {	/* ASCII only, whatever the locale */
	wide |= (unsigned char) *c >= 0x80;
	if (*c >= 'A' && *c <= 'Z')
	    *c += 'a' - 'A';
    }
    if (!wide)
	return (rfc5322_alabels_valid(buf + domain) ? NULL
		: "A-labels that are no valid IDN (RFC 5891 5.4)");
    if (rfc5322_alabels(buf + domain, alabels, sizeof(alabels)) < 0)
	return ("domain that is no valid IDN");
    if (domain + strlen(alabels) >= len)
	return ("address too long");
    strcpy(buf + domain, alabels);
    return (NULL);
}

static const char *rfc5322_addr_spec(const char **pp, char *buf, size_t len, int angle)
{
    struct rfc5322_out o = {buf, len, 0, 0};
    const char *p = *pp, *err;
    size_t  domain;

    buf[0] = 0;
    if (rfc5322_cfws(&p))
	return ("unterminated comment");
    if (*p == '@')
	return (angle ? "source route" : "empty local part");
    if (*p == '"') {
	if (rfc5322_quoted(&p, &o))
	    return ("unterminated quoted string");
	if (!o.overflow && !rfc5322_is_dot_atom(buf))
	    return ("quoted local part that needs its quotes");
    } else if (rfc5322_dot_atom(&p, &o, 1)) {
	return (rfc5322_unexpected(p));
    }
    if (rfc5322_cfws(&p))
	return ("unterminated comment");
    if (*p != '@')
	return (*p == '.' ? "obsolete local part" : *p ? rfc5322_unexpected(p) : "no '@'");
    rfc5322_put(&o, *p++);
    if (rfc5322_cfws(&p))
	return ("unterminated comment");
    domain = o.used;
    if (rfc5322_dot_atom(&p, &o, 1))
	return (*p == '.' || rfc5322_atext((unsigned char) *p) ? "invalid domain"
		: rfc5322_unexpected(p));
    if (o.overflow)
	return ("address too long");
    /*
     * An RFC 2047 encoded word is not allowed in an addr-spec, but Python
     * (email.headerregistry) and other readers decode it there:
     * =?utf-8?q?ceo?=@planapulse.ai is ceo@planapulse.ai to them.
     */
    if (strstr(buf, "=?") != NULL)
	return ("encoded word in address");
    if ((err = rfc5322_domain(buf, domain, len)) != NULL)
	return (err);
    if (rfc5322_cfws(&p))
	return ("unterminated comment");
    *pp = p;
    return (NULL);
}

/* rfc5322_phrase - skip a display name; the number of words */

static int rfc5322_phrase(const char **pp)
{
    const char *p = *pp;
    int     words = 0;

    for (;;) {
	if (*p == '"') {
	    if (rfc5322_quoted(&p, NULL))
		break;
	} else if (rfc5322_atext((unsigned char) *p) || (unsigned char) *p >= 0x80) {
	    while (rfc5322_atext((unsigned char) *p) || (unsigned char) *p >= 0x80)
		p++;
	} else if (*p == '.' && words > 0) {	/* obs-phrase */
	    p++;
	    words--;
	} else {
	    break;
	}
	words++;
	if (rfc5322_cfws(&p))
	    break;
	*pp = p;
    }
    return (words);
}

/*
 * rfc5322_legacy_risk - what makes a reader that decodes raw 8-bit
 * headers in a legacy charset see other quotes and comments than ours
 * (helper-132): an 8-bit byte right before a backslash (Shift_JIS, GBK and
 * Big5 read the two as one character, the backslash no escape, and
 * "\x81\\" <ceo@bank.example> x" <user@corp.example> showed
 * ceo@bank.example), and a control character other than white space (ESC
 * starts ISO-2022-JP, whose two-byte mode pairs the ASCII after it)
 */
static const char *rfc5322_legacy_risk(const char *value)
{
    for (const unsigned char *p = (const unsigned char *) value; *p; p++) {
	if (*p == '\\' && p > (const unsigned char *) value && p[-1] >= 0x80)
	    return ("an 8-bit byte before a backslash (one character in Shift_JIS or GBK)");
	if ((*p < 0x20 && *p != '\t' && *p != '\r' && *p != '\n') || *p == 0x7f)
	    return ("a control character");
    }
    return (NULL);
}

const char *rfc5322_mailbox(const char *value, char *buf, size_t len)
{
    const char *p = value, *err;

    if (len < 2)
	return ("address too long");
    if ((err = rfc5322_legacy_risk(value)) != NULL)
	return (err);
    if (rfc5322_cfws(&p))
	return ("unterminated comment");
    rfc5322_phrase(&p);
    /*
     * "John Q.<a@b.example>": Python's email package fails on a dot right
     * before the '<' (AttributeError) and reads no address at all.
     */
    if (*p == '<' && p > value && p[-1] == '.')
	return ("a dot right before the angle address");
    if (*p == '<') {
	p++;
	if ((err = rfc5322_addr_spec(&p, buf, len, 1)) != NULL)
	    return (err);
	if (*p != '>')
	    return (*p ? rfc5322_unexpected(p) : "angle address not closed");
	p++;
	if (rfc5322_cfws(&p))
	    return ("unterminated comment");
    } else {
	p = value;
	if ((err = rfc5322_addr_spec(&p, buf, len, 0)) != NULL)
	    return (err);
    }
    return (*p ? rfc5322_unexpected(p) : NULL);
}

const char *rfc8601_authserv_id(const char *value, char *buf, size_t len)
{
    struct rfc5322_out o = {buf, len, 0, 0};
    const char *p = value;

    if (len < 2)
	return ("authserv-id too long");
    buf[0] = 0;
    if (rfc5322_cfws(&p))
	return ("unterminated comment");
    if (*p == '"') {
	if (rfc5322_quoted(&p, &o))
	    return ("unterminated quoted string");
	for (const char *c = buf; *c; c++)
	    if (!rfc5322_token((unsigned char) *c))
		return ("quoted authserv-id is not a token");
    } else {
	while (rfc5322_token((unsigned char) *p))
	    rfc5322_put(&o, *p++);
    }
    if (o.overflow)
	return ("authserv-id too long");
    if (buf[0] == 0)
	return ("no authserv-id");
    if (rfc5322_cfws(&p))
	return ("unterminated comment");
    if (isdigit((unsigned char) *p)) {		/* authres-version */
	while (isdigit((unsigned char) *p))
	    p++;
	if (rfc5322_cfws(&p))
	    return ("unterminated comment");
    }
    return (*p == ';' ? NULL : "no ';' after the authserv-id");
}

int     rfc8601_same_id(const char *a, const char *b)
{
    size_t  al = strlen(a), bl = strlen(b);

    if (al > 1 && a[al - 1] == '.')
	al--;
    if (bl > 1 && b[bl - 1] == '.')
	bl--;
    return (al == bl && strncasecmp(a, b, al) == 0);
}

char   *rfc8601_value(const char *value)
{
    const char *at = strchr(value, '@');
    char   *out, *q;
    int     plain = *value != 0;

    for (const char *c = value; *c && plain; c++)
	plain = rfc5322_token((unsigned char) *c) || c == at;
    if (plain)
	return (xstrdup(value));
    q = out = xmalloc(2 * strlen(value) + 3);
    *q++ = '"';
    for (const char *c = value; *c; c++) {
	unsigned char ch = *c;

	if (ch == '"' || ch == '\\')
	    *q++ = '\\';
	*q++ = (ch < 32 || ch > 126) ? '?' : ch;
    }
    *q++ = '"';
    *q = 0;
    return (out);
}

/*
 * rfc5322_skip_cfws, rfc5322_quoted_string - the lexical helpers above,
 * for the other reader of RFC 8601 headers (lmtp-webhook's authres.c,
 * which compiles this file): one reading of comments, folding and
 * quoted strings for the milter that removes forged headers and the
 * plugin that trusts the one left. rfc5322_skip_cfws() returns where
 * CFWS ends, NULL for an unterminated comment; rfc5322_quoted_string()
 * (p at the opening quote) copies the content, unescaped and unfolded,
 * to buf and returns what follows the closing quote, NULL when it is
 * unterminated or longer than buf.
 */
const char *rfc5322_skip_cfws(const char *p)
{
    return (rfc5322_cfws(&p) < 0 ? NULL : p);
}

const char *rfc5322_quoted_string(const char *p, char *buf, size_t len)
{
    struct rfc5322_out o = {buf, len, 0, 0};

    if (len < 1 || *p != '"')
	return (NULL);
    buf[0] = 0;
    if (rfc5322_quoted(&p, &o) < 0 || o.overflow)
	return (NULL);
    return (p);
}
