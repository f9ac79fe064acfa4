/*
 * NAME
 *	sigtags 3
 * SUMMARY
 *	a DKIM-Signature's tag-list, read as RFC 6376 3.2 and 6.1.1 say
 * SYNOPSIS
 *	#include "sigtags.h"
 *
 *	int	sigtags_check(value, &result)
 *	int	sigtags_name_ok(name, len)
 * DESCRIPTION
 *	sigtags_check() reads the value of one DKIM-Signature header
 *	before libopendkim sees it, and returns 0 when a verifier may go
 *	on with it, -1 (result.why says why) when RFC 6376 makes the
 *	signature a permanent failure without any lookup:
 *
 *	a tag-list that is not "tag=value" specs separated by ';' (3.2;
 *	an empty spec between two ';', a tag name not ALPHA *ALNUMPUNC,
 *	a control character in a value), a tag given twice (3.2: the
 *	whole list is invalid; libopendkim used the last one, so
 *	"d=attacker.test; d=vendor.test" passed as vendor.test's), a
 *	required tag missing (6.1.1: v, a, b, bh, d, h, s), v= other
 *	than 1, a t= or x= that is not 1 to 12 digits or an l= that is
 *	not 1 to 76 (3.5: "+99", "-1", "", 20 digits; libopendkim dropped
 *	some such signatures, so a signed message read as dkim=none, and
 *	read others as numbers), and a d= or s= that cannot make a DNS
 *	query name: a
 *	label empty, longer than 63 bytes or with a byte other than
 *	letters, digits, '-' and '_' (8-bit, a backslash), or
 *	"s._domainkey.d" longer than 253 bytes. Such a name used to reach
 *	the resolver, which refused it as a syntax error, and libopendkim
 *	took that for a DNS failure: a spoofer's bogus signature with
 *	d=vendor.test turned p=reject's 550 into a 451 (dkim=temperror).
 *
 *	result.domain is d= when it was given once and is a valid name
 *	(the A-R's header.d), else empty.
 *
 *	sigtags_name_ok() says whether len bytes of name are such a name
 *	(without a trailing dot).
 *
 *	sigtags_value() finds the tag name (lower case, as RFC 6376 names
 *	them) in a tag-list sigtags_check() accepts, its value without the
 *	white space around it: 1 and *start, *len; 0 when the tag is not
 *	there; -1 when sigtags_check() refuses the list. lmtp-webhook
 *	reads h= and l= with it: the same reading as the verifier's.
 */

#include "build_config.h"

#include <ctype.h>
#include <stdio.h>
#include <string.h>

#include "sigtags.h"

struct sigtags_tag {
    const char *name;
    size_t  name_len;
    const char *value;
    size_t  value_len;
    int     count;
};

#define SIGTAGS_WS " \t\r\n"

int     sigtags_name_ok(const char *name, size_t len)
{
    size_t  label = 0;

    if (len == 0 || len > 253)
	return (0);
    for (size_t i = 0; i < len; i++) {
	unsigned char c = name[i];

	if (c == '.') {
	    if (label == 0)
		return (0);
	    label = 0;
	} else if ((!isalnum(c) && c != '-' && c != '_') || c > 127 || ++label > 63) {
	    return (0);
	}
    }
    return (label > 0);
}

/* sigtags_find - the tag named NAME, or NULL */

static struct sigtags_tag *sigtags_find(struct sigtags_tag *tags, int n, const char *name,
					        size_t len)
{
    for (int i = 0; i < n; i++)
	if (tags[i].name_len == len && memcmp(tags[i].name, name, len) == 0)
	    return (&tags[i]);
    return (NULL);
}

/* sigtags_value_ok - tval *(FWS tval) (RFC 6376 3.2): no control characters */

static int sigtags_value_ok(const char *value, size_t len)
{
    for (size_t i = 0; i < len; i++) {
	unsigned char c = value[i];

	if ((c < 0x21 && strchr(SIGTAGS_WS, c) == NULL) || c == 0x7f)
	    return (0);
    }
    return (1);
}

/* sigtags_parse - the tag-list into tags; -1 and why when it is not one */

static int sigtags_parse(const char *cp, struct sigtags_tag *tags, int *ntags,
			         struct sigtags_result *out)
{
    struct sigtags_tag *t;

    for (*ntags = 0;;) {
	const char *name, *value, *end;
	size_t  name_len;
	int     last;

	cp += strspn(cp, SIGTAGS_WS);
	if (*cp == 0 && *ntags > 0)
	    return (0);				/* [";"] at the end */
	name = cp;
	if (!isalpha((unsigned char) *cp)) {
	    snprintf(out->why, sizeof(out->why), *cp == 0 ? "empty tag-list"
		     : "invalid tag-list (a tag-spec without a tag name)");
	    return (-1);
	}
	while (isalnum((unsigned char) *cp) || *cp == '_')
	    cp++;
	name_len = cp - name;
	cp += strspn(cp, SIGTAGS_WS);
	if (*cp++ != '=') {
	    snprintf(out->why, sizeof(out->why), "invalid tag-list (no '=' after %.*s)",
		     (int) (name_len > 8 ? 8 : name_len), name);
	    return (-1);
	}
	value = cp + strspn(cp, SIGTAGS_WS);
	end = value + strcspn(value, ";");
	last = *end == 0;
	cp = last ? end : end + 1;
	while (end > value && strchr(SIGTAGS_WS, end[-1]))
	    end--;
	if (!sigtags_value_ok(value, end - value)) {
	    snprintf(out->why, sizeof(out->why), "invalid tag-list (a control character "
		     "in %.*s=)", (int) (name_len > 8 ? 8 : name_len), name);
	    return (-1);
	}
	if ((t = sigtags_find(tags, *ntags, name, name_len)) == NULL) {
	    if (*ntags == SIGTAGS_TAGS_MAX) {
		snprintf(out->why, sizeof(out->why), "more than %d tags", SIGTAGS_TAGS_MAX);
		return (-1);
	    }
	    t = &tags[(*ntags)++];
	    *t = (struct sigtags_tag) {name, name_len, value, end - value, 0};
	}
	t->count++;
	if (last)
	    return (0);
    }
}

