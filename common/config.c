/*
 * NAME
 *	config 3
 * SUMMARY
 *	Postfix-style configuration files
 * SYNOPSIS
 *	#include "config.h"
 *
 *	struct config *config_read(path, specs)
 *	int	config_line(cfg, name)
 *
 *	const char *config_get_str(cfg, name)
 *	long long config_get_duration(cfg, name)
 *	const char *config_parse_duration(text, &millis)
 * DESCRIPTION
 *	One format for every mxkit daemon, as in Postfix main.cf:
 *	"name = value"; "#" starts a comment (at the start of a line,
 *	or after whitespace); a line that starts with whitespace
 *	continues the previous logical line. Directives (for example
 *	"limit NAME = ..." or "exempt KEY VALUE ...") take the rest of
 *	the line, with an optional "=".
 *
 *	Every value is checked against its type when the file is read,
 *	so the config_get_*() accessors cannot fail. Durations take
 *	ms, s, m, h, d, w (no unit: seconds); sizes take k, M, G
 *	(1024-based; no unit: bytes).
 *
 *	A later setting of a non-repeatable name overrides an earlier
 *	one with a warning, as Postfix does. A UTF-8 byte order mark at
 *	the start of the file is skipped; lines may end in CR LF. An
 *	error quotes a name or line only when it can be a parameter
 *	line: a private key given as the file is never printed.
 *
 *	The config_parse_*() functions return NULL on success or a
 *	static error string.
 * DIAGNOSTICS
 *	config_read() always returns a configuration; errors are
 *	collected as "file:line: message" in cfg->errors (see
 *	config_print_errors()). A configuration with errors must not
 *	be used.
 */

#include "build_config.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "config.h"
#include "msg.h"
#include "xalloc.h"

#define CONFIG_FILE_MAX (16 * 1024 * 1024)

/* Logical line being assembled from a first line and its continuations. */
struct config_pending {
    char   *text;
    size_t  len;
    int     line;
    int     broken;			/* an error was already reported */
};

void    config_add_error(struct config *cfg, int line, const char *fmt, ...)
{
    char    text[1024];
    char   *full;
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(text, sizeof(text), fmt, ap);
    va_end(ap);
    full = line > 0 ? xasprintf("%s:%d: %s", cfg->path, line, text)
	: xasprintf("%s: %s", cfg->path, text);
    cfg->errors = xrealloc(cfg->errors, sizeof(char *) * (cfg->error_count + 1));
    cfg->errors[cfg->error_count++] = full;
}

/* config_add_file_error - an error in another file the configuration names */

void    config_add_file_error(struct config *cfg, const char *file, int line,
			              const char *fmt,...)
{
    char    text[1024];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(text, sizeof(text), fmt, ap);
    va_end(ap);
    cfg->errors = xrealloc(cfg->errors, sizeof(char *) * (cfg->error_count + 1));
    cfg->errors[cfg->error_count++] = line > 0 ? xasprintf("%s:%d: %s", file, line, text)
	: xasprintf("%s: %s", file, text);
}

void    config_merge_errors(struct config *dst, const struct config *src)
{
    for (int i = 0; i < src->error_count; i++) {
	dst->errors = xrealloc(dst->errors, sizeof(char *) * (dst->error_count + 1));
	dst->errors[dst->error_count++] = xstrdup(src->errors[i]);
    }
}

void    config_print_errors(const struct config *cfg)
{
    for (int i = 0; i < cfg->error_count; i++)
	msg_error("%s", cfg->errors[i]);
}

static const struct config_spec *config_find_spec(const struct config_spec *specs,
						          const char *name, size_t len)
{
    for (; specs->name; specs++)
	if (strlen(specs->name) == len && strncmp(specs->name, name, len) == 0)
	    return (specs);
    return (NULL);
}

/* config_check_value - type check; NULL or a static error */

static const char *config_check_value(const struct config_spec *spec, const char *value)
{
    long long number;
    int     flag;

    switch (spec->type) {
    case CONFIG_BOOL:
	return (config_parse_bool(value, &flag));
    case CONFIG_INT:
	return (config_parse_int(value, &number));
    case CONFIG_DURATION:
	return (config_parse_duration(value, &number));
    case CONFIG_SIZE:
	return (config_parse_size(value, &number));
    default:
	return (NULL);
    }
}

