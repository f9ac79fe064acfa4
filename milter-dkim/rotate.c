/*
 * NAME
 *	rotate 3
 * SUMMARY
 *	milter-dkim-keygen rotate: the next key, its activation, the old one's retirement
 * SYNOPSIS
 *	milter-dkim-keygen rotate -d DOMAIN [-t rsa|ed25519] [-b BITS] [-s SELECTOR]
 *		[-D DIR] [-c CONFIG]
 *	milter-dkim-keygen rotate --activate -d DOMAIN [-t TYPE] [-c CONFIG] [-p PIDFILE]
 *	milter-dkim-keygen rotate --retire -d DOMAIN [-t TYPE] [-g GRACE] [-c CONFIG]
 *		[-p PIDFILE]
 * DESCRIPTION
 *	The state of a rotation lives in the KeyTable itself, as a
 *	comment at the end of a row (the milter ignores comments):
 *
 *	name domain:selector:/path	# rotate: pending since 2026-11-30T13:40:00Z
 *	name domain:selector:/path	# rotate: retiring since 2026-12-01T09:00:00Z
 *
 *	rotate makes a key for DOMAIN (type -t, default rsa) under the
 *	dated selector TYPE-YYYYMMDD (-2, -3 ... if taken), in the
 *	directory of the key that signs for DOMAIN now (or -D), owned
 *	like it, appends its row marked pending and prints the TXT
 *	record. A second pending key of the same domain and type is
 *	refused.
 *
 *	--activate checks each pending key of DOMAIN in DNS (dnscheck(3))
 *	and, only if every one is published and matching, replaces in
 *	the SigningTable every key of DOMAIN with the same type by it,
 *	marks the replaced rows retiring, and sends SIGHUP to the
 *	milter (-p, else pid_file of the configuration).
 *
 *	--retire removes the retiring rows of DOMAIN once the grace
 *	period (-g, default 7d) since their activation has passed, and
 *	names the TXT records that may go. The key files are left.
 *
 *	Each run holds tabfile_lock() from reading the tables to writing
 *	them, so concurrent runs serialize; the tables are replaced
 *	atomically (tabfile_replace()), the SigningTable first, and are
 *	parsed again before they are written.
 * DIAGNOSTICS
 *	Exit status 0 on success; 1 with a message on stderr; nothing is
 *	written when a check fails.
 */

#include "build_config.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <libgen.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "daemon.h"
#include "dnscheck.h"
#include "dnskey.h"
#include "keys.h"
#include "msg.h"
#include "policy.h"
#include "rotate.h"
#include "tabfile.h"
#include "xalloc.h"

#ifndef SYSCONFDIR
#define SYSCONFDIR "/etc"
#endif

enum { ROTATE_NEW, ROTATE_ACTIVATE, ROTATE_RETIRE };

#define ROTATE_MARK	"# rotate: "

struct rotate {
    const char *config_path, *domain_arg, *dir, *selector, *pidfile;
    char   *domain;				/* lower case, no trailing dot */
    int     mode, type, bits;			/* type -1: every type */
    long long grace;				/* seconds */
    struct config *cfg;
    const char *key_path, *sign_path;
    struct tabfile_lines keys, signs;
    struct tables t;
    struct dnskey *key;				/* parallel to t.key, lazily */
    const char **key_err;
    int     lock_fd;
    time_t  now;
};

/* Markers. */

static char *rotate_time(time_t when)
{
    struct tm tm;
    char    buf[32];

    gmtime_r(&when, &tm);
    strftime(buf, sizeof(buf), "%Y-%m-%dT%H:%M:%SZ", &tm);
    return (xstrdup(buf));
}

/* rotate_marker - is the row marked "state"? Its time goes to *when. */

static int rotate_marker(const char *line, const char *state, time_t *when)
{
    const char *m = strstr(line, ROTATE_MARK);
    struct tm tm;
    const char *end;
    size_t  slen = strlen(state);

    if (m == NULL || strncmp(m += strlen(ROTATE_MARK), state, slen) != 0
	|| strncmp(m += slen, " since ", 7) != 0)
	return (0);
    memset(&tm, 0, sizeof(tm));
    if ((end = strptime(m + 7, "%Y-%m-%dT%H:%M:%SZ", &tm)) == NULL)
	*when = 0;				/* a hand-edited time: long ago */
    else
	*when = timegm(&tm);
    return (1);
}

