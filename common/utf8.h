#ifndef MXKIT_UTF8_H
#define MXKIT_UTF8_H

/*
 * utf8 - one UTF-8 character, as RFC 3629 defines them. A header of its
 * own (static inline): the Dovecot plugin links none of common/'s
 * libraries, and the same decoder serves it, milter-dkim and the
 * daemons.
 *
 * utf8_decode() returns the length of the well-formed character at s (at
 * most left bytes; 1 for ASCII) and its code point in *cp (when cp is not
 * NULL), or 0: a byte that starts none, a cut sequence, an overlong form,
 * a surrogate, a code point past U+10FFFF.
 */

#include <stddef.h>

static inline size_t utf8_decode(const unsigned char *s, size_t left, unsigned int *cp)
{
    unsigned int c;
    size_t  n;

    if (left == 0)
	return (0);
    if (s[0] < 0x80)
	n = 1, c = s[0];
    else if (s[0] >= 0xC2 && s[0] <= 0xDF)
	n = 2, c = s[0] & 0x1F;
    else if (s[0] >= 0xE0 && s[0] <= 0xEF)
	n = 3, c = s[0] & 0x0F;
    else if (s[0] >= 0xF0 && s[0] <= 0xF4)
	n = 4, c = s[0] & 0x07;
    else
	return (0);
    if (n > left)
	return (0);
    for (size_t i = 1; i < n; i++) {
	if ((s[i] & 0xC0) != 0x80)
	    return (0);
	c = c << 6 | (s[i] & 0x3F);
    }
    if ((n == 3 && c < 0x800) || (n == 4 && (c < 0x10000 || c > 0x10FFFF))
	|| (c >= 0xD800 && c <= 0xDFFF))
	return (0);				/* overlong, too big, surrogate */
    if (cp != NULL)
	*cp = c;
    return (n);
}

#endif
