/*
 * NAME
 *	policy 3
 * SUMMARY
 *	configuration, tables and keys as one atomically replaced set
 * SYNOPSIS
 *	#include "policy.h"
 *
 *	struct dkim_policy *policy_load(path)
 *	void	policy_install(policy)
 *	struct dkim_policy *policy_acquire()
 *	void	policy_release(&policy)
 * DESCRIPTION
 *	policy_load() reads milter-dkim.conf, the KeyTable, SigningTable
 *	and sender_binding files and every key, and builds a libopendkim
 *	library handle with the header lists, signature TTL and (for
 *	tests) the DNS query file. Nothing is installed unless all of it
 *	is good: on SIGHUP a broken set is refused and the old one keeps
 *	working.
 *
 *	A message acquires the current set at its first callback and
 *	releases it when it ends, so in-flight messages finish with the
 *	set they started with; a replaced set is freed by its last user.
 *
 *	Checks beyond syntax: each key must load (type from the file);
 *	a KeyTable domain without '%' must align (DMARC relaxed) with every
 *	domain the SigningTable patterns that use it can match (a '*' in
 *	a pattern's domain must follow a dot: "*.example.com"); with
 *	dns_test_file, the record selector._domainkey.domain must carry
 *	the key's public half.
 * DIAGNOSTICS
 *	policy_load() prints every error as "file:line: message" and
 *	returns NULL.
 */

#include "build_config.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>
#include <grp.h>
#include <netdb.h>
#include <pwd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>

#include "addr.h"
#include "auth.h"
#include "daemon.h"
#include "dkim_sign.h"
#include "dns.h"
#include "mdns.h"
#include "msg.h"
#include "policy.h"
#include "xalloc.h"

const struct config_spec policy_specs[] = {
    {"socket", CONFIG_STRING, "inet:8891@127.0.0.1", CONFIG_RESTART},
    {"socket_umask", CONFIG_STRING, "007", CONFIG_RESTART},
    {"max_sessions", CONFIG_INT, "1000", CONFIG_RESTART},
    {"mode", CONFIG_LIST, "sign, verify", 0},
    {"key_table", CONFIG_STRING, NULL, 0},
    {"signing_table", CONFIG_STRING, NULL, 0},
    {"internal_hosts", CONFIG_LIST, "127.0.0.0/8, ::1", 0},
    {"sign_authenticated", CONFIG_BOOL, "yes", 0},
    {"sender_binding", CONFIG_STRING, NULL, 0},
    {"sender_binding_action", CONFIG_STRING, "reject", 0},
    {"canonicalization", CONFIG_STRING, "relaxed/relaxed", 0},
    {"sign_headers", CONFIG_LIST, "From, Reply-To, Subject, Date, To, Cc, Message-ID, "
	"In-Reply-To, References, MIME-Version, Content-Type, Content-Transfer-Encoding, "
	"Content-Disposition, List-Id, List-Unsubscribe, List-Unsubscribe-Post, Sender", 0},
    {"oversign_headers", CONFIG_LIST, "From, Subject, Date, To, Cc, Reply-To, MIME-Version, "
	"Content-Type, Content-Transfer-Encoding, Content-Disposition", 0},
    {"signature_ttl", CONFIG_DURATION, "0", 0},
    {"require_safe_keys", CONFIG_BOOL, "yes", 0},
    {"verify_signatures_max", CONFIG_INT, "8", 0},
    {"authserv_id", CONFIG_STRING, NULL, 0},
    {"dns_test_file", CONFIG_STRING, NULL, 0},
    {"spf", CONFIG_BOOL, "yes", 0},
    {"dmarc", CONFIG_BOOL, "yes", 0},
    {"dmarc_reject", CONFIG_BOOL, "no", 0},
    {"dns_servers", CONFIG_STRING, "system", 0},
    {"dns_timeout", CONFIG_DURATION, "5s", 0},
    {"auth_timeout", CONFIG_DURATION, "20s", 0},
    {"public_suffix_list", CONFIG_STRING, "/usr/share/publicsuffix/public_suffix_list.dat", 0},
    DAEMON_DRAIN_SPECS,
    DAEMON_CONFIG_SPECS,
    {0},
};

#define POLICY_FILE_MAX	(16 * 1024 * 1024)	/* a table larger is not a table */

static pthread_mutex_t policy_lock = PTHREAD_MUTEX_INITIALIZER;
static struct dkim_policy *policy_current;