static void config_append(struct config *cfg, const struct config_spec *spec,
			          const char *value, int line)
{
    struct config_entry *entry;
    const struct config_entry *old;

    if (!(spec->flags & CONFIG_REPEAT) && (old = config_lookup(cfg, spec->name)) != NULL)
	msg_warn("%s:%d: overriding earlier setting of \"%s\" at line %d",
		 cfg->path, line, spec->name, old->line);
    entry = xcalloc(1, sizeof(*entry));
    entry->spec = spec;
    entry->value = xstrdup(value);
    entry->line = line;
    if (cfg->tail)
	cfg->tail->next = entry;
    else
	cfg->head = entry;
    cfg->tail = entry;
}

/* config_finish_line - parse one complete logical line */

static void config_finish_line(struct config *cfg, struct config_pending *pending)
{
    char   *cp = pending->text;
    char   *name = cp;
    size_t  name_len;
    const struct config_spec *spec;
    const char *err;
    char   *end;

    if (pending->broken)
	return;
    while (*cp && (isalnum((unsigned char) *cp) || *cp == '_' || *cp == '-' || *cp == '.'))
	cp++;
    name_len = cp - name;
    /*
     * Quote only what can be a parameter line: "-c" given a private key
     * file (PEM's base64 lines read as names) put most of the key into
     * the errors, on the terminal and in the journal.
     */
    if (name_len == 0) {
	if (strcspn(name, " \t") < 20)
	    config_add_error(cfg, pending->line, "expected a parameter name, found \"%.20s\"",
			     name);
	else
	    config_add_error(cfg, pending->line, "expected a parameter name (line not shown)");
	return;
    }
    if ((spec = config_find_spec(cfg->specs, name, name_len)) == NULL) {
	if (name_len <= 64 && (strspn(name, "abcdefghijklmnopqrstuvwxyz0123456789_-.") >= name_len
			       || (strspn(cp, " \t") > 0 && cp[strspn(cp, " \t")] == '=')))
	    config_add_error(cfg, pending->line, "unknown parameter \"%.*s\"", (int) name_len,
			     name);
	else
	    config_add_error(cfg, pending->line, "unknown parameter (a name of %d characters, "
			     "not shown: is this a configuration file?)", (int) name_len);
	return;
    }
    while (*cp == ' ' || *cp == '\t')
	cp++;
    if (*cp == '=') {
	cp++;
    } else if (spec->type != CONFIG_DIRECTIVE) {
	config_add_error(cfg, pending->line, "missing '=' after \"%s\"", spec->name);
	return;
    }
    while (*cp == ' ' || *cp == '\t')
	cp++;
    end = cp + strlen(cp);
    while (end > cp && isspace((unsigned char) end[-1]))
	*--end = 0;
    if (end > cp && end[-1] == ',') {
	config_add_error(cfg, pending->line, "value of \"%s\" ends with ',': unterminated "
			 "continuation (the next line must start with whitespace)", spec->name);
	return;
    }
    if ((err = config_check_value(spec, cp)) != NULL) {
	/* workers = "2": "expected a number" did not say what was wrong */
	config_add_error(cfg, pending->line, "bad value \"%.100s\" for \"%s\": %s", cp,
			 spec->name, (*cp == '"' || *cp == '\'') && end - cp > 1 && end[-1] == *cp
			 ? "the value is in quotes: write it without them (values are taken "
			 "as written, as in Postfix's main.cf)" : err);
	return;
    }
    config_append(cfg, spec, cp, pending->line);
}

/* config_strip_comment - drop "#..." at line start or after whitespace */

static size_t config_strip_comment(const char *line, size_t len)
{
    for (size_t i = 0; i < len; i++)
	if (line[i] == '#' && (i == 0 || line[i - 1] == ' ' || line[i - 1] == '\t'))
	    return (i);
    return (len);
}

static void config_pending_add(struct config_pending *pending, const char *text, size_t len)
{
    pending->text = xrealloc(pending->text, pending->len + len + 2);
    if (pending->len > 0)
	pending->text[pending->len++] = ' ';
    memcpy(pending->text + pending->len, text, len);
    pending->len += len;
    pending->text[pending->len] = 0;
}

static void config_pending_flush(struct config *cfg, struct config_pending *pending)
{
    if (pending->text)
	config_finish_line(cfg, pending);
    free(pending->text);
    memset(pending, 0, sizeof(*pending));
}

