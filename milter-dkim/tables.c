/*
 * NAME
 *	tables 3
 * SUMMARY
 *	OpenDKIM KeyTable and SigningTable, sender_binding
 * SYNOPSIS
 *	#include "tables.h"
 *
 *	void	tables_parse_keys(&t, errors, file_name, text)
 *	void	tables_parse_signing(&t, errors, file_name, text)
 *	void	tables_parse_binding(&t, errors, file_name, text)
 *	int	tables_signers(&t, "user@example.com", out, max)
 *	int	tables_aligned(domain, key_domain)
 *	int	tables_pattern_aligned(pattern, key_domain)
 *	int	tables_template_makes(template, domain)
 *	int	tables_bound(&t, sasl_user)
 *	int	tables_binding_allows(&t, sasl_user, from_address, &bound)
 * DESCRIPTION
 *	The files are read unchanged from an OpenDKIM installation:
 * .IP KeyTable
 *	"keyname domain:selector:/path/to/private.key"; a '%' in the
 *	domain is replaced by the signing domain at lookup time. Domain and
 *	selector must be DNS names (letters, digits, '-', '_', dots between
 *	labels of at most 63): they are written into d= and s= as they are.
 * .IP SigningTable
 *	"pattern keyname[,keyname...]" as OpenDKIM reads a "refile:"
 *	table: the pattern is matched against the From: address, '*'
 *	matching any run of characters. A pattern without '*' and without
 *	'@' matches the address's domain, as a plain OpenDKIM table does.
 *	Every matching line applies, in file order (several signatures).
 *	A pattern's domain written in U-labels (*@bücher.example) is
 *	converted to its A-labels when the table is read: the From:
 *	domain is compared in A-labels (rfc5322(3)); one with a '*' among
 *	U-labels cannot be converted and is an error.
 * .IP sender_binding
 *	"sasl_user pattern[, pattern...]": the From: addresses a SASL user
 *	may sign for; a user without a line of its own is bound by the
 *	"*" line if there is one, else not restricted (Postfix names a
 *	login as the client typed it: "svc-alerts@realm", accepted by
 *	Dovecot for svc-alerts, was nobody's line and signed any From:).
 * .PP
 *	tables_signers() returns the number of keys that sign for the
 *	address, however many, and stores at most max of them: the caller
 *	asks for the count first (max 0) and then for all of them.
 *	tables_aligned() says whether a From: domain is the key domain or
 *	below it (relaxed DMARC alignment, without the public suffix
 *	list); tables_pattern_aligned() whether every domain a
 *	SigningTable pattern can match is. tables_template_makes() says
 *	whether a KeyTable domain with '%' can be made into domain ("%"
 *	any, "mail.%" any under mail.; a domain with '%' too, or a
 *	template with two, is taken to meet it).
 * .PP
 *	'#' starts a comment; blank lines are ignored; matching ignores
 *	case. A UTF-8 byte order mark at the start of a file is skipped.
 *	A "refile:" or "file:" prefix on a table path is accepted.
 * DIAGNOSTICS
 *	Errors go to the errors configuration as "file:line: message".
 */

#include "build_config.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "msg.h"
#include "rfc5322.h"
#include "tables.h"
#include "xalloc.h"

const char *tables_strip_prefix(const char *path)
{
    if (strncmp(path, "refile:", 7) == 0)
	return (path + 7);
    if (strncmp(path, "file:", 5) == 0)
	return (path + 5);
    return (path);
}

/* tables_lines - call fn for each non-comment line with its number */

static void tables_lines(const char *text, void (*fn) (char *line, int lineno, void *ctx),
			         void *ctx)
{
    char   *copy, *line, *next;
    int     lineno = 0;

    /*
     * A UTF-8 byte order mark (Windows editors write one) would become
     * part of the first key name, pattern or SASL user: a SigningTable
     * row that matches nothing, a sender_binding row that binds nobody.
     */
    if (strncmp(text, "\xEF\xBB\xBF", 3) == 0)
	text += 3;
    line = copy = xstrdup(text);

    for (; line; line = next) {
	char   *hash, *end;

	lineno++;
	if ((next = strchr(line, '\n')) != NULL)
	    *next++ = 0;
	if ((hash = strchr(line, '#')) != NULL)
	    *hash = 0;
	while (isspace((unsigned char) *line))
	    line++;
	end = line + strlen(line);
	while (end > line && isspace((unsigned char) end[-1]))
	    *--end = 0;
	if (*line)
	    fn(line, lineno, ctx);
    }
    free(copy);
}