/*
 * policy_read_file - a whole table, or an error: a directory read as an
 * empty table (a SigningTable that signs nothing, a sender_binding that
 * binds nobody, and -t said OK), a FIFO blocked the reload (and SIGTERM)
 * forever, and a table past the limit was cut there in silence.
 */
static char *policy_read_file(struct config *cfg, const char *param, const char *path)
{
    int     fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);	/* a FIFO: no wait */
    char   *text = NULL;
    size_t  len = 0, cap = 0;
    ssize_t n = 0;
    struct stat st;
    int     saved;

    if (fd < 0) {
	config_add_file_error(cfg, path, 0, "cannot open %s: %m", param);
	return (NULL);
    }
    if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
	config_add_file_error(cfg, path, 0, "%s is not a regular file", param);
	close(fd);
	return (NULL);
    }
    do {
	if (len + 4096 + 1 > cap)
	    text = xrealloc(text, cap = cap * 2 + 4096 + 1);
	if ((n = read(fd, text + len, cap - len - 1)) > 0)
	    len += n;
    } while ((n > 0 || (n < 0 && errno == EINTR)) && len <= POLICY_FILE_MAX);
    saved = errno;
    close(fd);
    text[len] = 0;
    if (n < 0 || len > POLICY_FILE_MAX) {
	if (n < 0)
	    config_add_file_error(cfg, path, 0, "cannot read %s: %s", param, strerror(saved));
	else
	    config_add_file_error(cfg, path, 0, "%s is larger than %d MB", param,
				  POLICY_FILE_MAX >> 20);
	free(text);
	return (NULL);
    }
    if (strlen(text) != len) {
	config_add_file_error(cfg, path, 0, "%s contains a NUL byte", param);
	free(text);
	return (NULL);
    }
    return (text);
}

static void policy_read_table(struct dkim_policy *p, const char *param,
			              void (*parse) (struct tables *, struct config *,
					             const char *, const char *))
{
    const char *value = config_get_str(p->cfg, param);
    const char *path;
    char   *text;

    if (value == NULL)
	return;
    path = tables_strip_prefix(value);
    if ((text = policy_read_file(p->cfg, param, path)) != NULL) {
	parse(&p->tables, p->cfg, path, text);
	free(text);
    }
}

/*
 * policy_check_alignment - a key with a fixed domain signs only for
 * patterns whose every domain aligns with it: a signature whose d= does
 * not align is no use to DMARC, and "*planapulse.ai" (no dot) signed
 * mail from evilplanapulse.ai with d=planapulse.ai. The error names the
 * patterns that say what was probably meant.
 */
static void policy_check_alignment(struct dkim_policy *p, const char *path)
{
    for (int i = 0; i < p->tables.sign_count; i++) {
	const struct signing_entry *s = p->tables.sign + i;
	const char *at = strrchr(s->pattern, '@');
	const char *domain = at ? at + 1 : s->pattern;

	for (char **k = s->keys; *k; k++) {
	    const struct key_entry *key = tables_find_key(&p->tables, *k);

	    if (key == NULL || strchr(key->domain, '%')
		|| tables_pattern_aligned(s->pattern, key->domain))
		continue;
	    if (strchr(domain, '*'))
		config_add_file_error(p->cfg, path, s->line, "key \"%s\" signs for %s, but "
				      "pattern \"%s\" also matches domains that do not align "
				      "with it (DMARC); write \"*@%s\" for the domain and "
				      "\"*@*.%s\" for its subdomains", key->name, key->domain,
				      s->pattern, key->domain, key->domain);
	    else
		config_add_file_error(p->cfg, path, s->line,
				      "key \"%s\" signs for %s, which does not align with "
				      "%s (DMARC)", key->name, key->domain, domain);
	}
    }
}

/* policy_check_dns - the test DNS file must publish each key's public half */