/* config_physical_line - handle one input line (no newline) */

static void config_physical_line(struct config *cfg, struct config_pending *pending,
				         const char *line, size_t len, int lineno)
{
    size_t  start = 0;
    int     indented;

    if (len > 0 && line[len - 1] == '\r')
	len--;
    if (len > CONFIG_LINE_MAX) {
	config_add_error(cfg, lineno, "line too long (more than %d bytes)", CONFIG_LINE_MAX);
	if (pending->text)
	    pending->broken = 1;
	return;
    }
    if (memchr(line, 0, len) != NULL) {
	config_add_error(cfg, lineno, "NUL byte in line");
	pending->broken = pending->text != NULL;
	return;
    }
    indented = len > 0 && (line[0] == ' ' || line[0] == '\t');
    while (start < len && (line[start] == ' ' || line[start] == '\t'))
	start++;
    len = config_strip_comment(line + start, len - start) + start;
    while (len > start && isspace((unsigned char) line[len - 1]))
	len--;
    if (len == start)
	return;				/* blank or comment line */
    if (indented) {
	if (pending->text == NULL)
	    config_add_error(cfg, lineno, "continuation line without a preceding parameter");
	else
	    config_pending_add(pending, line + start, len - start);
	return;
    }
    config_pending_flush(cfg, pending);
    pending->line = lineno;
    config_pending_add(pending, line + start, len - start);
}

/*
 * config_base64_line - a line of at least 40 base64 characters and
 * nothing else (after any indentation): a PEM body's line. No
 * configuration line looks like that (a parameter line has " = ").
 */
static int config_base64_line(const char *cp, size_t len)
{
    size_t  n, pad;

    while (len > 0 && (*cp == ' ' || *cp == '\t'))
	cp++, len--;
    while (len > 0 && (cp[len - 1] == '\r' || cp[len - 1] == ' ' || cp[len - 1] == '\t'))
	len--;
    for (pad = 0; pad < 2 && pad < len && cp[len - 1 - pad] == '='; pad++)
	 /* void */ ;
    for (n = 0; n < len - pad && cp[n] != 0
	 && strchr("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/", cp[n]);
	 n++)
	 /* void: the line is not NUL-terminated */ ;
    return (len >= 40 && n == len - pad);
}

/*
 * config_pem_refused - a PEM file (a key or a certificate) given as the
 * configuration, or a configuration with a PEM body's lines pasted in
 * (a key without its BEGIN line, indented under a parameter): its
 * errors, whatever they quote, become one that quotes nothing. Base64
 * lines read as parameter lines ("q0==" is name "q0", "=", value "=")
 * or as a continuation of the line above put fragments of a private
 * key into errors, on the terminal and in the journal.
 */
static void config_pem_refused(struct config *cfg, const char *buf, size_t len)
{
    const char *cp = buf, *end = buf + len;
    int     pem = 0, body = 0, lineno = 0;

    while (cp < end && !pem && !body) {
	const char *nl = memchr(cp, '\n', (size_t) (end - cp));
	size_t  n = nl ? (size_t) (nl - cp) : (size_t) (end - cp);

	lineno++;
	pem = n >= 11 && memcmp(cp, "-----BEGIN ", 11) == 0;
	body = config_base64_line(cp, n);
	cp = nl ? nl + 1 : end;
    }
    if (!pem && !body)
	return;
    for (int i = 0; i < cfg->error_count; i++)
	free(cfg->errors[i]);
    cfg->error_count = 0;
    while (cfg->head) {				/* nothing of it is kept either */
	struct config_entry *next = cfg->head->next;

	free(cfg->head->value);
	free(cfg->head);
	cfg->head = next;
    }
    cfg->tail = NULL;
    if (pem)
	config_add_error(cfg, 0, "this is a PEM file (a key or a certificate), not a "
			 "configuration file; none of it is shown");
    else
	config_add_error(cfg, lineno, "a line of base64 (a key or a certificate pasted "
			 "in?); none of the file is shown");
}

