/*
 * NAME
 *	lenient 3
 * SUMMARY
 *	the domains a lenient reader finds in a From: value
 * SYNOPSIS
 *	#include "lenient.h"
 *
 *	int	lenient_domains(value, names, max)
 * DESCRIPTION
 *	A From: value the strict reader (rfc5322(3)) refuses is still shown
 *	by mail readers, as the address of whatever domain they find in it,
 *	so DMARC applies to each of those (auth(3)). These functions find
 *	them the way a lenient reader does (Python's email.headerregistry
 *	is the model: it skips comments anywhere), and err towards finding
 *	more: every extra name only makes the verdict stricter.
 *
 *	lenient_domains() looks after each '@', wherever it stands (in a
 *	comment, a quoted string, a second address): CFWS is skipped
 *	(white space, folding, comments with nesting and quoted pairs), then
 *	the labels of a domain are read, with CFWS allowed around the dots
 *	(RFC 5322 obs-domain, which Python reads) and a trailing dot
 *	dropped. Each name is lower-cased and stored once in names; only
 *	names of two or more LDH labels count.
 * DIAGNOSTICS
 *	lenient_domains() returns the number of names stored, or -1 when
 *	the value names more than max domains or holds more than
 *	LENIENT_AT_MAX '@' (each can be a scan to the end of the value in a
 *	From: built to be expensive).
 */

#include "build_config.h"

#include <ctype.h>
#include <string.h>

#include "lenient.h"
#include "rfc5322.h"

/* lenient_label - the length of the LDH label at p */

static size_t lenient_label(const char *p)
{
    size_t  n = 0;

    while (isalnum((unsigned char) p[n]) || p[n] == '-' || p[n] == '_')
	n++;
    return (n);
}

/*
 * lenient_domain - the domain after an '@' (p just after it) into name;
 * 0, or -1 when there is none of two labels or more. A label too long
 * for DNS ends the name where it stands.
 */
static int lenient_domain(const char *p, char *name)
{
    size_t  len = 0, n;
    const char *q;

    for (;;) {
	if ((p = rfc5322_skip_cfws(p)) == NULL || (n = lenient_label(p)) == 0 || n > 63
	    || len + n + 1 >= LENIENT_NAME_SIZE)
	    break;
	if (len)
	    name[len++] = '.';
	for (size_t i = 0; i < n; i++)
	    name[len++] = tolower((unsigned char) p[i]);
	p += n;
	if ((q = rfc5322_skip_cfws(p)) == NULL || *q != '.')
	    break;
	p = q + 1;
    }
    name[len] = 0;
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
	if (lenient_domain(at + 1, name) < 0)
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
    int     count = 0;

    return (lenient_scan(value, names, max, &count) < 0 ? -1 : count);
}