/* rotate_mark - the row with its marker replaced (state NULL: removed); a CR kept */

static char *rotate_mark(const char *line, const char *state, time_t when)
{
    const char *m = strstr(line, ROTATE_MARK);
    size_t  len = m ? (size_t) (m - line) : strlen(line);
    int     cr = *line && line[strlen(line) - 1] == '\r';
    char   *stamp, *out;

    while (len > 0 && isspace((unsigned char) line[len - 1]))
	len--;
    if (state == NULL)
	return (xasprintf("%.*s%s", (int) len, line, cr ? "\r" : ""));
    stamp = rotate_time(when);
    out = xasprintf("%.*s\t" ROTATE_MARK "%s since %s%s", (int) len, line, state, stamp,
		    cr ? "\r" : "");
    free(stamp);
    return (out);
}

/* Tables. */

static int rotate_domain_is(const struct key_entry *k, const char *domain)
{
    size_t  len = strlen(k->domain);

    if (len > 0 && k->domain[len - 1] == '.')
	len--;
    return (len == strlen(domain) && strncasecmp(k->domain, domain, len) == 0);
}

/* rotate_key - the key of row i (type, public half), loaded once */

static const struct dnskey *rotate_key(struct rotate *r, int i)
{
    if (r->key[i].pkey == NULL && r->key_err[i] == NULL)
	r->key_err[i] = dnskey_load(r->t.key[i].path, r->key + i);
    return (r->key_err[i] ? NULL : r->key + i);
}

static int rotate_type(struct rotate *r, int i)
{
    const struct dnskey *k = rotate_key(r, i);

    return (k ? k->type : -1);
}

static int rotate_in_use(const struct tables *t, const char *name)
{
    for (int i = 0; i < t->sign_count; i++)
	for (char **k = t->sign[i].keys; *k; k++)
	    if (strcmp(*k, name) == 0)
		return (1);
    return (0);
}

static char *rotate_read(const char *path, struct tabfile_lines *l)
{
    const char *err;
    char   *text;

    if ((err = tabfile_read(path, &text)) != NULL)
	msg_fatal("%s", err);
    tabfile_split(text, l);
    return (text);
}

static void rotate_load(struct rotate *r)
{
    const char *err, *value;
    char   *ktext, *stext;

    r->cfg = config_read(r->config_path, policy_specs);
    if (r->cfg->error_count) {
	config_print_errors(r->cfg);
	exit(1);
    }
    if ((value = config_get_str(r->cfg, "key_table")) == NULL
	|| config_get_str(r->cfg, "signing_table") == NULL)
	msg_fatal("%s: key_table and signing_table must be set", r->config_path);
    r->key_path = tables_strip_prefix(value);
    r->sign_path = tables_strip_prefix(config_get_str(r->cfg, "signing_table"));
    if ((err = tabfile_lock(r->key_path, &r->lock_fd)) != NULL)
	msg_fatal("%s", err);
    ktext = rotate_read(r->key_path, &r->keys);
    stext = rotate_read(r->sign_path, &r->signs);
    tables_parse_keys(&r->t, r->cfg, r->key_path, ktext);
    tables_parse_signing(&r->t, r->cfg, r->sign_path, stext);
    free(ktext);
    free(stext);
    if (r->cfg->error_count) {
	config_print_errors(r->cfg);
	msg_fatal("the tables have errors: fix them first (nothing changed)");
    }
    r->key = xcalloc(r->t.key_count + 1, sizeof(*r->key));
    r->key_err = xcalloc(r->t.key_count + 1, sizeof(*r->key_err));
}

/* rotate_write - parse the new texts again, then replace the files */

