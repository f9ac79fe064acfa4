/*
 * NAME
 *	ratelimit 3
 * SUMMARY
 *	rate limits, overrides and exemptions
 * SYNOPSIS
 *	#include "ratelimit.h"
 *
 *	void	ratelimit_load(&limits, cfg)
 *	void	ratelimit_load_overrides(&limits, cfg)
 *	int	ratelimit_exempt(&limits, req)
 *	int	ratelimit_key(limit, req, buf, len)
 *	const struct limit_rates *ratelimit_rates_for(limit, key)
 * DESCRIPTION
 *	Directives, as in policyd-ratelimit.conf(5):
 *
 *	limit NAME = KEY rate=N/PERIOD[,N/PERIOD...] [count=messages|recipients|bytes]
 *		[burst=N] [unless=ATTRIBUTE] [action=defer|reject|hold|warn] [dry_run=yes]
 *	override LIMIT KEY_VALUE rate=N/PERIOD[,...] [burst=N]
 *	exempt ATTRIBUTE VALUE...
 *
 *	KEY is any request attribute, sender_domain, recipient_domain, or
 *	client_address/V4LEN/V6LEN (clients grouped by network).
 *
 *	ratelimit_key() writes the key value of a request for a limit, and
 *	returns 0 when the limit does not apply (empty attribute, or the
 *	unless= attribute is set). Every other request is counted: an
 *	address without a domain (a bang path's or a "%" one's is read as
 *	Postfix routes it) counts for the domain "[unqualified]", a
 *	client_address that is no IP address ("unknown") as itself, and a
 *	value of any length as ratelimit_canon() makes it.
 * DIAGNOSTICS
 *	Errors are added to the configuration as "file:line: message".
 */

#include "build_config.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <limits.h>
#include <locale.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <wchar.h>
#include <wctype.h>

#include <idn2.h>
#include <openssl/evp.h>

#include "quarantine.h"
#include "ratelimit.h"
#include "msg.h"
#include "xalloc.h"

const char *ratelimit_count_name(enum limit_count count)
{
    static const char *const names[] = {"messages", "recipients", "bytes"};

    return (names[count]);
}

const char *ratelimit_action_name(enum limit_action action)
{
    static const char *const names[] = {"defer", "reject", "hold", "warn"};

    return (names[action]);
}

static locale_t ratelimit_utf8;
static pthread_once_t ratelimit_utf8_once = PTHREAD_ONCE_INIT;

static void ratelimit_utf8_init(void)
{
    ratelimit_utf8 = newlocale(LC_CTYPE_MASK, "C.UTF-8", (locale_t) 0);
}

/*
 * ratelimit_lower - text in lower case, a new string: every letter that
 * Unicode gives a lower case (towlower() in C.UTF-8), not ASCII alone:
 * JÖRG and jörg were two keys with a budget each, where LDAP's
 * caseIgnoreMatch and SQL's case-insensitive collations see one login.
 * Bytes that are not UTF-8 are kept as they are (ASCII lowered).
 */
static char *ratelimit_lower(const char *text)
{
    size_t  len = strlen(text), n, w, used = 0;
    char   *out = xmalloc(4 * len + 1), one[MB_LEN_MAX];	/* 4: UTF-8's longest */
    mbstate_t in_state, out_state;
    locale_t saved = (locale_t) 0;
    wchar_t wc;

    (void) pthread_once(&ratelimit_utf8_once, ratelimit_utf8_init);
    if (ratelimit_utf8 != (locale_t) 0)
	saved = uselocale(ratelimit_utf8);	/* this thread's, for now */
    memset(&in_state, 0, sizeof(in_state));
    memset(&out_state, 0, sizeof(out_state));
    while (*text) {
	n = ratelimit_utf8 ? mbrtowc(&wc, text, len, &in_state) : (size_t) -1;
	if (n == (size_t) -1 || n == (size_t) -2 || n == 0) {	/* not UTF-8 */
	    out[used++] = (char) tolower((unsigned char) *text);
	    memset(&in_state, 0, sizeof(in_state));
	    n = 1;
	} else {
	    w = wcrtomb(one, (wchar_t) towlower((wint_t) wc), &out_state);
	    if (w == (size_t) -1 || w > 4)	/* kept as it is */
		memcpy(out + used, text, w = n);
	    else
		memcpy(out + used, one, w);
	    used += w;
	}
	text += n;
	len -= n;
    }
    out[used] = 0;
    if (saved != (locale_t) 0)
	(void) uselocale(saved);
    return (out);
}

