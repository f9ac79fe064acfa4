/*
 * NAME
 *	payload_utf8 3
 * SUMMARY
 *	UTF-8 as the event's JSON strings need it
 * SYNOPSIS
 *	#include "payload.h"
 *
 *	size_t	payload_utf8_len(s, left)
 *	size_t	payload_utf8_bad(s, left)
 *	int	payload_utf8_prefix(s, left)
 *	char	*payload_utf8_clean(data, len, &len_out)
 * DESCRIPTION
 *	payload_utf8_len() is the length of the valid UTF-8 sequence at
 *	s (at most left bytes), or 0: an overlong form, a surrogate, a
 *	code point past U+10FFFF or a cut sequence is not valid.
 *
 *	payload_utf8_bad() is how many bytes at s one U+FFFD stands for
 *	where payload_utf8_len() found none: Unicode's "maximal subpart",
 *	as Python's decode(errors="replace") reads it.
 *
 *	payload_utf8_prefix() says whether the bytes at s are the start
 *	of a sequence that more bytes may complete (the writer keeps them
 *	for the next block instead of replacing them).
 *
 *	payload_utf8_clean() copies data with each invalid subpart made
 *	U+FFFD (malloc()ed, NUL-terminated, its length in len_out).
 * DIAGNOSTICS
 *	None: every input gives an answer.
 */

#include <stdint.h>
#include <string.h>

#include "payload.h"
#include "utf8.h"
#include "wh_alloc.h"

/* payload_utf8_len - length of the valid UTF-8 sequence at s, or 0 */

size_t  payload_utf8_len(const unsigned char *s, size_t left)
{
    return (utf8_decode(s, left, NULL));
}

/*
 * payload_utf8_bad - how many bytes at s one U+FFFD stands for, where
 * payload_utf8_len() found no valid sequence: the longest start of a
 * sequence that could have been valid, at least one byte (Unicode's
 * "maximal subpart", as Python's decode(errors="replace") does). A
 * character cut short, E2 82 then ASCII, is one U+FFFD, not two.
 */
size_t  payload_utf8_bad(const unsigned char *s, size_t left)
{
    unsigned char lo = 0x80, hi = 0xBF;
    size_t  n, i;

    if (s[0] >= 0xC2 && s[0] <= 0xDF)
	n = 2;
    else if (s[0] >= 0xE0 && s[0] <= 0xEF) {
	n = 3;
	lo = s[0] == 0xE0 ? 0xA0 : 0x80;	/* not overlong */
	hi = s[0] == 0xED ? 0x9F : 0xBF;	/* not a surrogate */
    } else if (s[0] >= 0xF0 && s[0] <= 0xF4) {
	n = 4;
	lo = s[0] == 0xF0 ? 0x90 : 0x80;
	hi = s[0] == 0xF4 ? 0x8F : 0xBF;	/* not past U+10FFFF */
    } else
	return (1);
    for (i = 1; i < n && i < left && s[i] >= lo && s[i] <= hi; i++)
	lo = 0x80, hi = 0xBF;
    return (i);
}

char   *payload_utf8_clean(const char *data, size_t len, size_t *len_r)
{
    const unsigned char *s = (const unsigned char *) data;
    char   *out = wh_malloc(len * 3 + 1), *o = out;
    size_t  i = 0, n;

    while (i < len) {
	if ((n = payload_utf8_len(s + i, len - i)) == 0) {
	    memcpy(o, "\xEF\xBF\xBD", 3);	/* U+FFFD */
	    o += 3;
	    i += payload_utf8_bad(s + i, len - i);
	} else {
	    memcpy(o, s + i, n);
	    o += n;
	    i += n;
	}
    }
    *o = 0;
    *len_r = o - out;
    return (out);
}


/* payload_utf8_prefix - a sequence at s that more bytes may complete */

int     payload_utf8_prefix(const unsigned char *s, size_t left)
{
    size_t  n = s[0] >= 0xF0 ? 4 : s[0] >= 0xE0 ? 3 : 2;

    if (s[0] < 0xC2 || s[0] > 0xF4 || left >= n)
	return (0);
    for (size_t i = 1; i < left; i++)
	if ((s[i] & 0xC0) != 0x80)
	    return (0);
    return (1);
}