struct config *config_read_buffer(const char *name, const char *buf, size_t len,
				          const struct config_spec *specs)
{
    struct config *cfg = xcalloc(1, sizeof(*cfg));
    struct config_pending pending = {0};
    const char *cp = buf;
    const char *end = buf + len;
    const char *nl;
    int     lineno = 0;

    cfg->path = xstrdup(name);
    cfg->specs = specs;
    if (len >= 3 && memcmp(buf, "\xEF\xBB\xBF", 3) == 0)
	cp += 3;				/* a UTF-8 BOM (Windows editors): invisible */
    while (cp < end) {
	nl = memchr(cp, '\n', end - cp);
	if (nl == NULL)
	    nl = end;
	config_physical_line(cfg, &pending, cp, nl - cp, ++lineno);
	cp = nl + 1;
    }
    config_pending_flush(cfg, &pending);
    config_pem_refused(cfg, buf, len);
    return (cfg);
}

/*
 * config_open_regular - a file a configuration names (itself, a password
 * file, a secret, a hosts file), opened for reading: a regular file, and
 * never waited on: a FIFO or a device in its place must not hang a
 * start, a reload or -t (with TERM blocked meanwhile). The descriptor,
 * or -1 and *why.
 */
int     config_open_regular(const char *path, const char **why)
{
    struct stat st;
    int     fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY);

    if (fd < 0 || fstat(fd, &st) < 0) {
	*why = strerror(errno);
	if (fd >= 0)
	    close(fd);
	return (-1);
    }
    if (!S_ISREG(st.st_mode)) {
	*why = "not a regular file";
	close(fd);
	return (-1);
    }
    return (fd);
}

struct config *config_read(const char *path, const struct config_spec *specs)
{
    struct config *cfg;
    struct stat st;
    char   *buf;
    ssize_t got;
    int     fd;
    const char *why = "larger than 16 MB";

    if ((fd = config_open_regular(path, &why)) < 0 || fstat(fd, &st) < 0
	|| st.st_size > CONFIG_FILE_MAX) {
	cfg = config_read_buffer(path, "", 0, specs);
	config_add_error(cfg, 0, "cannot read: %s", why);
	if (fd >= 0)
	    close(fd);
	return (cfg);
    }
    buf = xmalloc(st.st_size + 1);
    got = read(fd, buf, st.st_size);
    close(fd);
    cfg = config_read_buffer(path, buf, got > 0 ? (size_t) got : 0, specs);
    if (got < 0)
	config_add_error(cfg, 0, "read error: %s", strerror(errno));
    free(buf);
    return (cfg);
}

void    config_free(struct config **cfgp)
{
    struct config *cfg = *cfgp;
    struct config_entry *entry, *next;

    if (cfg == NULL)
	return;
    for (entry = cfg->head; entry; entry = next) {
	next = entry->next;
	free(entry->value);
	free(entry);
    }
    for (int i = 0; i < cfg->error_count; i++)
	free(cfg->errors[i]);
    free(cfg->errors);
    free(cfg->path);
    free(cfg);
    *cfgp = NULL;
}

/* Lookups. */

const struct config_entry *config_next(const struct config *cfg,
				               const struct config_entry *prev,
				               const char *name)
{
    const struct config_entry *entry = prev ? prev->next : cfg->head;

    for (; entry; entry = entry->next)
	if (strcmp(entry->spec->name, name) == 0)
	    return (entry);
    return (NULL);
}

const struct config_entry *config_lookup(const struct config *cfg, const char *name)
{
    const struct config_entry *entry = NULL, *last = NULL;

    while ((entry = config_next(cfg, entry, name)) != NULL)
	last = entry;
    return (last);
}

int     config_line(const struct config *cfg, const char *name)
{
    const struct config_entry *entry = config_lookup(cfg, name);

    return (entry ? entry->line : 0);
}

const char *config_get_str(const struct config *cfg, const char *name)
{
    const struct config_entry *entry = config_lookup(cfg, name);
    const struct config_spec *spec;

    if (entry)
	return (entry->value);
    if ((spec = config_find_spec(cfg->specs, name, strlen(name))) == NULL)
	msg_panic("config_get_str: parameter \"%s\" is not in the specification", name);
    return (spec->default_value);
}