/*
 * ratelimit_key_lower - whether a limit's key values compare without case:
 * addresses and domains, DNS names, and SASL user names (LDAP and SQL
 * logins, Dovecot with a lower-cased lookup, accept any case and report
 * the name as typed: each spelling of one leaked login was a fresh
 * budget). Counting two names a case-sensitive backend keeps apart
 * together is the safe side of a limit.
 */
static int ratelimit_key_lower(const struct limit *limit)
{
    static const char *const names[] = {"sender", "recipient", "sender_domain",
	"recipient_domain", "sasl_username", "client_name", "reverse_client_name",
    "helo_name", 0};

    for (int i = 0; names[i]; i++)
	if (strcmp(limit->key_attr, names[i]) == 0)
	    return (1);
    return (0);
}

/* ratelimit_key_dot - whether one trailing dot names the same thing */

static int ratelimit_key_dot(const struct limit *limit)
{
    return (ratelimit_key_lower(limit) && strcmp(limit->key_attr, "sasl_username") != 0);
}

/*
 * ratelimit_canon - a key value as the limit counts it: lower case where
 * the key compares without case, and a value of RATELIMIT_KEY_PLAIN_MAX
 * bytes or more as exactly RATELIMIT_KEY_HASHED bytes: its first bytes
 * (whole UTF-8 characters, padded with '~'), "~sha256:" and the SHA-256
 * of the whole (lowered) value, in hex. Every value
 * is counted however long; two long values share a key only if their
 * hashes collide; a plain key is shorter than any hashed one, so none
 * can pose as one. buf has LIMIT_KEY_MAX bytes.
 */

void    ratelimit_canon(const char *value, int lower, char *buf)
{
    char   *copy = lower ? ratelimit_lower(value) : xstrdup(value);
    size_t  len = strlen(copy);
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned mdlen = 0;
    size_t  head = RATELIMIT_KEY_HASHED - 8 - 64;

    if (len < RATELIMIT_KEY_PLAIN_MAX) {
	memcpy(buf, copy, len + 1);
	free(copy);
	return;
    }
    if (EVP_Digest(copy, len, md, &mdlen, EVP_sha256(), NULL) != 1 || mdlen != 32)
	msg_fatal("ratelimit: SHA-256 is not available");
    /* whole UTF-8 characters only, padded with '~' to the fixed length */
    while (head > 0 && ((unsigned char) copy[head] & 0xC0) == 0x80)
	head--;
    memcpy(buf, copy, head);
    memset(buf + head, '~', RATELIMIT_KEY_HASHED - 8 - 64 - head);
    head = RATELIMIT_KEY_HASHED - 8 - 64;
    memcpy(buf + head, "~sha256:", 8);
    for (unsigned i = 0; i < mdlen; i++)
	snprintf(buf + head + 8 + 2 * i, 3, "%02x", md[i]);
    free(copy);
}

/*
 * ratelimit_idna - a domain with a non-ASCII byte as its A-labels (UTS #46
 * mapping: lower case, NFC): "bücher.example", "BÜCHER.example" and
 * "xn--bcher-kva.example" are one domain to DNS and to Postfix's
 * delivery, and were three keys. NULL when there is nothing to convert,
 * or IDNA refuses the name (it is then counted as written, lowered).
 * Lowered first: where libidn2 and towlower() disagree (U+10A0...), a
 * letter and its lower case were two keys (helper-116).
 */
static char *ratelimit_idna(const char *domain)
{
    const unsigned char *p = (const unsigned char *) domain;
    char   *out = NULL, *copy, *lowered;
    int     rc;

    while (*p && *p < 0x80)
	p++;
    if (*p == 0)
	return (NULL);
    lowered = ratelimit_lower(domain);
    rc = idn2_to_ascii_8z(lowered, &out, IDN2_NFC_INPUT | IDN2_NONTRANSITIONAL);
    free(lowered);
    if (rc != IDN2_OK)
	return (NULL);
    copy = xstrdup(out);
    idn2_free(out);
    return (copy);
}