static void policy_check_dns(struct dkim_policy *p, const char *dns_file)
{
    char   *text = policy_read_file(p->cfg, "dns_test_file", dns_file);

    if (text == NULL)
	return;
    for (int i = 0; i < p->tables.key_count; i++) {
	const struct key_entry *k = p->tables.key + i;
	char   *name, *found, *pub;

	if (strchr(k->domain, '%') || p->keys[i].public_b64 == NULL)
	    continue;
	name = xasprintf("%s._domainkey.%s ", k->selector, k->domain);
	if ((found = strstr(text, name)) != NULL) {
	    char   *eol = strchr(found, '\n');

	    pub = xasprintf("p=%s", p->keys[i].public_b64);
	    if (eol)
		*eol = 0;
	    if (strstr(found, pub) == NULL)
		config_add_file_error(p->cfg, tables_strip_prefix(
					   config_get_str(p->cfg, "key_table")), k->line,
				      "key \"%s\" (%s) does not match the public key of "
				      "%s._domainkey.%s in %s", k->name, k->path,
				      k->selector, k->domain, dns_file);
	    if (eol)
		*eol = '\n';
	    free(pub);
	}
	free(name);
    }
    free(text);
}

/*
 * policy_key_groups - the groups the daemon runs with, whose read access
 * to a key file is not a leak: those of "user" when we will become it,
 * else our own (a container's fsGroup is a supplementary group).
 */
static gid_t *policy_key_groups(struct dkim_policy *p, int *n)
{
    const char *user = config_get_str(p->cfg, "user");
    struct passwd *pw = user && geteuid() == 0 ? getpwnam(user) : NULL;
    gid_t  *groups;

    if (pw) {
	*n = 0;
	getgrouplist(user, pw->pw_gid, NULL, n);
	groups = xcalloc(*n + 1, sizeof(*groups));
	if (getgrouplist(user, pw->pw_gid, groups, n) < 0)
	    *n = 0;
	groups[(*n)++] = pw->pw_gid;
	return (groups);
    }
    *n = getgroups(0, NULL);
    groups = xcalloc((*n > 0 ? *n : 0) + 1, sizeof(*groups));
    if ((*n = getgroups(*n > 0 ? *n : 0, groups)) < 0)
	*n = 0;
    groups[(*n)++] = getegid();
    return (groups);
}

/*
 * policy_first_row - the first KeyTable row naming the same key file as
 * row i (i itself when none does), by an open-addressed hash of paths:
 * a KeyTable of 10,000 rows is compared in linear time.
 */
static int policy_first_row(const struct tables *t, int *slot, int nslots, int i)
{
    const char *path = t->key[i].path;
    unsigned h = 2166136261u;

    for (const unsigned char *cp = (const unsigned char *) path; *cp; cp++)
	h = (h ^ *cp) * 16777619u;
    for (h %= (unsigned) nslots; slot[h] >= 0; h = (h + 1) % (unsigned) nslots)
	if (strcmp(t->key[slot[h]].path, path) == 0)
	    return (slot[h]);
    return (slot[h] = i);
}

/* policy_load_keys - each key file read and checked once, shared by its rows */

static void policy_load_keys(struct dkim_policy *p)
{
    const char *table = config_get_str(p->cfg, "key_table");
    struct keys_policy kp = {.require_safe = config_get_bool(p->cfg, "require_safe_keys")};
    int     n = p->tables.key_count, nslots = 2 * n + 1, first;
    int    *slot = xmalloc(sizeof(*slot) * nslots);
    char  **errs = xcalloc(n + 1, sizeof(*errs));	/* keys_load()'s may be reused */
    const char *err;

    for (int i = 0; i < nslots; i++)
	slot[i] = -1;
    kp.groups = policy_key_groups(p, &kp.ngroups);
    p->keys = xcalloc(n + 1, sizeof(*p->keys));
    for (int i = 0; i < n; i++) {
	if ((first = policy_first_row(&p->tables, slot, nslots, i)) == i) {
	    if ((err = keys_load(p->tables.key[i].path, p->keys + i, &kp)) != NULL)
		errs[i] = xstrdup(err);
	} else if (errs[first] == NULL) {
	    keys_share(p->keys + first, p->keys + i);
	}
	if ((err = errs[first]) != NULL)
	    config_add_file_error(p->cfg, tables_strip_prefix(table), p->tables.key[i].line,
				  "%s: %s", p->tables.key[i].path, err);
    }
    for (int i = 0; i < n; i++)
	free(errs[i]);
    free(errs);
    free(slot);
    free(kp.groups);
}

/*
 * policy_check_templates - a '%' row signs as whatever From: domain the
 * SigningTable routes to it, so with the selector of another row and
 * another key it signs that row's domain with a key DNS does not
 * publish there (helper-99: "%:mail:K1" for "*", "planapulse.ai:mail:K2").
 * Which domains reach which row is the SigningTable's order and
 * wildcards, so any domain the template can make counts. Equal
 * templates were compared above; '%' rows are rare: the pairs are few.
 */