struct tables_ctx {
    struct tables *t;
    struct config *errors;
    const char *name;
};

static void tables_error(struct tables_ctx *c, int line, const char *text)
{
    config_add_file_error(c->errors, c->name, line, "%s", text);
}

/* tables_split2 - "key  rest": NUL-terminate key, return rest or NULL */

static char *tables_split2(char *line)
{
    char   *rest = line + strcspn(line, " \t");

    if (*rest == 0)
	return (NULL);
    *rest++ = 0;
    while (isspace((unsigned char) *rest))
	rest++;
    return (*rest ? rest : NULL);
}

/*
 * tables_dns_name - dot-separated labels of letters, digits, '-' and '_'
 * (and '%', the signing domain, when percent is set): the selector and
 * domain go into d= and s= as they are, and "sel;x=y" or "s 1" made a
 * signature nobody could verify (or one with a tag of the row's own).
 */
int     tables_dns_name(const char *name, int percent)
{
    size_t  label = 0, len = strlen(name);

    if (len == 0 || len > 253)
	return (0);
    for (const char *cp = name; *cp; cp++) {
	if (*cp == '.') {
	    if (label == 0)
		return (0);
	    label = 0;
	} else if (isalnum((unsigned char) *cp) || *cp == '-' || *cp == '_'
		   || (percent && *cp == '%')) {
	    if (++label > 63)
		return (0);
	} else {
	    return (0);
	}
    }
    return (label > 0);
}

static void tables_key_line(char *line, int lineno, void *ctx)
{
    struct tables_ctx *c = ctx;
    struct key_entry *k;
    char   *value = tables_split2(line), *sel, *path;

    if (value == NULL || (sel = strchr(value, ':')) == NULL
	|| (path = strchr(sel + 1, ':')) == NULL) {
	tables_error(c, lineno, "expected \"keyname domain:selector:/path/to/key\"");
	return;
    }
    *sel++ = 0;
    *path++ = 0;
    if (!*value || !*sel || !*path) {
	tables_error(c, lineno, "empty domain, selector or key path");
	return;
    }
    if (!tables_dns_name(value, 1) || !tables_dns_name(sel, 0)) {
	tables_error(c, lineno, "the domain or the selector is not a DNS name (letters, "
		     "digits, '-', '_', dots between labels; not repeated here)");
	return;
    }
    if (*path != '/') {
	tables_error(c, lineno, "the key must be an absolute file path "
		     "(inline key data is not supported)");
	return;
    }
    if (tables_find_key(c->t, line)) {
	tables_error(c, lineno, "duplicate key name");
	return;
    }
    c->t->key = xrealloc(c->t->key, sizeof(*k) * (c->t->key_count + 1));
    k = c->t->key + c->t->key_count++;
    k->name = xstrdup(line);
    k->domain = xstrdup(value);
    k->selector = xstrdup(sel);
    k->path = xstrdup(path);
    k->line = lineno;
}

static char **tables_list(const char *text)
{
    int     n;

    return (config_split_list(text, &n));
}

/*
 * tables_pattern - a SigningTable or sender_binding pattern as it is
 * compared (a new string), or NULL after an error: its domain (after the
 * last '@', or all of it without one) in A-labels when written in
 * U-labels, as the From: domain is read (rfc5322(3)); the pattern would
 * otherwise never match
 */
static char *tables_pattern(struct tables_ctx *c, int lineno, const char *pattern)
{
    const char *at = strrchr(pattern, '@'), *domain = at ? at + 1 : pattern;
    char    alabels[254], *out;
    size_t  local = domain - pattern;

    for (const char *p = domain; *p; p++)
	if ((unsigned char) *p >= 0x80)
	    break;
	else if (p[1] == 0)
	    return (xstrdup(pattern));
    if (*domain == 0)
	return (xstrdup(pattern));
    if (strchr(domain, '*') != NULL || rfc5322_alabels(domain, alabels, sizeof(alabels)) < 0) {
	tables_error(c, lineno, strchr(domain, '*') ? "a '*' among U-labels in a pattern's "
		     "domain: write the domain in A-labels (xn--...), as From: domains are "
		     "compared" : "a pattern's domain in U-labels that is no valid IDN");
	return (NULL);
    }
    out = xmalloc(local + strlen(alabels) + 1);
    memcpy(out, pattern, local);
    strcpy(out + local, alabels);
    return (out);
}