/*
 * ratelimit_unextend - an address without its extension, as Postfix
 * delivers it (recipient_delimiter: "alice+tag@example.com" is
 * alice@example.com's mailbox): the local part cut at its first
 * delimiter character, unless that is its first. Each extension was a
 * fresh budget for one mailbox (helper-122: 8 messages to alice through
 * a limit of 2/1h); so it was for an unqualified "alice+N", which Postfix
 * delivers to alice@$myorigin (helper-125: 7 through 2/1h). In place.
 * As Postfix's split_addr(), postmaster, mailer-daemon, double-bounce,
 * and with '-' a delimiter owner-* and *-request, stay whole
 * (ratelimit_unsplit(); helper-129: list-request@ spent list@'s budget).
 */
static int ratelimit_unsplit(const char *local, size_t len, const char *delimiter)
{
    static const char *const whole[] = {"postmaster", "mailer-daemon", "double-bounce"};

    for (size_t i = 0; i < sizeof(whole) / sizeof(whole[0]); i++)
	if (len == strlen(whole[i]) && strncasecmp(local, whole[i], len) == 0)
	    return (1);
    /* owner_request_special (Postfix's default): with '-' a delimiter,
       list-request@ and owner-list@ are mailboxes of their own */
    return (strchr(delimiter, '-') != NULL
	    && ((len >= 6 && strncasecmp(local, "owner-", 6) == 0)
		|| (len > 8 && strncasecmp(local + len - 8, "-request", 8) == 0)));
}

static void ratelimit_unextend(char *addr, const char *delimiter)
{
    char   *at = strrchr(addr, '@');
    size_t  cut;

    if (at == NULL)				/* unqualified: Postfix adds @$myorigin */
	at = addr + strlen(addr);
    if (delimiter == NULL || *delimiter == 0 || at == addr
	|| ratelimit_unsplit(addr, (size_t) (at - addr), delimiter))
	return;
    cut = strcspn(addr, delimiter);
    if (cut == 0 || addr + cut >= at)
	return;
    memmove(addr + cut, at, strlen(at) + 1);
}

/*
 * ratelimit_value - the key of one value (a request's, or an override's:
 * both go through here, so an override matches exactly the requests it
 * names). An address, domain or DNS name loses one trailing dot:
 * Postfix delivers "a@example.com." as "a@example.com", so with the dot
 * it was a fresh key for the same domain (a limit bypassed by a dot);
 * and its domain is written in A-labels (ratelimit_idna).
 */
const char *ratelimit_value(const struct limit *limit, const char *value, char *buf)
{
    const char *err = NULL, *at;
    size_t  len = strlen(value);
    char   *copy, *ascii, *joined;

    if (strcmp(limit->key_attr, "client_address") == 0) {
	if (ratelimit_address(limit, value, buf, &err) || err)
	    return (err);
	ratelimit_canon(value, 1, buf);		/* "unknown": any case */
	return (NULL);
    }
    if (!ratelimit_key_dot(limit)) {
	ratelimit_canon(value, ratelimit_key_lower(limit), buf);
	return (NULL);
    }
    copy = xstrdup(value);
    if (len > 1 && copy[len - 1] == '.' && copy[len - 2] != '.' && copy[len - 2] != '@')
	copy[len - 1] = 0;
    if (strcmp(limit->key_attr, "sender") == 0 || strcmp(limit->key_attr, "recipient") == 0)
	ratelimit_unextend(copy, limit->delimiter);
    at = strrchr(copy, '@');
    if ((ascii = ratelimit_idna(at ? at + 1 : copy)) != NULL) {
	joined = xasprintf("%.*s%s", at ? (int) (at + 1 - copy) : 0, copy, ascii);
	free(copy);
	free(ascii);
	copy = joined;
    }
    ratelimit_canon(copy, 1, buf);
    free(copy);
    return (NULL);
}

/*
 * ratelimit_raw - a request's value for a key or exemption attribute;
 * sender_domain and recipient_domain: policy_address_domain(), into buf
 * (LIMIT_KEY_MAX bytes). NULL when the
 * request has none (not limited, not exempt).
 */
static const char *ratelimit_raw(const char *attr, const struct policy_request *req,
				         char *buf)
{
    const char *value;
    int     domain = 0;

    if (strcmp(attr, "sender_domain") == 0)
	value = policy_request_get(req, "sender"), domain = 1;
    else if (strcmp(attr, "recipient_domain") == 0)
	value = policy_request_get(req, "recipient"), domain = 1;
    else
	value = policy_request_get(req, attr);
    if (value == NULL || *value == 0)
	return (NULL);
    if (domain)
	return (policy_address_domain(value, buf, LIMIT_KEY_MAX));
    return (value);
}