static const char *rotate_write(struct rotate *r, int keys, int signs)
{
    static char buf[1024];
    char   *ktext = tabfile_join(&r->keys), *stext = tabfile_join(&r->signs);
    struct tables t;
    const char *err = NULL;

    memset(&t, 0, sizeof(t));
    tables_parse_keys(&t, r->cfg, r->key_path, ktext);
    tables_parse_signing(&t, r->cfg, r->sign_path, stext);
    tables_free(&t);
    if (r->cfg->error_count) {
	config_print_errors(r->cfg);
	err = "internal error: the new tables do not parse (nothing changed)";
    } else if (signs && (err = tabfile_replace(r->sign_path, stext)) != NULL) {
	snprintf(buf, sizeof(buf), "%s (nothing changed)", err);
	err = buf;
    } else if (keys && (err = tabfile_replace(r->key_path, ktext)) != NULL) {
	snprintf(buf, sizeof(buf), "%s%s", err, signs ? " (the SigningTable was written and "
		 "signs with the new key: run --activate again, then reload milter-dkim)"
		 : " (nothing changed)");
	err = buf;
    }
    free(ktext);
    free(stext);
    return (err);
}

/* rotate_pid_file - -p, else pid_file of the configuration, or NULL */

static const char *rotate_pid_file(struct rotate *r)
{
    return (r->pidfile ? r->pidfile : config_get_str(r->cfg, "pid_file"));
}

/* rotate_hup - SIGHUP to the milter, or say how to reload */

static int rotate_hup(struct rotate *r, const char *why)
{
    const char *path = rotate_pid_file(r), *none;
    long    pid;

    if (path == NULL) {
	printf("reload milter-dkim now so that %s: systemctl reload milter-dkim, "
	       "or kill -HUP its process\n", why);
	return (0);
    }
    if ((pid = rotate_milter_pid(path, &none)) == 0) {
	msg_error("%s; not signalled; the tables are written: reload milter-dkim by hand "
		  "so that %s", none, why);
	return (1);
    }
    if (kill((pid_t) pid, SIGHUP) != 0) {
	msg_error("kill -HUP %ld (%s): %m; the tables are written: reload milter-dkim "
		  "by hand so that %s", pid, path, why);
	return (1);
    }
    printf("sent SIGHUP to milter-dkim (pid %ld) so that %s; its log says "
	   "\"configuration reloaded\" or why not\n", pid, why);
    return (0);
}

/* rotate_selector - TYPE-YYYYMMDD, or with -2, -3 ... when taken */

static char *rotate_selector(struct rotate *r, const char *dir)
{
    char    date[16], *sel, *path;
    struct tm tm;
    struct stat st;

    gmtime_r(&r->now, &tm);
    strftime(date, sizeof(date), "%Y%m%d", &tm);
    for (int n = 1; n < 1000; n++) {
	int     taken = 0;

	sel = r->selector ? xstrdup(r->selector) : n == 1
	    ? xasprintf("%s-%s", dnskey_type_name(r->type), date)
	    : xasprintf("%s-%s-%d", dnskey_type_name(r->type), date, n);
	for (int i = 0; i < r->t.key_count; i++)
	    taken |= rotate_domain_is(r->t.key + i, r->domain)
		&& strcasecmp(r->t.key[i].selector, sel) == 0;
	/* lstat, not access: a dangling link is a name O_EXCL refuses too */
	path = xasprintf("%s/%s.private", dir, sel);
	taken |= lstat(path, &st) == 0 || errno != ENOENT;
	free(path);
	path = xasprintf("%s/%s.txt", dir, sel);
	taken |= lstat(path, &st) == 0 || errno != ENOENT;
	free(path);
	if (!taken)
	    return (sel);
	if (r->selector)
	    msg_fatal("selector %s of %s is taken (KeyTable or %s)", sel, r->domain, dir);
	free(sel);
    }
    msg_fatal("no free selector for %s today", r->domain);
}

/* rotate_reference - the row the new key takes its directory and owner from */

static int rotate_reference(struct rotate *r)
{
    int     best = -1;

    for (int i = 0; i < r->t.key_count; i++) {
	time_t  when;

	if (!rotate_domain_is(r->t.key + i, r->domain))
	    continue;
	if (rotate_type(r, i) == r->type
	    && rotate_marker(r->keys.line[r->t.key[i].line - 1], "pending", &when))
	    msg_fatal("%s: %s (%s) is pending since %s: publish its TXT record and run "
		      "rotate --activate, or delete its row (nothing changed)", r->key_path,
		      r->t.key[i].name, dnskey_type_name(r->type), rotate_time(when));
	if (best < 0 || (rotate_in_use(&r->t, r->t.key[i].name)
			 && rotate_type(r, i) == r->type))
	    best = i;
    }
    return (best);
}