static void tables_signing_line(char *line, int lineno, void *ctx)
{
    struct tables_ctx *c = ctx;
    struct signing_entry *s;
    char   *value = tables_split2(line), *pattern;

    if (value == NULL) {
	tables_error(c, lineno, "expected \"pattern keyname[,keyname...]\"");
	return;
    }
    if ((pattern = tables_pattern(c, lineno, line)) == NULL)
	return;
    c->t->sign = xrealloc(c->t->sign, sizeof(*s) * (c->t->sign_count + 1));
    s = c->t->sign + c->t->sign_count++;
    s->pattern = pattern;
    s->keys = tables_list(value);
    s->line = lineno;
}

static void tables_binding_line(char *line, int lineno, void *ctx)
{
    struct tables_ctx *c = ctx;
    struct binding_entry *b;
    char   *value = tables_split2(line);

    if (value == NULL) {
	tables_error(c, lineno, "expected \"sasl_user pattern[, pattern...]\"");
	return;
    }
    c->t->bind = xrealloc(c->t->bind, sizeof(*b) * (c->t->bind_count + 1));
    b = c->t->bind + c->t->bind_count++;
    b->user = xstrdup(line);
    b->patterns = tables_list(value);
    for (char **p = b->patterns; *p; p++) {
	char   *pattern = tables_pattern(c, lineno, *p);

	free(*p);
	*p = pattern ? pattern : xstrdup("");	/* an error, said: never used */
    }
}

void    tables_parse_keys(struct tables *t, struct config *errors, const char *name,
			          const char *text)
{
    struct tables_ctx c = {t, errors, name};

    tables_lines(text, tables_key_line, &c);
}

/*
 * tables_known_keys - the KeyTable's names, for an error that must not
 * quote the name it could not find: a SigningTable option pointed at the
 * wrong file (a Kubernetes Secret's redis.conf, "requirepass PASSWORD")
 * made its second field the password, and the error printed it at -t, at
 * start and at every reload (helper-121). A KeyTable name comes from a
 * line that has a KeyTable entry's shape.
 */
static const char *tables_known_keys(const struct tables *t, char *buf, size_t size)
{
    size_t  used = 0;

    buf[0] = 0;
    for (int i = 0; i < t->key_count && used < size; i++)
	used += snprintf(buf + used, size - used, "%s%s", i ? ", " : "", t->key[i].name);
    if (used >= size && size > 4)
	strcpy(buf + size - 4, "...");
    return (t->key_count ? buf : "none");
}

void    tables_parse_signing(struct tables *t, struct config *errors, const char *name,
			             const char *text)
{
    struct tables_ctx c = {t, errors, name};
    int     first = t->sign_count;
    char    known[200];

    tables_lines(text, tables_signing_line, &c);
    for (int i = first; i < t->sign_count; i++) {	/* keys must exist */
	int     n = 0;

	for (char **k = t->sign[i].keys; *k; k++, n++)
	    if (tables_find_key(t, *k) == NULL)
		config_add_file_error(errors, name, t->sign[i].line, "key name %d of the line "
				      "(%zu bytes, not repeated here) is not in the KeyTable "
				      "(its names: %s)", n + 1, strlen(*k),
				      tables_known_keys(t, known, sizeof(known)));
    }
}

void    tables_parse_binding(struct tables *t, struct config *errors, const char *name,
			             const char *text)
{
    struct tables_ctx c = {t, errors, name};

    tables_lines(text, tables_binding_line, &c);
}

const struct key_entry *tables_find_key(const struct tables *t, const char *name)
{
    for (int i = 0; i < t->key_count; i++)
	if (strcmp(t->key[i].name, name) == 0)
	    return (t->key + i);
    return (NULL);
}

/* tables_glob - case-insensitive match with '*' (iterative, no recursion blowup) */

static int tables_glob(const char *p, const char *s)
{
    const char *star = NULL, *resume = NULL;

    while (*s) {
	if (*p == '*') {
	    star = p++;
	    resume = s;
	} else if (tolower((unsigned char) *p) == tolower((unsigned char) *s)) {
	    p++, s++;
	} else if (star) {
	    p = star + 1;
	    s = ++resume;
	} else {
	    return (0);
	}
    }
    while (*p == '*')
	p++;
    return (*p == 0);
}