/*
 * ratelimit_exempt_key - an exemption's value, from its line or from a
 * request, in the limits' canonical form and then in lower case (as
 * exemptions always compared): "exempt sender_domain Partner.Example."
 * matches what a sender_domain limit counts as partner.example; before,
 * exemptions read only literal request attributes, so a sender_domain
 * or recipient_domain exemption passed -t and never matched.
 */
static void ratelimit_exempt_key(const char *attr, const char *value, const char *delimiter,
				         char *buf)
{
    struct limit pseudo;
    char   *lowered;

    memset(&pseudo, 0, sizeof(pseudo));
    pseudo.key_attr = (char *) attr;
    pseudo.v4_prefix = pseudo.v6_prefix = -1;
    pseudo.delimiter = delimiter;
    (void) ratelimit_value(&pseudo, value, buf);	/* not client_address */
    lowered = ratelimit_lower(buf);		/* at most 1.5 times as long */
    if (strlen(lowered) < LIMIT_KEY_MAX)
	memcpy(buf, lowered, strlen(lowered) + 1);
    free(lowered);
}

static const char *ratelimit_set_burst(struct limit_rates *rates, const char *text)
{
    long long burst;

    if (config_parse_size(text, &burst) != NULL || burst <= 0)
	return ("bad burst (a positive number)");
    for (int i = 0; i < rates->count; i++)
	rates->rate[i].burst = burst;
    return (NULL);
}

const char *ratelimit_parse_key(struct limit *limit, const char *spec)
{
    const char *slash = strchr(spec, '/');
    long long v4, v6;
    char    v6text[8];

    limit->v4_prefix = limit->v6_prefix = -1;
    if (slash == NULL) {
	limit->key_attr = xstrdup(spec);
    } else {
	if (strncmp(spec, "client_address/", 15) != 0)
	    return ("only client_address takes /V4LEN/V6LEN");
	if (sscanf(slash + 1, "%lld/%7s", &v4, v6text) != 2
	    || config_parse_int(v6text, &v6) != NULL)
	    return ("expected client_address/V4LEN/V6LEN, for example client_address/24/64");
	if (v4 < 0 || v4 > 32 || v6 < 0 || v6 > 128)
	    return ("client_address prefix lengths out of range (IPv4 0-32, IPv6 0-128)");
	limit->key_attr = xstrdup("client_address");
	limit->v4_prefix = (int) v4;
	limit->v6_prefix = (int) v6;
    }
    for (const char *cp = limit->key_attr; *cp; cp++)
	if (!(isalnum((unsigned char) *cp) || *cp == '_'))
	    return ("bad key attribute name");
    limit->per_recipient = strcmp(limit->key_attr, "recipient") == 0
	|| strcmp(limit->key_attr, "recipient_domain") == 0;
    return (NULL);
}

/*
 * ratelimit_repeated - an error when argv[i]'s "name=" came before it
 * (from argv[first] on): a second rate= or count= silently replaced the
 * first.
 */
static const char *ratelimit_repeated(char **argv, int first, int i)
{
    size_t  len = strcspn(argv[i], "=") + 1;
    static char why[100];			/* parsed in one thread */

    for (int j = first; j < i; j++)
	if (strncmp(argv[j], argv[i], len) == 0) {
	    snprintf(why, sizeof(why), "%.*s is given twice", (int) (len > 40 ? 40 : len),
		     argv[i]);
	    return (why);
	}
    return (NULL);
}

/* ratelimit_parse_option - one "name=value" of a limit line */

static const char *ratelimit_parse_option(struct limit *limit, const char *opt, int *have_rate,
				               const char **burst)
{
    const char *value = strchr(opt, '=') + 1;
    int     flag;

    if (strncmp(opt, "rate=", 5) == 0) {
	*have_rate = 1;
	return (ratelimit_parse_rates(value, &limit->rates));
    }
    if (strncmp(opt, "burst=", 6) == 0)
	return (*burst = value, NULL);
    if (strncmp(opt, "count=", 6) == 0) {
	for (int c = COUNT_MESSAGES; c <= COUNT_BYTES; c++)
	    if (strcmp(value, ratelimit_count_name(c)) == 0)
		return (limit->count = c, NULL);
	return ("count must be messages, recipients or bytes");
    }
    if (strncmp(opt, "action=", 7) == 0) {
	for (int a = ACTION_DEFER; a <= ACTION_WARN; a++)
	    if (strcmp(value, ratelimit_action_name(a)) == 0)
		return (limit->action = a, NULL);
	return ("action must be defer, reject, hold or warn");
    }
    if (strncmp(opt, "unless=", 7) == 0) {
	if (*value == 0)
	    return ("unless= needs an attribute name");
	return (free(limit->unless), limit->unless = xstrdup(value), NULL);
    }
    if (strncmp(opt, "dry_run=", 8) == 0) {
	if (config_parse_bool(value, &flag) != NULL)
	    return ("dry_run must be yes or no");
	return (limit->dry_run = flag, NULL);
    }
    return ("unknown option (rate, count, burst, unless, action, dry_run)");
}