static int rotate_new(struct rotate *r)
{
    int     ref = rotate_reference(r);
    char   *dir, *sel, *record, *name, *row, *stamp, *path;
    uid_t   uid = (uid_t) -1;
    gid_t   gid = (gid_t) -1;
    int     group_reads = 0;
    struct stat st;
    const char *err;

    if (r->dir)
	dir = xstrdup(r->dir);
    else if (ref >= 0)
	dir = xstrdup(dirname(path = xstrdup(r->t.key[ref].path))), free(path);
    else
	msg_fatal("%s has no key for %s yet: give the key directory with -D",
		  r->key_path, r->domain);
    /* readable by the milter's user as the current key is: its owner,
       or its group (0440 root:mxkit, a container's fsGroup) */
    if (ref >= 0 && stat(r->t.key[ref].path, &st) == 0) {
	uid = st.st_uid, gid = st.st_gid;
	group_reads = (st.st_mode & S_IRGRP) != 0;
    }
    sel = rotate_selector(r, dir);
    name = xasprintf("%s._domainkey.%s", sel, r->domain);
    if (tables_find_key(&r->t, name))
	msg_fatal("%s: key name %s is taken (nothing changed)", r->key_path, name);
    if ((err = keygen_files(r->domain, sel, r->type == DNSKEY_ED25519, r->bits, dir, uid,
			    gid, group_reads, &record)) != NULL)
	msg_fatal("%s", err);
    stamp = rotate_time(r->now);
    row = xasprintf("%s %s:%s:%s/%s.private\t" ROTATE_MARK "pending since %s", name,
		    r->domain, sel, dir, sel, stamp);
    tabfile_append(&r->keys, row);
    if ((err = rotate_write(r, 1, 0)) != NULL) {
	path = xasprintf("%s/%s.private", dir, sel);
	unlink(path);
	free(path);
	path = xasprintf("%s/%s.txt", dir, sel);
	unlink(path);
	msg_fatal("%s; the new key files are removed", err);
    }
    printf("%s: added %s (%s, not signing yet)\n"
	   "publish this TXT record, then run: milter-dkim-keygen rotate --activate -d %s\n"
	   "%s", r->key_path, name, dnskey_type_name(r->type), r->domain, record);
    free(row);
    free(stamp);
    free(name);
    free(record);
    free(sel);
    free(dir);
    return (0);
}

/* rotate_replace - the SigningTable row with key "from" named "to" */

static char *rotate_replace(const char *line, const char *from, const char *to)
{
    size_t  flen = strlen(from), len = strlen(line), at;
    char   *out = xmalloc(len + strlen(to) * (len / (flen ? flen : 1) + 1) + 1), *o = out;
    const char *p = line;

    at = strspn(p, " \t");			/* the pattern stays as it is */
    at += strcspn(p + at, " \t");
    memcpy(o, p, at);
    o += at;
    p += at;
    while (*p && *p != '#') {
	size_t  tok = strcspn(p, ", \t\r#");

	if (tok == 0) {
	    *o++ = *p++;
	} else {
	    if (tok == flen && strncmp(p, from, flen) == 0)
		o = stpcpy(o, to);
	    else
		o = stpncpy(o, p, tok);
	    p += tok;
	}
    }
    strcpy(o, p);
    return (out);
}

/* rotate_switch - make pending row n sign instead of its domain's keys of its type */