static void policy_check_templates(struct dkim_policy *p, const char *table)
{
    const struct key_entry *key = p->tables.key;

    for (int j = 0; j < p->tables.key_count; j++) {
	if (strchr(key[j].domain, '%') == NULL || p->keys[j].public_b64 == NULL)
	    continue;
	for (int i = 0; i < p->tables.key_count; i++) {
	    if (i == j || p->keys[i].public_b64 == NULL
		|| strcasecmp(key[i].selector, key[j].selector) != 0
		|| strcasecmp(key[i].domain, key[j].domain) == 0
		|| (strchr(key[i].domain, '%') && i < j)
		|| !tables_template_makes(key[j].domain, key[i].domain)
		|| strcmp(p->keys[i].public_b64, p->keys[j].public_b64) == 0)
		continue;
	    config_add_file_error(p->cfg, table, key[j].line, "%s:%s can sign as %s with "
				  "another key than line %d (%s) uses for %s:%s: DNS publishes "
				  "one key per selector, so one of them would fail at every "
				  "receiver; give the '%%' row its own selector", key[j].domain,
				  key[j].selector, strchr(key[i].domain, '%') ? "the same domain"
				  : key[i].domain, key[i].line, key[i].path, key[i].domain,
				  key[i].selector);
	}
    }
}

/*
 * policy_check_selectors - two KeyTable rows that sign one d= and s= with
 * different keys: DNS publishes one public key there, so every signature
 * of one of them fails at the receivers (only -t --dns saw it before).
 * The same key under one name twice is fine (rows share a loaded key).
 */
static void policy_check_selectors(struct dkim_policy *p)
{
    const char *table = config_get_str(p->cfg, "key_table");
    int     n = p->tables.key_count, nslots = 2 * n + 1;
    int    *slot;

    if (n == 0 || table == NULL || p->keys == NULL)	/* verify only: no KeyTable */
	return;
    table = tables_strip_prefix(table);
    slot = xmalloc(sizeof(*slot) * nslots);
    for (int i = 0; i < nslots; i++)
	slot[i] = -1;
    for (int i = 0; i < n; i++) {
	const struct key_entry *k = p->tables.key + i;
	unsigned h = 2166136261u;
	int     j;

	if (p->keys[i].public_b64 == NULL)	/* not loaded: said already */
	    continue;
	for (const char *cp = k->domain; *cp; cp++)
	    h = (h ^ (unsigned char) tolower((unsigned char) *cp)) * 16777619u;
	for (const char *cp = k->selector; *cp; cp++)
	    h = (h ^ (unsigned char) tolower((unsigned char) *cp)) * 16777619u;
	for (h %= (unsigned) nslots; (j = slot[h]) >= 0; h = (h + 1) % (unsigned) nslots)
	    if (strcasecmp(p->tables.key[j].domain, k->domain) == 0
		&& strcasecmp(p->tables.key[j].selector, k->selector) == 0)
		break;
	if (j < 0)
	    slot[h] = i;
	else if (strcmp(p->keys[j].public_b64, p->keys[i].public_b64) != 0)
	    config_add_file_error(p->cfg, table, k->line, "%s:%s is signed with another key "
				  "at line %d (%s): DNS publishes one key per selector, so one "
				  "of them would fail at every receiver", k->domain, k->selector,
				  p->tables.key[j].line, p->tables.key[j].path);
    }
    free(slot);
    policy_check_templates(p, table);
}


/*
 * policy_prescreen - verify only the first verify_signatures_max
 * signatures of a message: each costs a DNS query and an RSA operation,
 * and a sender may add hundreds (the milter's thread would wait on DNS
 * for each while Postfix's milter timeout runs). The rest are ignored.
 * Signatures whose d= is under the From: domain's organizational domain
 * (mdns_guarded()) come first, in their order: else 8 signatures a
 * spoofer put above the author's pushed it past the limit, and their
 * keys were fetched before it.
 */