static const char *ratelimit_parse_limit(struct limits *limits, struct limit *limit,
				              const char *text)
{
    int     argc, have_rate = 0;
    char  **argv = config_split_words(text, &argc);
    const char *err = NULL, *burst = NULL;
    int     arg = 1;

    memset(limit, 0, sizeof(*limit));
    if (argc < 2) {
	config_list_free(&argv);
	return ("expected: limit NAME = KEY rate=N/PERIOD ...");
    }
    limit->name = xstrdup(argv[0]);
    /* the name is part of the store's keys, "mxrl:{NAME:VALUE}:N": with a
       ':' in it, "a:b" for "c" and "a" for "b:c" were one key (one limit
       spent the other's budget), and a '}' cut the key's value short */
    for (const char *cp = limit->name; err == NULL && *cp; cp++)
	if (!isalnum((unsigned char) *cp) && strchr("_.-", *cp) == NULL)
	    err = "limit names are letters, digits, '_', '.' and '-'";
    if (err == NULL && strlen(limit->name) > LIMIT_NAME_MAX)
	err = "limit name longer than 64 characters";
    for (int i = 0; i < limits->limit_count; i++)
	if (strcmp(limits->limit[i].name, limit->name) == 0)
	    err = "duplicate limit name";
    if (err == NULL && strcmp(argv[arg], "=") == 0)
	arg++;
    if (err == NULL && arg >= argc)
	err = "missing KEY";
    if (err == NULL)
	err = ratelimit_parse_key(limit, argv[arg++]);
    for (int first = arg; err == NULL && arg < argc; arg++) {
	if (strchr(argv[arg], '=') == NULL)
	    err = "expected name=value option";
	else if ((err = ratelimit_repeated(argv, first, arg)) != NULL)
	    break;
	else
	    err = ratelimit_parse_option(limit, argv[arg], &have_rate, &burst);
    }
    if (err == NULL && !have_rate)
	err = "missing rate=";
    if (err == NULL && burst)
	err = ratelimit_set_burst(&limit->rates, burst);
    config_list_free(&argv);
    limit->overrides = htable_create(0);
    return (err);
}

static void ratelimit_free_one(struct limit *limit)
{
    free(limit->name);
    free(limit->key_attr);
    free(limit->unless);
    htable_destroy(&limit->overrides, free);
}

/*
 * ratelimit_attribute_check - a warning for an attribute no request has
 * (a typo: "sasl_usename" made a limit count nothing, "unless=sasl_usernme"
 * skip nothing, and -t said OK). A warning, not an error: a later Postfix
 * may send attributes this list does not know yet.
 */
void    ratelimit_attribute_check(const struct config *cfg, int line, const char *what,
				          const char *attr)
{
    if (!policy_attribute_known(attr))
	msg_warn("%s:%d: %s: \"%.64s\" is not an attribute Postfix 3.7 sends "
		 "(SMTPD_POLICY_README), nor sender_domain or recipient_domain: "
		 "no request will have it", cfg->path, line, what, attr);
}