static int rotate_switch(struct rotate *r, int n, char *replaced)
{
    const struct key_entry *pk = r->t.key + n;
    int     count = 0, type = rotate_type(r, n);

    for (int s = 0; s < r->t.sign_count; s++) {
	const struct signing_entry *se = r->t.sign + s;
	int     in_row = 0;

	for (char **k = se->keys; *k; k++) {
	    const struct key_entry *ke = tables_find_key(&r->t, *k);
	    int     i = (int) (ke - r->t.key);

	    if (ke == pk || !rotate_domain_is(ke, r->domain) || rotate_type(r, i) != type)
		continue;
	    if (in_row++)
		msg_fatal("%s:%d: two %s keys of %s in one row: edit it by hand",
			  r->sign_path, se->line, dnskey_type_name(type), r->domain);
	    tabfile_set(&r->signs, se->line, rotate_replace(r->signs.line[se->line - 1],
							  ke->name, pk->name));
	    replaced[i] = 1;
	    count++;
	}
    }
    if (count == 0 && rotate_in_use(&r->t, pk->name)) {
	printf("%s: %s signs already (an interrupted --activate, or an edit by hand); "
	       "marking the unused keys of %s of its type retiring\n", r->sign_path, pk->name,
	       r->domain);
	for (int i = 0; i < r->t.key_count; i++) {
	    time_t  when;
	    const char *line = r->keys.line[r->t.key[i].line - 1];

	    if (i != n && rotate_domain_is(r->t.key + i, r->domain)
		&& rotate_type(r, i) == type && !rotate_in_use(&r->t, r->t.key[i].name)
		&& !rotate_marker(line, "pending", &when)
		&& !rotate_marker(line, "retiring", &when))
		replaced[i] = 1;
	}
    } else if (count == 0) {
	msg_fatal("%s: no row signs %s with an %s key to replace by %s: add it to a row "
		  "by hand (nothing changed)", r->sign_path, r->domain, dnskey_type_name(type),
		  pk->name);
    }
    tabfile_set(&r->keys, pk->line, rotate_mark(r->keys.line[pk->line - 1], NULL, 0));
    return (count);
}

/* rotate_pending - the pending rows of the domain (and type), each checked */

static int rotate_pending(struct rotate *r, int *rows)
{
    int     n = 0, bad = 0;
    char    why[512];
    time_t  when;
    struct dnscheck *check;
    const char *err;

    if ((check = dnscheck_open(r->cfg, &err)) == NULL)
	msg_fatal("DNS: %s (nothing changed)", err);

    for (int i = 0; i < r->t.key_count; i++) {
	const struct key_entry *k = r->t.key + i;
	const struct dnskey *key;
	int     status;

	if (!rotate_domain_is(k, r->domain)
	    || !rotate_marker(r->keys.line[k->line - 1], "pending", &when))
	    continue;
	if ((key = rotate_key(r, i)) == NULL)
	    msg_fatal("%s:%d: %s: %s", r->key_path, k->line, k->path, r->key_err[i]);
	if (r->type >= 0 && key->type != r->type)
	    continue;
	status = dnscheck_row(check, k->domain, k->selector, key, why, sizeof(why));
	printf("%s:%d: %s: %s (%s)%s%s\n", r->key_path, k->line, dnscheck_label(k),
	       dnskey_status_text(status), dnskey_type_name(key->type), why[0] ? ": " : "",
	       why);
	bad += status != DNSKEY_OK;
	if ((err = rotate_milter_reads(config_get_str(r->cfg, "user"), rotate_pid_file(r),
				       k->path)) != NULL) {
	    printf("%s:%d: %s: %s: chown or chmod it\n", r->key_path, k->line, k->name, err);
	    bad++;
	}
	rows[n++] = i;
    }
    dnscheck_close(&check);
    if (n == 0)
	msg_fatal("%s: no pending key for %s%s%s: run milter-dkim-keygen rotate -d %s first",
		  r->key_path, r->domain, r->type >= 0 ? " of type " : "",
		  r->type >= 0 ? dnskey_type_name(r->type) : "", r->domain);
    if (bad)
	msg_fatal("not activated: %d problem%s with the %d pending key%s of %s (above); "
		  "fix and try again (nothing changed)", bad, bad > 1 ? "s" : "", n,
		  n > 1 ? "s" : "", r->domain);
    return (n);
}