static DKIM_CBSTAT policy_prescreen(DKIM *dkim, DKIM_SIGINFO **sigs, int nsigs)
{
    const struct dkim_policy *p = dkim_get_user_context(dkim);
    int     first = 0;

    for (int i = 0; i < nsigs; i++) {
	const char *d = (const char *) dkim_sig_getdomain(sigs[i]);
	DKIM_SIGINFO *sig = sigs[i];

	if (d == NULL || !mdns_guarded(d))
	    continue;
	memmove(sigs + first + 1, sigs + first, (i - first) * sizeof(*sigs));
	sigs[first++] = sig;
    }
    for (int i = p ? p->verify_max : nsigs; i < nsigs; i++)
	dkim_sig_ignore(sigs[i]);
    return (DKIM_CBSTAT_CONTINUE);
}

/* policy_header_names - field names (RFC 5322 ftext) that fit in h= (no ';') */

static void policy_header_names(struct dkim_policy *p, const char *param, char **names)
{
    const char *why;

    for (; names && *names; names++) {
	if ((why = dkim_sign_unsignable(*names)) != NULL)
	    config_add_error(p->cfg, config_line(p->cfg, param), "%s: %s cannot be "
			     "signed: %s", param, *names, why);
	for (const unsigned char *cp = (unsigned char *) *names; !why && *cp; cp++)
	    if (*cp < 33 || *cp > 126 || *cp == ':' || *cp == ';') {
		config_add_error(p->cfg, config_line(p->cfg, param), "%s: \"%s\" is not a "
				 "header name that h= can carry", param, *names);
		break;
	    }
    }
}

/*
 * policy_signature_ttl - x= is t= plus this, in whole seconds, at most
 * POLICY_TTL_MAX: 1500ms was cut to 1s without a word, and 9999999999w
 * gave a 16-digit x= (RFC 6376 3.5: 1*12DIGIT), which verifiers refuse.
 */
#define POLICY_TTL_MAX	(3650LL * 86400)	/* 10 years */

static void policy_signature_ttl(struct dkim_policy *p)
{
    long long ms = config_get_duration(p->cfg, "signature_ttl");

    p->signature_ttl = (long) (ms / 1000);
    if (ms < 0 || ms % 1000 != 0 || ms / 1000 > POLICY_TTL_MAX)
	config_add_error(p->cfg, config_line(p->cfg, "signature_ttl"), "signature_ttl is whole "
			 "seconds (x= has no smaller unit): 0 for none, or 1s to 3650d "
			 "(x= has at most 12 digits)");
}

static void policy_options(struct dkim_policy *p)
{
    const char *canon = config_get_str(p->cfg, "canonicalization");
    char    h[16] = "", b[16] = "";
    /*
     * No DKIM_LIBFLAGS_FIXCRLF: with it, libopendkim copies each header
     * into a buffer capped at 64 KB, keeps the old length, and hashes a
     * truncated (and over-read) header: a signed 70 KB References: did
     * not verify. Postfix gives us the body with CRLF line ends, and
     * milter_feed_headers() writes folded headers with CRLF itself.
     */
    unsigned flags = DKIM_LIBFLAGS_NONE;
    const char *dns = config_get_str(p->cfg, "dns_test_file");
    int     n, used = 0;

    /* "relaxed/relaxed junk" was read as relaxed/relaxed: all or nothing */
    if (sscanf(canon, "%15[a-z]%n/%15[a-z]%n", h, &used, b, &used) < 1 || canon[used])
	config_add_error(p->cfg, config_line(p->cfg, "canonicalization"), "canonicalization must "
			 "be simple or relaxed, as HEADER/BODY (default relaxed/relaxed)");
    if (!*b)
	strcpy(b, "simple");			/* RFC 6376 3.5: c=x means x/simple */
    p->header_canon = strcmp(h, "simple") == 0 ? DKIM_CANON_SIMPLE : DKIM_CANON_RELAXED;
    p->body_canon = strcmp(b, "simple") == 0 ? DKIM_CANON_SIMPLE : DKIM_CANON_RELAXED;
    if ((strcmp(h, "simple") && strcmp(h, "relaxed")) || (strcmp(b, "simple")
							   && strcmp(b, "relaxed")))
	config_add_error(p->cfg, config_line(p->cfg, "canonicalization"),
			 "canonicalization must be simple or relaxed, as HEADER/BODY");
    /* signing is dkim_sign(3)'s; libopendkim only verifies */
    p->sign_headers = config_split_list(config_get_str(p->cfg, "sign_headers"), &n);
    p->oversign_headers = config_split_list(config_get_str(p->cfg, "oversign_headers"), &n);
    dkim_options(p->lib, DKIM_OP_SETOPT, DKIM_OPTS_FLAGS, &flags, sizeof(flags));
    if (!dkim_sign_listed("From", p->sign_headers))
	config_add_error(p->cfg, config_line(p->cfg, "sign_headers"),
			 "sign_headers must include From (RFC 6376 5.4)");
    policy_header_names(p, "sign_headers", p->sign_headers);
    policy_header_names(p, "oversign_headers", p->oversign_headers);
    policy_signature_ttl(p);
    p->verify_max = (int) config_get_int(p->cfg, "verify_signatures_max");
    if (p->verify_max < 1 || p->verify_max > 1000)
	config_add_error(p->cfg, config_line(p->cfg, "verify_signatures_max"),
			 "verify_signatures_max must be 1 to 1000");
    p->max_sessions = (int) config_get_int(p->cfg, "max_sessions");
    if (p->max_sessions < 1 || p->max_sessions > 100000)
	config_add_error(p->cfg, config_line(p->cfg, "max_sessions"),
			 "max_sessions must be 1 to 100000");
    dkim_set_prescreen(p->lib, policy_prescreen);
    if (dns) {
	dkim_query_t method = DKIM_QUERY_FILE;

	dkim_options(p->lib, DKIM_OP_SETOPT, DKIM_OPTS_QUERYMETHOD, &method, sizeof(method));
	dkim_options(p->lib, DKIM_OP_SETOPT, DKIM_OPTS_QUERYINFO, (void *) dns, strlen(dns));
    }
}