void    ratelimit_load(struct limits *limits, struct config *cfg)
{
    const struct config_entry *entry = NULL;
    const char *err;

    static unsigned long generation;

    memset(limits, 0, sizeof(*limits));
    limits->generation = ++generation;
    limits->delimiter = xstrdup((entry = config_lookup(cfg, "recipient_delimiter")) != NULL
				? entry->value : RATELIMIT_DELIMITER);
    if (limits->delimiter[strcspn(limits->delimiter, "@\" \t\\")] != 0)
	config_add_error(cfg, entry ? entry->line : 0, "recipient_delimiter: \"%.20s\": "
			 "delimiter characters (Postfix's recipient_delimiter), not '@', "
			 "a quote, a backslash or white space", limits->delimiter);
    entry = NULL;
    while ((entry = config_next(cfg, entry, "limit")) != NULL) {
	limits->limit = xrealloc(limits->limit, sizeof(struct limit) * (limits->limit_count + 1));
	err = ratelimit_parse_limit(limits, limits->limit + limits->limit_count, entry->value);
	if (err) {
	    config_add_error(cfg, entry->line, "limit: %s", err);
	    ratelimit_free_one(limits->limit + limits->limit_count);
	    continue;
	}
	ratelimit_attribute_check(cfg, entry->line, "limit key",
				  limits->limit[limits->limit_count].key_attr);
	if (limits->limit[limits->limit_count].unless)
	    ratelimit_attribute_check(cfg, entry->line, "unless=",
				      limits->limit[limits->limit_count].unless);
	limits->limit[limits->limit_count].delimiter = limits->delimiter;
	limits->limit_count++;
    }
    ratelimit_load_overrides(limits, cfg);
    quarantine_load(limits, cfg);
}

static struct limit *ratelimit_find(struct limits *limits, const char *name)
{
    for (int i = 0; i < limits->limit_count; i++)
	if (strcmp(limits->limit[i].name, name) == 0)
	    return (limits->limit + i);
    return (NULL);
}

/* ratelimit_parse_override - "LIMIT KEY_VALUE rate=... [burst=N]" */

static const char *ratelimit_parse_override(struct limits *limits, const char *text,
					            int *again)
{
    int     argc, created;
    char  **argv = config_split_words(text, &argc);
    struct limit *limit;
    struct limit_rates rates, **slot;
    const char *err = NULL, *burst = NULL;
    char    key[LIMIT_KEY_MAX];

    if (argc < 3 || strncmp(argv[2], "rate=", 5) != 0)
	err = "expected: override LIMIT KEY_VALUE rate=N/PERIOD[,...] [burst=N]";
    else if ((limit = ratelimit_find(limits, argv[0])) == NULL)
	err = "override for an unknown limit";
    else if ((err = ratelimit_parse_rates(argv[2] + 5, &rates)) == NULL) {
	for (int i = 3; i < argc && err == NULL; i++) {
	    if ((err = ratelimit_repeated(argv, 2, i)) != NULL)
		break;
	    else if (strncmp(argv[i], "burst=", 6) == 0)
		burst = argv[i] + 6;
	    else
		err = "unknown override option (only burst=)";
	}
	if (err == NULL && burst)
	    err = ratelimit_set_burst(&rates, burst);
	if (err == NULL)
	    err = ratelimit_value(limit, argv[1], key);
	if (err == NULL) {
	    slot = (struct limit_rates **) htable_slot(limit->overrides, key, &created);
	    if (created)
		*slot = xmalloc(sizeof(rates));
	    *again = !created;
	    **slot = rates;
	}
    }
    config_list_free(&argv);
    return (err);
}

/* ratelimit_parse_exempt - "ATTRIBUTE VALUE..." */

static const char *ratelimit_parse_exempt(struct limits *limits, const char *text)
{
    int     argc, created;
    char  **argv = config_split_list(text, &argc);
    struct exemption *ex;
    const char *err = NULL;
    char   *bad = NULL;

    if (argc < 2) {
	config_list_free(&argv);
	return ("expected: exempt ATTRIBUTE VALUE...");
    }
    limits->exempt = xrealloc(limits->exempt, sizeof(*ex) * (limits->exempt_count + 1));
    ex = limits->exempt + limits->exempt_count++;
    memset(ex, 0, sizeof(*ex));
    ex->attr = xstrdup(argv[0]);
    if (strcmp(argv[0], "client_address") == 0) {
	ex->cidrs = cidr_list_create();
	for (int i = 1; i < argc && err == NULL; i++)
	    if ((err = cidr_list_add(ex->cidrs, argv[i])) != NULL)
		bad = argv[i];
	if (bad) {				/* name the value in the error */
	    static char buf[300];

	    snprintf(buf, sizeof(buf), "%s \"%.200s\"", err, bad);
	    err = buf;
	}
    } else {
	ex->values = htable_create(0);
	for (int i = 1; i < argc; i++) {
	    char    key[LIMIT_KEY_MAX];

	    ratelimit_exempt_key(argv[0], argv[i], limits->delimiter, key);
	    *htable_slot(ex->values, key, &created) = ex;	/* any non-NULL */
	}
    }
    config_list_free(&argv);
    return (err);
}