static int rotate_activate(struct rotate *r)
{
    int    *rows = xcalloc(r->t.key_count + 1, sizeof(int)), n = rotate_pending(r, rows);
    char   *replaced = xcalloc(r->t.key_count + 1, 1), *until, *why;
    const char *err;

    for (int i = 0; i < n; i++)
	rotate_switch(r, rows[i], replaced);
    until = rotate_time(r->now + r->grace);
    for (int i = 0; i < r->t.key_count; i++) {
	if (!replaced[i])
	    continue;
	printf("%s: %s stops signing for %s; keep the TXT record %s._domainkey.%s published "
	       "until at least %s, then run milter-dkim-keygen rotate --retire -d %s\n",
	       r->sign_path, r->t.key[i].name, r->domain, r->t.key[i].selector,
	       r->t.key[i].domain, until, r->domain);
	tabfile_set(&r->keys, r->t.key[i].line,	/* no row uses it any more */
		  rotate_mark(r->keys.line[r->t.key[i].line - 1], "retiring", r->now));
    }
    if ((err = rotate_write(r, 1, 1)) != NULL)
	msg_fatal("%s", err);
    for (int i = 0; i < n; i++)
	printf("%s: %s signs for %s now\n", r->sign_path, r->t.key[rows[i]].name, r->domain);
    why = xasprintf("it signs with the new key%s", n > 1 ? "s" : "");
    n = rotate_hup(r, why);
    free(why);
    free(until);
    free(rows);
    free(replaced);
    return (n);
}

static int rotate_retire(struct rotate *r)
{
    int     n = 0;
    time_t  when;
    const char *err;

    for (int i = 0; i < r->t.key_count; i++) {
	const struct key_entry *k = r->t.key + i;
	char   *since, *until;

	if (!rotate_domain_is(k, r->domain)
	    || !rotate_marker(r->keys.line[k->line - 1], "retiring", &when)
	    || (r->type >= 0 && rotate_type(r, i) != r->type))
	    continue;
	if (rotate_in_use(&r->t, k->name))
	    msg_fatal("%s: %s is marked retiring but %s uses it again: remove the marker "
		      "or the SigningTable row (nothing changed)", r->key_path, k->name,
		      r->sign_path);
	since = rotate_time(when);
	until = rotate_time(when + r->grace);
	if (r->now < when + r->grace)
	    msg_fatal("%s stopped signing at %s: its TXT record must stay published until %s "
		      "(mail in queues, verifiers reading later); retire it then, or give "
		      "-g with a shorter grace period (nothing changed)", k->name, since, until);
	printf("%s: retired %s; the TXT record %s._domainkey.%s may be removed now; "
	       "the key file %s is no longer used\n", r->key_path, k->name, k->selector,
	       k->domain, k->path);
	free(since);
	free(until);
	tabfile_set(&r->keys, k->line, NULL);
	n++;
    }
    if (n == 0)
	msg_fatal("%s: no retiring key of %s (rotate --activate marks them)", r->key_path,
		  r->domain);
    if ((err = rotate_write(r, 1, 0)) != NULL)
	msg_fatal("%s", err);
    return (r->pidfile || config_get_str(r->cfg, "pid_file") ?
	    rotate_hup(r, "it forgets the retired key") : 0);
}

static void rotate_usage(void)
{
    fprintf(stderr, "usage: milter-dkim-keygen rotate -d DOMAIN [-t rsa|ed25519] [-b BITS] "
	    "[-s SELECTOR] [-D DIR] [-c CONFIG]\n"
	    "       milter-dkim-keygen rotate --activate -d DOMAIN [-t TYPE] [-c CONFIG] "
	    "[-p PIDFILE]\n"
	    "       milter-dkim-keygen rotate --retire -d DOMAIN [-t TYPE] [-g GRACE] "
	    "[-c CONFIG] [-p PIDFILE]\n");
    exit(2);
}