int     tables_match(const char *pattern, const char *address)
{
    const char *at = strrchr(address, '@');

    if (strchr(pattern, '*') || strchr(pattern, '@'))
	return (tables_glob(pattern, address));
    return (at != NULL && strcasecmp(pattern, at + 1) == 0);
}

/* tables_aligned - domain d is k or below it at a label boundary (relaxed, no PSL) */

int     tables_aligned(const char *d, const char *k)
{
    size_t  dl = strlen(d), kl = strlen(k);

    if (kl == 0)
	return (0);
    return (strcasecmp(d, k) == 0
	    || (dl > kl && d[dl - kl - 1] == '.' && strcasecmp(d + dl - kl, k) == 0));
}

int     tables_template_makes(const char *template, const char *domain)
{
    const char *pct = strchr(template, '%');
    size_t  head, tail, len = strlen(domain);

    if (pct == NULL)
	return (strcasecmp(template, domain) == 0);
    if (strchr(domain, '%') || strchr(pct + 1, '%'))
	return (1);
    head = pct - template;
    tail = strlen(pct + 1);
    return (len > head + tail && strncasecmp(domain, template, head) == 0
	    && strcasecmp(domain + len - tail, pct + 1) == 0);
}

/*
 * tables_pattern_aligned - every From: domain a SigningTable pattern can
 * match aligns with key domain k. The domain part is what follows the
 * pattern's last '@', or the whole pattern without one (its '*' may
 * then cover the local part and the '@' too). Without '*' it is the
 * domain itself; with one, a matched domain ends with the text after
 * the last '*' and may have anything before it: "*planapulse.ai"
 * matches evilplanapulse.ai, so that text must start at a label
 * boundary ("*.planapulse.ai") of a domain that aligns with k.
 */
int     tables_pattern_aligned(const char *pattern, const char *k)
{
    const char *at = strrchr(pattern, '@');
    const char *domain = at ? at + 1 : pattern;
    const char *star = strrchr(domain, '*');

    if (star == NULL)
	return (tables_aligned(domain, k));
    return (star[1] == '.' && tables_aligned(star + 2, k));
}

int     tables_signers(const struct tables *t, const char *address,
		               const struct key_entry **out, int max)
{
    int     n = 0;

    for (int i = 0; i < t->sign_count; i++)	/* count all, store at most max */
	if (tables_match(t->sign[i].pattern, address))
	    for (char **k = t->sign[i].keys; *k; k++, n++)
		if (n < max)
		    out[n] = tables_find_key(t, *k);
    return (n);
}

/* tables_binding_row - the user whose rows bind user: its own, else "*" */

static const char *tables_binding_row(const struct tables *t, const char *user)
{
    for (int i = 0; i < t->bind_count; i++)
	if (strcasecmp(t->bind[i].user, user) == 0)
	    return (user);
    for (int i = 0; i < t->bind_count; i++)
	if (strcmp(t->bind[i].user, "*") == 0)
	    return ("*");
    return (NULL);
}

int     tables_bound(const struct tables *t, const char *user)
{
    return (tables_binding_row(t, user) != NULL);
}

int     tables_binding_allows(const struct tables *t, const char *user, const char *address,
			              int *bound)
{
    const char *row = tables_binding_row(t, user);

    *bound = row != NULL;
    for (int i = 0; row && i < t->bind_count; i++) {
	if (strcasecmp(t->bind[i].user, row) != 0)
	    continue;
	for (char **p = t->bind[i].patterns; *p; p++)
	    if (tables_match(*p, address))
		return (1);
    }
    return (!*bound);
}

void    tables_free(struct tables *t)
{
    for (int i = 0; i < t->key_count; i++) {
	free(t->key[i].name);
	free(t->key[i].domain);
	free(t->key[i].selector);
	free(t->key[i].path);
    }
    for (int i = 0; i < t->sign_count; i++) {
	free(t->sign[i].pattern);
	config_list_free(&t->sign[i].keys);
    }
    for (int i = 0; i < t->bind_count; i++) {
	free(t->bind[i].user);
	config_list_free(&t->bind[i].patterns);
    }
    free(t->key);
    free(t->sign);
    free(t->bind);
    memset(t, 0, sizeof(*t));
}