static void policy_settings(struct dkim_policy *p)
{
    static char host[256];
    const char *mode = config_get_str(p->cfg, "mode");
    const char *action = config_get_str(p->cfg, "sender_binding_action");
    char  **list, *bad = NULL;
    int     n;

    list = config_split_list(mode, &n);
    for (int i = 0; i < n; i++) {
	if (strcmp(list[i], "sign") == 0)
	    p->sign = 1;
	else if (strcmp(list[i], "verify") == 0)
	    p->verify = 1;
	else
	    config_add_error(p->cfg, config_line(p->cfg, "mode"),
			     "mode must be sign, verify or both, not \"%s\"", list[i]);
    }
    config_list_free(&list);
    if (n == 0)					/* else every message passes untouched */
	config_add_error(p->cfg, config_line(p->cfg, "mode"),
			 "mode must be sign, verify or both, not empty");
    p->internal = cidr_list_create();
    if (cidr_list_parse(p->internal, config_get_str(p->cfg, "internal_hosts"), &bad)) {
	config_add_error(p->cfg, config_line(p->cfg, "internal_hosts"),
			 "internal_hosts: bad network \"%s\"", bad);
	free(bad);
    }
    p->sign_authenticated = config_get_bool(p->cfg, "sign_authenticated");
    if (strcmp(action, "reject") != 0 && strcmp(action, "unsigned") != 0)
	config_add_error(p->cfg, config_line(p->cfg, "sender_binding_action"),
			 "sender_binding_action must be reject or unsigned");
    p->binding_reject = strcmp(action, "reject") == 0;
    if ((p->authserv_id = config_get_str(p->cfg, "authserv_id")) == NULL) {
	if (host[0] == 0 && gethostname(host, sizeof(host) - 1) != 0)
	    strcpy(host, "localhost");
	p->authserv_id = host;
    }
    /* our id must read back as itself, or forged copies could not be told */
    if (!*p->authserv_id || strlen(p->authserv_id) > 255
	|| strspn(p->authserv_id, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
		  "0123456789.-_!#$%&'*+^`{|}~") != strlen(p->authserv_id))
	config_add_error(p->cfg, config_line(p->cfg, "authserv_id"), "authserv_id must be a "
			 "token (a host name), up to 255 characters; not \"%s\"", p->authserv_id);
    if (p->sign && (!config_get_str(p->cfg, "key_table")
		    || !config_get_str(p->cfg, "signing_table")))
	config_add_error(p->cfg, 0, "mode sign needs key_table and signing_table");
}

/* policy_socket_inet - "PORT[@HOST]" as libmilter reads it (inet: / inet6:) */