static void rotate_options(struct rotate *r, int argc, char **argv)
{
    static const struct option longopts[] = {
	{"activate", no_argument, NULL, 'A'},
	{"retire", no_argument, NULL, 'R'},
	{"grace", required_argument, NULL, 'g'},
	{0},
    };
    const char *err, *type = NULL;
    long long ms;
    int     ch;

    while ((ch = getopt_long(argc, argv, "b:c:d:D:g:p:s:t:", longopts, NULL)) > 0) {
	switch (ch) {
	case 'A':
	case 'R':
	    if (r->mode != ROTATE_NEW)
		rotate_usage();
	    r->mode = ch == 'A' ? ROTATE_ACTIVATE : ROTATE_RETIRE;
	    break;
	case 'b':
	    if ((r->bits = keygen_bits(optarg)) == 0)
		msg_fatal("-b %s: not a whole number of bits", optarg);
	    break;
	case 'c':
	    r->config_path = optarg;
	    break;
	case 'd':
	    r->domain_arg = optarg;
	    break;
	case 'D':
	    r->dir = optarg;
	    break;
	case 'g':				/* "7" is 7 seconds to config(3) */
	    if (optarg[strspn(optarg, "0123456789")] == 0 && strspn(optarg, "0") != strlen(optarg))
		msg_fatal("-g %s: give a unit (7d, 36h)", optarg);
	    if ((err = config_parse_duration(optarg, &ms)) != NULL || ms < 0)
		msg_fatal("-g %s: %s", optarg, err ? err : "negative");
	    r->grace = ms / 1000;
	    break;
	case 'p':
	    r->pidfile = optarg;
	    break;
	case 's':
	    r->selector = optarg;
	    break;
	case 't':
	    type = optarg;
	    break;
	default:
	    rotate_usage();
	}
    }
    if (r->domain_arg == NULL || optind != argc)
	rotate_usage();
    if (type && strcmp(type, "rsa") != 0 && strcmp(type, "ed25519") != 0)
	rotate_usage();
    r->type = type ? (strcmp(type, "rsa") == 0 ? DNSKEY_RSA : DNSKEY_ED25519)
	: r->mode == ROTATE_NEW ? DNSKEY_RSA : -1;
}

/* rotate_name_ok - a domain or selector: DNS labels, nothing a table would misread */

static int rotate_name_ok(const char *name)
{
    if (*name == 0 || *name == '.' || *name == '-' || strlen(name) > 253 || strstr(name, ".."))
	return (0);
    for (const char *c = name; *c; c++)
	if (!isalnum((unsigned char) *c) && *c != '-' && *c != '.' && *c != '_')
	    return (0);
    return (1);
}

int     rotate_main(int argc, char **argv)
{
    struct rotate r;
    size_t  len;
    int     status;

    setvbuf(stdout, NULL, _IOLBF, 0);		/* in order with msg_fatal() on stderr */
    memset(&r, 0, sizeof(r));
    r.config_path = SYSCONFDIR "/mxkit/milter-dkim.conf";
    r.bits = 2048;
    r.grace = 7 * 86400;
    r.lock_fd = -1;
    r.now = time(NULL);
    rotate_options(&r, argc, argv);
    r.domain = xstrdup(r.domain_arg);
    for (char *c = r.domain; *c; c++)
	*c = tolower((unsigned char) *c);
    if ((len = strlen(r.domain)) > 1 && r.domain[len - 1] == '.')
	r.domain[len - 1] = 0;
    if (!rotate_name_ok(r.domain))
	msg_fatal("-d %s: not a domain name (an internationalized one goes as its "
		  "A-labels, xn--...)", r.domain_arg);
    if (r.selector && !rotate_name_ok(r.selector))
	msg_fatal("-s %s: not a selector (letters, digits, '-', '_', '.')", r.selector);
    if (r.mode == ROTATE_NEW && r.type == DNSKEY_RSA
	&& (r.bits < 1024 || r.bits > KEYS_RSA_MAX_BITS))
	msg_fatal("-b %d: RSA keys must have 1024 to %d bits (2048 recommended; for a "
		  "larger key %s)", r.bits, KEYS_RSA_MAX_BITS, KEYS_RSA_MAX_WHY);
    rotate_load(&r);
    status = r.mode == ROTATE_NEW ? rotate_new(&r) : r.mode == ROTATE_ACTIVATE
	? rotate_activate(&r) : rotate_retire(&r);
    for (int i = 0; i < r.t.key_count; i++)
	dnskey_free(r.key + i);
    free(r.key);
    free(r.key_err);
    tables_free(&r.t);
    tabfile_lines_free(&r.keys);
    tabfile_lines_free(&r.signs);
    config_free(&r.cfg);
    free(r.domain);
    close(r.lock_fd);				/* releases the lock */
    return (status);
}