#define CONFIG_GETTER(func, type, parser) \
    type func(const struct config *cfg, const char *name) \
    { \
	const char *text = config_get_str(cfg, name); \
	type value = 0; \
	if (text && parser(text, &value) != NULL) \
	    msg_panic("%s: bad value \"%s\" for \"%s\"", #func, text, name); \
	return (value); \
    }

CONFIG_GETTER(config_get_bool, int, config_parse_bool)
CONFIG_GETTER(config_get_int, long long, config_parse_int)
CONFIG_GETTER(config_get_duration, long long, config_parse_duration)
CONFIG_GETTER(config_get_size, long long, config_parse_size)

/* Typed values: NULL on success, or a static error string. */

const char *config_parse_bool(const char *text, int *result)
{
    static const char *const yes[] = {"yes", "true", "on", "1", 0};
    static const char *const no[] = {"no", "false", "off", "0", 0};

    for (int i = 0; yes[i]; i++) {
	if (strcasecmp(text, yes[i]) == 0)
	    return (*result = 1, NULL);
	if (strcasecmp(text, no[i]) == 0)
	    return (*result = 0, NULL);
    }
    return ("expected yes or no");
}

/* config_parse_number - leading unsigned decimal, rest in *unit */

static const char *config_parse_number(const char *text, long long *number,
				               const char **unit)
{
    unsigned long long value = 0;
    const char *cp = text;

    if (!isdigit((unsigned char) *cp))
	return ("expected a number");
    for (; isdigit((unsigned char) *cp); cp++) {
	if (value > (unsigned long long) (LLONG_MAX - 9) / 10)
	    return ("number too large");
	value = value * 10 + (*cp - '0');
    }
    *number = (long long) value;
    *unit = cp;
    return (NULL);
}

static const char *config_scale(long long number, long long scale, long long *result)
{
    if (number > LLONG_MAX / scale)
	return ("number too large");
    *result = number * scale;
    return (NULL);
}

const char *config_parse_int(const char *text, long long *result)
{
    const char *unit;
    const char *err;
    int     negative = (*text == '-');

    if ((err = config_parse_number(text + negative, result, &unit)) != NULL)
	return (err);
    if (*unit)
	return ("trailing garbage after the number");
    if (negative)
	*result = -*result;
    return (NULL);
}

const char *config_parse_duration(const char *text, long long *millis)
{
    static const struct {
	const char *name;
	long long scale;
    } units[] = {
	{"", 1000}, {"ms", 1}, {"s", 1000}, {"m", 60000}, {"h", 3600000},
	{"d", 86400000}, {"w", 604800000}, {0, 0},
    };
    long long number;
    const char *unit;
    const char *err;

    if ((err = config_parse_number(text, &number, &unit)) != NULL)
	return (err);
    for (int i = 0; units[i].name; i++)
	if (strcmp(unit, units[i].name) == 0)
	    return (config_scale(number, units[i].scale, millis));
    return ("unknown time unit (use ms, s, m, h, d or w)");
}

const char *config_parse_size(const char *text, long long *bytes)
{
    long long number;
    const char *unit;
    const char *err;
    long long scale;

    if ((err = config_parse_number(text, &number, &unit)) != NULL)
	return (err);
    if (unit[0] && unit[1] && !(tolower((unsigned char) unit[1]) == 'b' && !unit[2]))
	return ("unknown size unit (use k, M or G)");
    switch (unit[0]) {
    case 0:
    case 'b':
    case 'B':
	scale = 1;
	break;
    case 'k':
    case 'K':
	scale = 1024;
	break;
    case 'm':
    case 'M':
	scale = 1024 * 1024;
	break;
    case 'g':
    case 'G':
	scale = 1024 * 1024 * 1024;
	break;
    default:
	return ("unknown size unit (use k, M or G)");
    }
    return (config_scale(number, scale, bytes));
}

static char **config_split(const char *text, const char *separators, int *count)
{
    char  **list = xcalloc(1, sizeof(char *));
    const char *cp = text;
    size_t  len;

    *count = 0;
    for (;;) {
	cp += strspn(cp, separators);
	if (*cp == 0)
	    break;
	len = strcspn(cp, separators);
	list = xrealloc(list, sizeof(char *) * (*count + 2));
	list[(*count)++] = xstrndup(cp, len);
	list[*count] = NULL;
	cp += len;
    }
    return (list);
}

char  **config_split_list(const char *text, int *count)
{
    return (config_split(text, ", \t\r\n", count));
}

char  **config_split_words(const char *text, int *count)
{
    return (config_split(text, " \t\r\n", count));
}

void    config_list_free(char ***listp)
{
    if (*listp == NULL)
	return;
    for (char **cp = *listp; *cp; cp++)
	free(*cp);
    free(*listp);
    *listp = NULL;
}