static const char *policy_socket_inet(const char *spec, int family)
{
    const char *at = strchr(spec, '@');
    char   *port = at ? xstrndup(spec, at - spec) : xstrdup(spec), *host;
    struct addrinfo hints = {0}, *res = NULL;
    int     resolved;
    int     bad_port;

    /* libmilter: digits are a port, anything else a service ("+25" is none) */
    bad_port = *port == 0 || (strspn(port, "0123456789") < strlen(port)
			      ? getservbyname(port, "tcp") == NULL
			      : addr_port_number(port, strlen(port)) < 1);

    free(port);
    if (bad_port)
	return ("socket: the port must be 1-65535 or a service name");
    if (at == NULL)
	return (NULL);				/* every address */
    host = xstrdup(at + 1);
    if (*host == '[' && host[strlen(host) - 1] == ']') {
	memmove(host, host + 1, strlen(host));
	host[strlen(host) - 1] = 0;
    }
    hints.ai_family = family;
    hints.ai_socktype = SOCK_STREAM;
    resolved = *host && getaddrinfo(host, NULL, &hints, &res) == 0;
    if (res)
	freeaddrinfo(res);
    free(host);
    return (resolved ? NULL : "socket: the host is not an address or a name that resolves");
}

/* policy_socket_unix - a path that fits sun_path and will take a socket */

static const char *policy_socket_unix(const char *path)
{
    static char why[200];
    struct sockaddr_un sun;
    const char *err;

    if (*path == 0 || strlen(path) >= sizeof(sun.sun_path))
	return ("socket: the UNIX socket path is empty or longer than 107 bytes");
    if ((err = addr_unix_check(path)) == NULL && (err = daemon_config_socket_dir(path)) == NULL)
	return (NULL);
    snprintf(why, sizeof(why), "socket: %s", err);
    return (why);
}

/*
 * policy_socket_clash - metrics_listen on the milter's own TCP address,
 * resolved as mengine(3) binds it (getaddrinfo(), AI_PASSIVE): no @HOST
 * is every address, a port may be a service name (written as the address
 * bound: inet:0.0.0.0:43891). The spec was rewritten as text for
 * addr_parse(), which knows neither: "inet:43891" and "inet:smtp@127.0.0.1"
 * went unchecked, -t said OK and the start died "Address already in use".
 */
static void policy_socket_clash(struct dkim_policy *p, const char *spec)
{
    const char *colon = strchr(spec, ':'), *at;
    int     v6 = strncmp(spec, "inet6:", 6) == 0;
    struct addrinfo hints = {0}, *res = NULL;
    struct addr addr = {0};
    char   *port, *host = NULL, *text, buf[ADDR_TEXT_MAX];

    if (p->socket_local || colon == NULL)
	return;
    at = strchr(colon, '@');
    port = at ? xstrndup(colon + 1, at - colon - 1) : xstrdup(colon + 1);
    if (at && at[1] == '[' && at[strlen(at) - 1] == ']')
	host = xstrndup(at + 2, strlen(at) - 3);
    else if (at)
	host = xstrdup(at + 1);
    hints.ai_family = v6 ? AF_INET6 : AF_INET;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_PASSIVE;
    if (getaddrinfo(host, port, &hints, &res) == 0 && res != NULL
	&& res->ai_addrlen <= sizeof(addr.u)) {
	memcpy(&addr.u, res->ai_addr, res->ai_addrlen);
	addr.salen = res->ai_addrlen;
	addr.family = res->ai_family;
	text = xasprintf("%s:%s", v6 ? "inet6" : "inet", addr_format(&addr.u.sa, buf,
								       sizeof(buf)));
	/* mengine(3) binds it without IPV6_V6ONLY: "::" takes IPv4 too */
	daemon_config_addresses(p->cfg, &(struct daemon_address) {.name = "socket",
				.spec = text, .line = config_line(p->cfg, "socket"),
				.addr = &addr, .dual_stack = 1}, 1);
	free(text);
    }
    if (res)
	freeaddrinfo(res);
    free(port);
    free(host);
}

/*
 * policy_socket - socket and socket_umask, parsed and checked here so that
 * -t fails on what smfi_setconn()/smfi_opensocket() would die on later.
 */