void    ratelimit_load_overrides(struct limits *limits, struct config *cfg)
{
    const struct config_entry *entry = NULL;
    const char *err;

    int     again = 0;

    /* one key given twice ("bob" and "BOB" are one key): the later one
       wins with a warning, as for any setting given twice */
    while ((entry = config_next(cfg, entry, "override")) != NULL) {
	if ((err = ratelimit_parse_override(limits, entry->value, &again)) != NULL)
	    config_add_error(cfg, entry->line, "override: %s", err);
	else if (again)
	    msg_warn("%s:%d: override %.200s: that limit and key were given an override "
		     "before; this one wins", cfg->path, entry->line, entry->value);
	again = 0;
    }
    entry = NULL;
    while ((entry = config_next(cfg, entry, "exempt")) != NULL)
	if ((err = ratelimit_parse_exempt(limits, entry->value)) != NULL)
	    config_add_error(cfg, entry->line, "exempt: %s", err);
	else
	    ratelimit_attribute_check(cfg, entry->line, "exempt",
				      limits->exempt[limits->exempt_count - 1].attr);
}

void    ratelimit_free(struct limits *limits)
{
    for (int i = 0; i < limits->limit_count; i++)
	ratelimit_free_one(limits->limit + i);
    for (int i = 0; i < limits->exempt_count; i++) {
	free(limits->exempt[i].attr);
	cidr_list_destroy(&limits->exempt[i].cidrs);
	htable_destroy(&limits->exempt[i].values, NULL);
    }
    quarantine_free(limits);
    free(limits->limit);
    free(limits->exempt);
    free(limits->delimiter);
    memset(limits, 0, sizeof(*limits));
}

const struct limit_rates *ratelimit_rates_for(const struct limit *limit, const char *key)
{
    const struct limit_rates *rates = htable_find(limit->overrides, key);

    return (rates ? rates : &limit->rates);
}

/*
 * ratelimit_unzoned - an IPv6 address without its zone, as the limits
 * count it (ratelimit_address()): "fe80::7%eth0" is fe80::7 to an
 * exemption too (it never matched fe80::/10, so link-local clients
 * written with a zone lost their exemption).
 */
static const char *ratelimit_unzoned(const char *value, char *buf, size_t len)
{
    size_t  n = strcspn(value, "%");

    if (value[n] == 0 || strchr(value, ':') == NULL || n >= len)
	return (value);
    memcpy(buf, value, n);
    buf[n] = 0;
    return (buf);
}

int     ratelimit_exempt(const struct limits *limits, const struct policy_request *req)
{
    const char *raw;
    char    key[LIMIT_KEY_MAX], dom[LIMIT_KEY_MAX];

    for (int i = 0; i < limits->exempt_count; i++) {
	const struct exemption *ex = limits->exempt + i;

	if ((raw = ratelimit_raw(ex->attr, req, dom)) == NULL)
	    continue;
	if (ex->cidrs) {
	    if (cidr_list_match_str(ex->cidrs, ratelimit_unzoned(raw, key, sizeof(key))))
		return (1);
	} else {				/* the whole value, any length */
	    ratelimit_exempt_key(ex->attr, raw, limits->delimiter, key);
	    if (htable_find(ex->values, key) != NULL)
		return (1);
	}
    }
    return (0);
}

/* ratelimit_unless - the request sets the limit's unless= attribute: not limited */

int     ratelimit_unless(const struct limit *limit, const struct policy_request *req)
{
    const char *value;

    return (limit->unless && (value = policy_request_get(req, limit->unless)) && *value);
}

int     ratelimit_key(const struct limit *limit, const struct policy_request *req,
		           char *buf, size_t len)
{
    const char *value;
    char    dom[LIMIT_KEY_MAX];

    if (ratelimit_unless(limit, req))
	return (0);
    if ((value = ratelimit_raw(limit->key_attr, req, dom)) == NULL)
	return (0);
    if (len < LIMIT_KEY_MAX)
	msg_panic("ratelimit_key: buffer of %zu bytes", len);
    /* not an address ("unknown" after XCLIENT ADDR=[UNAVAILABLE]): such
     * clients share the value's key rather than go unlimited */
    if (ratelimit_value(limit, value, buf) != NULL)
	ratelimit_canon(value, 1, buf);		/* a request's "ADDR/LEN": as text */
    return (1);
}