/*
 * sigtags_numbers - t=, x= (1*12DIGIT) and l= (1*76DIGIT), RFC 6376 3.5:
 * libopendkim dropped a signature whose t= or x= it could not read (the
 * A-R then said dkim=none for a signed message) and read "+99" or
 * 20 digits as numbers
 */
static int sigtags_numbers(struct sigtags_tag *tags, int ntags, struct sigtags_result *out)
{
    static const struct {
	const char *name;
	size_t  digits;
    } numbers[] = {{"t", 12}, {"x", 12}, {"l", 76}};
    struct sigtags_tag *t;

    for (size_t k = 0; k < sizeof(numbers) / sizeof(numbers[0]); k++) {
	if ((t = sigtags_find(tags, ntags, numbers[k].name, 1)) == NULL)
	    continue;
	if (t->value_len == 0 || t->value_len > numbers[k].digits
	    || strspn(t->value, "0123456789") < t->value_len) {
	    snprintf(out->why, sizeof(out->why), "invalid tag-list (%s= is not 1 to %zu "
		     "digits)", numbers[k].name, numbers[k].digits);
	    return (-1);
	}
    }
    return (0);
}

/* sigtags_required - 6.1.1: every required tag once, v=1, valid names */

static int sigtags_required(struct sigtags_tag *tags, int ntags, struct sigtags_result *out)
{
    static const char *const required[] = {"v", "a", "b", "bh", "d", "h", "s"};
    struct sigtags_tag *v, *d, *s;

    for (int i = 0; i < ntags; i++)
	if (tags[i].count > 1) {
	    snprintf(out->why, sizeof(out->why), "invalid tag-list (tag %.*s= given twice)",
		     (int) (tags[i].name_len > 8 ? 8 : tags[i].name_len), tags[i].name);
	    return (-1);
	}
    for (size_t k = 0; k < sizeof(required) / sizeof(required[0]); k++)
	if (sigtags_find(tags, ntags, required[k], strlen(required[k])) == NULL) {
	    snprintf(out->why, sizeof(out->why), "signature lacks the required tag %s=",
		     required[k]);
	    return (-1);
	}
    v = sigtags_find(tags, ntags, "v", 1);
    d = sigtags_find(tags, ntags, "d", 1);
    s = sigtags_find(tags, ntags, "s", 1);
    if (v->value_len != 1 || v->value[0] != '1') {
	snprintf(out->why, sizeof(out->why), "incompatible version (v= is not 1)");
	return (-1);
    }
    if (!sigtags_name_ok(d->value, d->value_len)) {
	snprintf(out->why, sizeof(out->why), "invalid domain (d= is not a DNS name)");
	return (-1);
    }
    if (!sigtags_name_ok(s->value, s->value_len)) {
	snprintf(out->why, sizeof(out->why), "invalid selector (s= is not a DNS name)");
	return (-1);
    }
    if (s->value_len + sizeof("._domainkey.") - 1 + d->value_len > 253) {
	snprintf(out->why, sizeof(out->why), "invalid selector (the key's name is longer "
		 "than 253 bytes)");
	return (-1);
    }
    return (sigtags_numbers(tags, ntags, out));
}

int     sigtags_check(const char *value, struct sigtags_result *out)
{
    struct sigtags_tag tags[SIGTAGS_TAGS_MAX], *d;
    int     ntags = 0, status;

    out->domain[0] = 0;
    out->why[0] = 0;
    status = sigtags_parse(value, tags, &ntags, out);
    if (status == 0)
	status = sigtags_required(tags, ntags, out);
    /* header.d only for a d= read for sure: once, and a name */
    if ((d = sigtags_find(tags, ntags, "d", 1)) != NULL && d->count == 1
	&& sigtags_name_ok(d->value, d->value_len) && d->value_len < sizeof(out->domain))
	snprintf(out->domain, sizeof(out->domain), "%.*s", (int) d->value_len, d->value);
    return (status);
}

int     sigtags_value(const char *value, const char *name, const char **start, size_t *len)
{
    struct sigtags_tag tags[SIGTAGS_TAGS_MAX], *t;
    struct sigtags_result out;
    int     ntags = 0;

    if (sigtags_parse(value, tags, &ntags, &out) != 0 || sigtags_required(tags, ntags, &out) != 0)
	return (-1);
    if ((t = sigtags_find(tags, ntags, name, strlen(name))) == NULL)
	return (0);
    *start = t->value;
    *len = t->value_len;
    return (1);
}