static void policy_socket(struct dkim_policy *p)
{
    const char *spec = config_get_str(p->cfg, "socket");
    const char *mask = config_get_str(p->cfg, "socket_umask");
    const char *colon = strchr(spec, ':'), *err;
    char   *end;
    long    n = strtol(mask, &end, 8);

    if (*mask == 0 || *end || n < 0 || n > 0777 || strspn(mask, "01234567") != strlen(mask))
	config_add_error(p->cfg, config_line(p->cfg, "socket_umask"),
			 "socket_umask must be octal, 000 to 777, like 007; not \"%s\"", mask);
    p->socket_umask = (mode_t) n;
    if (colon == NULL || strncmp(spec, "unix:", 5) == 0 || strncmp(spec, "local:", 6) == 0) {
	p->socket_local = 1;
	p->socket_path = colon ? colon + 1 : spec;
	err = policy_socket_unix(p->socket_path);
    } else if (strncmp(spec, "inet:", 5) == 0) {
	err = policy_socket_inet(spec + 5, AF_INET);
    } else if (strncmp(spec, "inet6:", 6) == 0) {
	err = policy_socket_inet(spec + 6, AF_INET6);
    } else {
	err = "socket must be inet:PORT@HOST, inet6:PORT@HOST or unix:/PATH";
    }
    if (err)
	config_add_error(p->cfg, config_line(p->cfg, "socket"), "%s (\"%s\")", err, spec);
    else
	policy_socket_clash(p, spec);
}

static void policy_free(struct dkim_policy *p)
{
    if (p->lib)
	dkim_close(p->lib);
    auth_free(&p->auth);			/* after the lib: its DNS hooks use it */
    for (int i = 0; p->keys && i < p->tables.key_count; i++)
	keys_free(p->keys + i);
    free(p->keys);
    tables_free(&p->tables);
    cidr_list_destroy(&p->internal);
    config_list_free(&p->sign_headers);
    config_list_free(&p->oversign_headers);
    config_free(&p->cfg);
    free(p);
}

struct dkim_policy *policy_load(const char *path)
{
    struct dkim_policy *p = xcalloc(1, sizeof(*p));
    const char *dns;

    p->refcount = 1;
    p->cfg = config_read(path, policy_specs);
    if (p->cfg->error_count == 0) {
	daemon_config_check(p->cfg);
	if ((dns = config_get_str(p->cfg, "dns_servers")) && (dns = dns_servers_check(dns)))
	    config_add_error(p->cfg, config_line(p->cfg, "dns_servers"),
			     "dns_servers: %s", dns);
	policy_settings(p);
	policy_socket(p);
	p->lib = dkim_init(NULL, NULL);
	policy_options(p);
	auth_load(p->cfg, p->lib, p->verify, &p->auth);
	policy_read_table(p, "key_table", tables_parse_keys);
	policy_read_table(p, "signing_table", tables_parse_signing);
	policy_read_table(p, "sender_binding", tables_parse_binding);
	/* as an empty mode: "OK" and ready, and every message unsigned
	   (helper-121: an empty ConfigMap key) */
	if (p->sign && p->cfg->error_count == 0 && p->tables.sign_count == 0)
	    config_add_error(p->cfg, config_line(p->cfg, "signing_table"), "mode sign, but "
			     "signing_table has no entry: every message would pass unsigned "
			     "(leave sign out of mode to verify only)");
	if (config_get_str(p->cfg, "signing_table"))
	    policy_check_alignment(p, tables_strip_prefix(config_get_str(p->cfg,
							      "signing_table")));
	policy_load_keys(p);
	policy_check_selectors(p);
	if ((dns = config_get_str(p->cfg, "dns_test_file")) != NULL)
	    policy_check_dns(p, dns);
    }
    if (p->cfg->error_count) {
	config_print_errors(p->cfg);
	policy_free(p);
	return (NULL);
    }
    return (p);
}

const struct dkim_key *policy_key(const struct dkim_policy *policy,
				          const struct key_entry *entry)
{
    return (policy->keys + (entry - policy->tables.key));
}

void    policy_install(struct dkim_policy *policy)
{
    struct dkim_policy *old;

    pthread_mutex_lock(&policy_lock);
    old = policy_current;
    policy_current = policy;
    pthread_mutex_unlock(&policy_lock);
    policy_release(&old);
}

struct dkim_policy *policy_acquire(void)
{
    struct dkim_policy *p;

    pthread_mutex_lock(&policy_lock);
    if ((p = policy_current) != NULL)
	p->refcount++;
    pthread_mutex_unlock(&policy_lock);
    return (p);
}

void    policy_release(struct dkim_policy **pp)
{
    struct dkim_policy *p = *pp;
    int     last;

    *pp = NULL;
    if (p == NULL)
	return;
    pthread_mutex_lock(&policy_lock);
    last = --p->refcount == 0;
    pthread_mutex_unlock(&policy_lock);
    if (last)
	policy_free(p);
}
