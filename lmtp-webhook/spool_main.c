/*
 * NAME
 *	lmtp-webhook-spool 8
 * SUMMARY
 *	deliver, inspect and manage spooled webhook events
 * SYNOPSIS
 *	lmtp-webhook-spool [-c config_file] [-f] [-t] [-V] command [id]
 * DESCRIPTION
 *	Commands, in the manner of postqueue(1) and postsuper(1):
 *	run (the delivery daemon, see runner.c), list, show ID, flush
 *	(deliver everything now: asks a running daemon, or does one pass
 *	itself), retry ID (due now; a dead event comes back, with a new
 *	dead_letter_after window), drop ID.
 * DIAGNOSTICS
 *	Errors on stderr (and syslog for run); exit status 1 on error.
 */

#include "build_config.h"

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <time.h>
#include <unistd.h>

#include <curl/curl.h>
#include <jansson.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include "daemon.h"
#include "msg.h"
#include "sign.h"
#include "xalloc.h"
#include "spool.h"
#include "spool_tool.h"

#ifndef SYSCONFDIR
#define SYSCONFDIR "/etc"
#endif

static const struct config_spec tool_specs[] = {
    /* CONFIG_RESTART: read once, at start: a reload says they changed */
    {"spool_dir", CONFIG_STRING, "/var/spool/lmtp-webhook", CONFIG_RESTART},
    {"secret_file", CONFIG_STRING, NULL, 0},
    {"ca_file", CONFIG_STRING, NULL, 0},
    {"timeout", CONFIG_DURATION, "10s", 0},
    {"concurrency", CONFIG_INT, "32", 0},
    {"dead_letter_after", CONFIG_DURATION, "3d", 0},
    DAEMON_CONFIG_SPECS,
    {0},
};

/*
 * tool_dir_reach - as "user" (daemon_as_user()): spool_dir usable, or,
 * not made yet, its parent one can pass through. The mode bits of
 * spool_dir alone said yes to a spool under /root (0700) for user =
 * vmail: every event then failed.
 */
static const char *tool_dir_reach(void *context)
{
    static char why[300];
    const char *dir = context;
    char   *parent;
    int     ok;

    if (access(dir, F_OK) == 0 || errno != ENOENT)
	ok = access(dir, R_OK | W_OK | X_OK) == 0;
    else {
	parent = xdirname(dir);
	ok = access(parent, X_OK) == 0;
	free(parent);
    }
    if (ok)
	return (NULL);
    snprintf(why, sizeof(why), "%s", strerror(errno));
    return (why);
}

static void tool_check_reach(struct spool_tool *tool, const char *user, int line)
{
    const char *err;

    if (user && (err = daemon_as_user(user, tool_dir_reach, (void *) tool->dir)) != NULL)
	config_add_error(tool->cfg, line, "spool_dir %s: user %s cannot reach it (%s): every "
			 "directory above it must let the user pass (x)", tool->dir, user, err);
}

/*
 * tool_check_dir - spool_dir as spool_init() will make it (one level:
 * its parent must exist) and as "user" will write it: a file there, a
 * missing parent or a root-only spool for user = nobody passed -t and
 * the runner then died, or ran and could write nothing.
 */
/*
 * tool_check_writes - can the start write dir (make spool_dir in it, or
 * tmp/ and the lock in spool_dir)? Not root (a container's own user):
 * as this user; root: only a read-only mount stops it. 0, or -1 with
 * the error added.
 */
static int tool_check_writes(struct spool_tool *tool, const char *dir, const char *what)
{
    if (!daemon_config_as_start()
	|| faccessat(AT_FDCWD, dir, W_OK | X_OK, AT_EACCESS) == 0
	|| (geteuid() == 0 && errno != EROFS))
	return (0);
    config_add_error(tool->cfg, config_line(tool->cfg, "spool_dir"), "spool_dir %s: this "
		     "user (uid %ld) cannot %s %s: %s", tool->dir, (long) geteuid(), what, dir,
		     strerror(errno));
    return (-1);
}

/* tool_check_lock - runner.lock, if there, a regular file (run would die) */

static void tool_check_lock(struct spool_tool *tool)
{
    char   *path = spool_path(tool->dir, "runner.lock", NULL);
    struct stat st;

    if (lstat(path, &st) == 0 && !S_ISREG(st.st_mode))
	config_add_error(tool->cfg, config_line(tool->cfg, "spool_dir"), "spool_dir %s: %s "
			 "is %s: remove it", tool->dir, path, S_ISLNK(st.st_mode)
			 ? "a symbolic link" : "not a regular file");
    free(path);
}

static void tool_check_dir(struct spool_tool *tool)
{
    int     line = config_line(tool->cfg, "spool_dir");
    const char *user = config_get_str(tool->cfg, "user");
    struct stat st;
    char   *parent;

    if (*tool->dir != '/') {
	config_add_error(tool->cfg, line, "spool_dir: \"%s\" is not an absolute path", tool->dir);
	return;
    }
    if (stat(tool->dir, &st) < 0) {
	parent = xdirname(tool->dir);
	if (errno != ENOENT || stat(parent, &st) < 0 || !S_ISDIR(st.st_mode))
	    config_add_error(tool->cfg, line, "spool_dir %s: %s", tool->dir, errno != ENOENT
			     ? strerror(errno) : "neither it nor its parent directory exists");
	else if (tool_check_writes(tool, parent, "make it in") == 0)
	    tool_check_reach(tool, user, line);
	free(parent);
	return;
    }
    if (!S_ISDIR(st.st_mode)) {
	config_add_error(tool->cfg, line, "spool_dir %s is not a directory", tool->dir);
	return;
    }
    tool_check_lock(tool);
    if (tool_check_writes(tool, tool->dir, "write") < 0)
	return;
    if (daemon_config_user_cannot_write(tool->cfg, &st))
	config_add_error(tool->cfg, line, "spool_dir %s: user %s cannot write it (owner uid %ld, "
			 "mode %04o): chown it to the user Dovecot delivers as", tool->dir, user,
			 (long) st.st_uid, (unsigned) (st.st_mode & 07777));
    else
	tool_check_reach(tool, user, line);
}

/*
 * tool_check_secret - the global secret, read as the runner will: not an
 * error (a Secret mounted after the start is read when it comes, and
 * events wait meanwhile), but said, so that -t does not say only "OK".
 * With "user", the daemon reads it at every scan as that user, root no
 * more: a file root alone can read (root:root 0600) passed -t, and the
 * daemon posted nothing, ever. That is an error.
 */
static void tool_check_secret(struct spool_tool *tool)
{
    const char *user = config_get_str(tool->cfg, "user");
    struct webhook_key key;
    const char *err, *weak;
    struct stat st;
    const char *denied;
    int     stat_ok, exists;

    err = sign_key_load(tool->secret_file, &key);
    if (err == NULL && (weak = sign_key_weak(&key)) != NULL)
	msg_warn("secret_file %s: %s", tool->secret_file, weak);
    OPENSSL_cleanse(&key, sizeof(key));
    /* a file the user cannot read is an error also when the reload (the
       user by then) is what cannot read it: the reload took it, and a
       working secret was swapped for one never read */
    stat_ok = stat(tool->secret_file, &st) == 0;
    exists = stat_ok || errno != ENOENT;
    if (user != NULL && exists
	&& (denied = spool_owner_user_reads(user, tool->secret_file)) != NULL) {
	config_add_error(tool->cfg, config_line(tool->cfg, "secret_file"),
			 "secret_file %s: user %s cannot read it (%s): the daemon runs as "
			 "%s and reads it at every scan, not as root; make it readable by "
			 "that user's group (chown root:GROUP, chmod 0640)", tool->secret_file,
			 user, denied, user);
	return;
    }
    if (err != NULL)
	msg_warn("secret_file: %s; nothing is posted until it can be read", err);
    /* said, not refused: a running setup must not stop posting at an
       upgrade; whoever reads it can forge every route's events */
    if (err == NULL && stat_ok && (st.st_mode & S_IROTH))
	msg_warn("secret_file %s is readable by every user (mode %04o): whoever reads it "
		 "can sign events the receivers accept; chmod o-r (0640, group of the "
		 "daemon's user)", tool->secret_file, (unsigned) (st.st_mode & 07777));
}

/*
 * tool_check_ca - ca_file as libcurl will read it at every HTTPS post:
 * an absolute path (the daemon's working directory is not the
 * operator's), a file, readable by the daemon's user, holding at least
 * one PEM certificate (OpenSSL's reader). None of this was checked: a
 * missing file, a relative path, a directory or a file of anything else
 * passed -t and the start, and every HTTPS attempt then failed.
 */
static void tool_check_ca(struct spool_tool *tool)
{
    int     line = config_line(tool->cfg, "ca_file"), certs = 0;
    const char *denied;
    const char *user = config_get_str(tool->cfg, "user"), *path = tool->ca_file;
    struct stat st;
    X509   *cert;
    FILE   *fp;

    if (*path != '/') {
	config_add_error(tool->cfg, line, "ca_file: \"%s\" is not an absolute path", path);
	return;
    }
    if (stat(path, &st) < 0) {
	config_add_error(tool->cfg, line, "ca_file %s: %s", path, strerror(errno));
	return;
    }
    if (!S_ISREG(st.st_mode)) {		/* a FIFO would hang the reader */
	config_add_error(tool->cfg, line, "ca_file %s is %s, not a file of PEM certificates",
			 path, S_ISDIR(st.st_mode) ? "a directory" : "no regular file");
	return;
    }
    if ((denied = spool_owner_user_reads(user, path)) != NULL) {
	config_add_error(tool->cfg, line, "ca_file %s: %s%s%s(%s)", path,
			 user ? "user " : "", user ? user : "", user ? " cannot read it " : "",
			 denied);
	return;
    }
    if ((fp = fopen(path, "r")) == NULL) {
	config_add_error(tool->cfg, line, "ca_file %s: %s", path, strerror(errno));
	return;
    }
    while ((cert = PEM_read_X509(fp, NULL, NULL, NULL)) != NULL) {
	X509_free(cert);
	certs++;
    }
    fclose(fp);
    ERR_clear_error();				/* the reader's end of file */
    if (certs == 0)
	config_add_error(tool->cfg, line, "ca_file %s holds no PEM certificate: every HTTPS "
			 "post would fail", path);
}

/*
 * tool_path_shape - printable ASCII, no white space, nothing shaped like a
 * secret: a path, not "PATH SECRET", nor a key that happens to start with
 * '/' (24 base64 characters or more, with a '+' or a final '='), nor one
 * with its whsec_ (followed by 16 base64 characters or more: a secret's
 * body; "/run/secrets/whsec_stripe" is a name, and was refused)
 */
#define TOOL_SECRET_MIN	16			/* base64 after whsec_ */

static int tool_path_shape(const char *path)
{
    int     base64 = 1, sign = 0;
    const char *w;
    size_t  n;

    for (const unsigned char *cp = (const unsigned char *) path; *cp; cp++) {
	if (*cp < 33 || *cp > 126)
	    return (0);
	if (*cp == '+' || (*cp == '=' && (cp[1] == 0 || cp[1] == '=')))
	    sign = 1;
	else if (!isalnum(*cp) && *cp != '/')
	    base64 = 0;
    }
    for (w = path; (w = strstr(w, "whsec_")) != NULL; w += 6) {
	for (n = 0; isalnum((unsigned char) w[6 + n]) || w[6 + n] == '+' || w[6 + n] == '/'; n++)
	     /* void */ ;
	if (n >= TOOL_SECRET_MIN)
	    return (0);
    }
    return (!(base64 && sign && strlen(path) >= 24));
}

/*
 * tool_check_dead_after - dead_letter_after with a unit (or 0, never), and
 * at least TOOL_DEAD_AFTER_MIN. A bare number is seconds, as every
 * duration here; "3" for the default "3d" dead-lettered each event at its
 * first failed attempt, and -t said OK; so did "500ms" or "3s", with a
 * unit: the first retry comes 5 s (up to 6 s) after the first attempt.
 */
#define TOOL_DEAD_AFTER_MIN	10		/* seconds */

static void tool_check_dead_after(struct spool_tool *tool)
{
    const struct config_entry *entry = config_lookup(tool->cfg, "dead_letter_after");
    size_t  len = entry ? strlen(entry->value) : 0;
    long long ms = config_get_duration(tool->cfg, "dead_letter_after");

    if (entry == NULL || ms == 0)		/* 0: never give up */
	return;
    if (len > 0 && isdigit((unsigned char) entry->value[len - 1]))
	config_add_error(tool->cfg, entry->line, "dead_letter_after needs a unit (3d, 72h): "
			 "a bare number is seconds, and the first failed attempt would "
			 "dead-letter the event");
    else if (ms < TOOL_DEAD_AFTER_MIN * 1000)
	config_add_error(tool->cfg, entry->line, "dead_letter_after must be 0 (never) or at "
			 "least %ds: the first retry comes 5 s after the first attempt, and "
			 "the first failed attempt would dead-letter the event",
			 TOOL_DEAD_AFTER_MIN);
}

static void tool_load(struct spool_tool *tool, const char *path)
{
    tool->config_path = path;
    tool->cfg = config_read(path, tool_specs);
    if (tool->cfg->error_count)
	return;
    tool->dir = config_get_str(tool->cfg, "spool_dir");
    tool->secret_file = config_get_str(tool->cfg, "secret_file");
    tool->ca_file = config_get_str(tool->cfg, "ca_file");
    tool->timeout_ms = (long) config_get_duration(tool->cfg, "timeout");
    tool->concurrency = (int) config_get_int(tool->cfg, "concurrency");
    tool->dead_after = config_get_duration(tool->cfg, "dead_letter_after") / 1000;
    daemon_config_check(tool->cfg);
    daemon_config_addresses(tool->cfg, NULL, 0);	/* metrics_listen on port 0 */
    tool_check_dir(tool);
    if (tool->timeout_ms < 1000 || tool->timeout_ms > 3600 * 1000)
	config_add_error(tool->cfg, config_line(tool->cfg, "timeout"),
			 "timeout must be from 1s to 1h (0 would let a receiver that never "
			 "answers hold an attempt for good)");
    if (tool->secret_file == NULL || *tool->secret_file == 0)
	config_add_error(tool->cfg, 0, "secret_file is required");
    else if (*tool->secret_file != '/')		/* the value is not echoed: */
	config_add_error(tool->cfg, config_line(tool->cfg, "secret_file"),
			 "secret_file must be an absolute path (is the secret itself "
			 "written there?)");		/* it may be the secret */
    else if (!tool_path_shape(tool->secret_file))
	/* "/etc/webhook.secret whsec_...", a paste gone wrong: every
	   message naming the path (-t, the daemon's error once a second)
	   printed the secret. Refused, not echoed, as a relative one */
	config_add_error(tool->cfg, config_line(tool->cfg, "secret_file"),
			 "secret_file must be a path, without white space or control "
			 "characters, not shaped like a secret (is the secret written "
			 "there, or after it?)");
    else
	tool_check_secret(tool);
    tool_check_dead_after(tool);
    if (tool->ca_file != NULL && *tool->ca_file)	/* empty: the system's */
	tool_check_ca(tool);
    if (tool->concurrency < 1 || tool->concurrency > 1000)
	config_add_error(tool->cfg, config_line(tool->cfg, "concurrency"),
			 "concurrency must be between 1 and 1000");
}

static int tool_same(const char *a, const char *b)
{
    return (a == b || (a && b && strcmp(a, b) == 0));
}

/*
 * tool_reload_secret - a reload that names another secret_file takes it
 * only when it can be read now: a path whose Secret has not come yet
 * dropped the working one, and nothing was posted until it came. (The
 * same file missing a while, as at a start, is waited for: its events
 * wait meanwhile, none is signed with a secret no longer meant.)
 */
static void tool_reload_secret(const struct spool_tool *tool, struct spool_tool *next)
{
    struct webhook_key key;
    const char *err;

    if (tool_same(tool->secret_file, next->secret_file))
	return;
    err = sign_key_load(next->secret_file, &key);
    OPENSSL_cleanse(&key, sizeof(key));
    if (err != NULL)
	config_add_error(next->cfg, config_line(next->cfg, "secret_file"), "secret_file: "
			 "%s: the new secret_file cannot be read now (the running one is kept "
			 "until it can)", err);
}

/*
 * tool_reload - read the configuration file again (SIGHUP to run): a
 * file with errors changes nothing; otherwise every setting that can
 * change while running is applied (secret_file, ca_file, timeout,
 * concurrency, dead_letter_after) and every changed one that cannot is
 * named in the log and keeps its old value until a restart. *old_cfg_r
 * is the configuration replaced, for the caller to free once nothing
 * points into it. Returns 0, or -1 when nothing changed for an error.
 */
int     tool_reload(struct spool_tool *tool, struct config **old_cfg_r)
{
    struct spool_tool next;
    char    applied[512] = "", restart[256] = "";

    *old_cfg_r = NULL;
    memset(&next, 0, sizeof(next));
    tool_load(&next, tool->config_path);
    if (next.cfg->error_count == 0)
	tool_reload_secret(tool, &next);
    if (next.cfg->error_count) {
	config_print_errors(next.cfg);
	msg_error("reload of %s failed; keeping the previous configuration",
		  tool->config_path);
	config_free(&next.cfg);
	return (-1);
    }
    for (const struct config_spec *sp = tool_specs; sp->name; sp++) {
	char   *list = (sp->flags & CONFIG_RESTART) ? restart : applied;
	size_t  room = (list == restart ? sizeof(restart) : sizeof(applied)) - strlen(list);

	/* restart-only: against the value in effect since the start */
	if ((sp->flags & CONFIG_RESTART) ? daemon_config_unapplied(next.cfg, sp->name)
	    : !tool_same(config_get_str(tool->cfg, sp->name),
			 config_get_str(next.cfg, sp->name)))
	    snprintf(list + strlen(list), room, "%s%s", *list ? ", " : "", sp->name);
    }
    next.dir = tool->dir;		/* restart only: runner.lock is held there */
    next.config_path = tool->config_path;
    next.foreground = tool->foreground;
    *old_cfg_r = tool->cfg;
    *tool = next;
    msg_info("configuration %s reloaded; applied: %s", tool->config_path,
	     *applied ? applied : "no change");
    if (*restart)
	msg_warn("changed in %s but only applied at a restart (old values kept): %s",
		 tool->config_path, restart);
    return (0);
}

/* tool_find - the event's path in active/ or dead/, or NULL */

static char *tool_find(const struct spool_tool *tool, const char *id, const char **where)
{
    static const char *const subdirs[] = {SPOOL_ACTIVE, SPOOL_DEAD};

    if (!spool_id_ok(id))
	msg_fatal("bad event id \"%s\"", id);
    for (int i = 0; i < 2; i++) {
	char   *path = spool_path(tool->dir, subdirs[i], id);

	if (access(path, F_OK) == 0) {
	    *where = subdirs[i];
	    return (path);
	}
	free(path);
    }
    msg_fatal("no event %s in %s", id, tool->dir);
}

static void tool_list_dir(const struct spool_tool *tool, const char *subdir, time_t now)
{
    int     n;
    char  **names = spool_list(tool->dir, subdir, &n);

    for (int i = 0; i < n; i++) {
	char   *path = spool_path(tool->dir, subdir, names[i]);
	struct spool_event ev;
	const char *err;

	if ((err = spool_load(path, &ev)) != NULL) {
	    msg_warn("%s", err);
	} else {
	    int     held = spool_held_now(&ev, path, now);
	    long long next = held ? ev.mtime : ev.next_attempt;

	    printf("%-36s %-6s %8d %8llds %8llds  %s  %s\n", ev.id, held ? "held" : subdir,
		   ev.attempts, (long long) now - ev.created,
		   next > now ? next - now : 0LL, ev.url,
		   ev.last_error ? ev.last_error : "-");
	    spool_event_free(&ev);
	}
	free(path);
    }
    spool_list_free(names, n);
}

static int tool_list(const struct spool_tool *tool)
{
    time_t  now = time(NULL);

    printf("%-36s %-6s %8s %9s %9s  %s  %s\n", "ID", "STATE", "ATTEMPTS", "AGE", "NEXT",
	   "URL", "LAST ERROR");
    tool_list_dir(tool, SPOOL_ACTIVE, now);
    tool_list_dir(tool, SPOOL_DEAD, now);
    return (0);
}

static int tool_show(const struct spool_tool *tool, const char *id)
{
    const char *where;
    char   *path = tool_find(tool, id, &where);
    struct spool_event ev;
    const char *err;
    json_t *body;

    if ((err = spool_load(path, &ev)) != NULL)
	msg_fatal("%s", err);
    if (spool_held_now(&ev, path, time(NULL))) {
	where = "held";				/* its mail being saved */
	ev.next_attempt = ev.mtime > (long long) time(NULL) ? ev.mtime : (long long) time(NULL);
    }
    printf("id: %s\nstate: %s\nurl: %s\ncreated: %lld\nattempts: %d\n"
	   "next_attempt: %lld\nlast_error: %s\n", ev.id, where, ev.url, ev.created,
	   ev.attempts, ev.next_attempt, ev.last_error ? ev.last_error : "-");
    /* which secrets sign it: paths, never a secret */
    printf("secret_files: %s%s%s\n\n", ev.secret_count ? ev.secret_files[0] : "(secret_file)",
	   ev.secret_count > 1 ? " " : "", ev.secret_count > 1 ? ev.secret_files[1] : "");
    if ((body = json_loadb(ev.body, ev.body_len, 0, NULL)) != NULL) {
	json_dumpf(body, stdout, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
	putchar('\n');
	json_decref(body);
    } else {
	fwrite(ev.body, 1, ev.body_len, stdout);
	putchar('\n');
    }
    spool_event_free(&ev);
    free(path);
    return (0);
}

/*
 * tool_holder_here - does process pid, as this command sees pids, hold
 * runner.lock open? The pid in the file is the runner's in its own PID
 * namespace: from another container's (Kubernetes shares the spool's
 * volume, not the pids) it names some other process, which SIGUSR1
 * would kill.
 */
static int tool_holder_here(const struct spool_tool *tool, long pid)
{
    char   *lock = spool_path(tool->dir, "runner.lock", NULL), fds[64], *path;
    struct stat want, st;
    struct dirent *de;
    DIR    *d;
    int     found = 0;

    snprintf(fds, sizeof(fds), "/proc/%ld/fd", pid);
    if (stat(lock, &want) == 0 && (d = opendir(fds)) != NULL) {
	while (!found && (de = readdir(d)) != NULL) {
	    path = xasprintf("%s/%s", fds, de->d_name);
	    found = de->d_name[0] != '.' && stat(path, &st) == 0
		&& st.st_dev == want.st_dev && st.st_ino == want.st_ino;
	    free(path);
	}
	closedir(d);
    }
    free(lock);
    return (found);
}

/* tool_no_inode - runner.lock missing where no file can be made (helper-128) */

static int tool_no_inode(const char *dir)
{
    char   *path = spool_path(dir, "runner.lock", NULL);
    struct statvfs fs;
    int     none = access(path, F_OK) < 0 && errno == ENOENT
	&& statvfs(dir, &fs) == 0 && fs.f_files > 0 && fs.f_favail == 0;

    free(path);
    return (none);
}

/* tool_poke - ask a running daemon for a pass now; 0 if there is none */

static int tool_poke(const struct spool_tool *tool)
{
    long    holder = 0;
    int     fd = -1, signalled, here = 0;

    /* a daemon starting takes the lock before it detaches, and records
       the detached pid a moment later: a gone pid is asked again */
    for (int tries = 0;; tries++) {
	if (runner_lock(tool->dir, &fd, &holder) == 0) {
	    runner_unlock(fd);
	    return (0);
	}
	if (holder == 0 && tool_no_inode(tool->dir))
	    break;				/* it cannot name itself */
	spool_owner_root();			/* a runner that is root's */
	here = holder > 0 && tool_holder_here(tool, holder);
	signalled = here && kill((pid_t) holder, SIGUSR1) == 0;
	spool_owner_again();
	if (signalled) {
	    printf("flush requested from lmtp-webhook-spool run (pid %ld)\n", holder);
	    return (1);
	}
	if ((here && errno != ESRCH) || tries >= 20)
	    break;
	usleep(100 * 1000);
    }
    if (holder == 0 && tool_no_inode(tool->dir))
	msg_fatal("the spool is locked by a runner that could not make runner.lock: %s has "
		  "no inode left; it posts on its own, but cannot be signalled until an inode "
		  "is free (it makes runner.lock within a second then)", tool->dir);
    if (holder == 0)			/* it names itself within a second */
	msg_fatal("the spool is locked by a process whose runner.lock was removed: try again");
    if (!here)
	msg_fatal("the spool is locked by a runner this command cannot see: pid %ld (in "
		  "runner.lock) holds no lock here, so it is another PID namespace's (another "
		  "container's): nothing signalled; run the flush where the runner runs "
		  "(kubectl exec into its container), or send that runner SIGUSR1 there",
		  holder);
    msg_fatal("the spool is locked by pid %ld, which cannot be signalled: %m", holder);
}

static int tool_retry(const struct spool_tool *tool, const char *id)
{
    const char *where, *err;
    char   *path = tool_find(tool, id, &where);
    struct spool_event ev;

    if ((err = spool_load(path, &ev)) != NULL)
	msg_fatal("%s", err);
    /* held by a delivery saving its mail now: released by it, or
       removed if the save fails; only a crash's leftover is ours */
    if (ev.held && spool_held_busy(path))
	msg_fatal("%s is held: its mail is being saved by a delivery in progress, which "
		  "releases it (or removes it if the save fails); not retried", id);
    ev.next_attempt = 0;
    ev.held = 0;				/* a crash's leftover: due now */
    /* back from dead/: a new dead_letter_after window, or its age would
       send it straight back without the attempt asked for */
    if (strcmp(where, SPOOL_DEAD) == 0)
	ev.created = (long long) time(NULL);
    if ((err = spool_store(tool->dir, SPOOL_ACTIVE, &ev)) != NULL)
	msg_fatal("%s", err);
    if (strcmp(where, SPOOL_DEAD) == 0 && unlink(path) < 0)
	msg_fatal("unlink %s: %m", path);
    printf("%s: due now%s\n", id, strcmp(where, SPOOL_DEAD) == 0 ? " (back from dead/)" : "");
    spool_event_free(&ev);
    free(path);
    /* no flush: that would post every event, due or not, and a
       retry of one event during an outage would undo the backoff of
       thousands. The rename wakes a running daemon (inotify; without
       it, its next listing within a second finds the file), and one
       whose attempt is in flight keeps this file over its outcome
       (spool_update()); else the next run or flush takes it */
    return (0);
}

static int tool_drop(const struct spool_tool *tool, const char *id)
{
    const char *where;
    char   *path = tool_find(tool, id, &where);

    if (unlink(path) < 0)
	msg_fatal("unlink %s: %m", path);
    msg_info("event %s dropped from %s/ by request", id, where);
    free(path);
    return (0);
}

static int tool_command(struct spool_tool *tool, int argc, char **argv)
{
    const char *cmd = argv[0];

    if (strcmp(cmd, "run") == 0 && argc == 1)
	return (runner_main(tool, RUNNER_DAEMON) < 0);
    if (strcmp(cmd, "flush") == 0 && argc == 1)
	return (tool_poke(tool) ? 0 : runner_main(tool, RUNNER_FLUSH) < 0);
    if (strcmp(cmd, "list") == 0 && argc == 1)
	return (tool_list(tool));
    if (strcmp(cmd, "show") == 0 && argc == 2)
	return (tool_show(tool, argv[1]));
    if (strcmp(cmd, "retry") == 0 && argc == 2)
	return (tool_retry(tool, argv[1]));
    if (strcmp(cmd, "drop") == 0 && argc == 2)
	return (tool_drop(tool, argv[1]));
    msg_fatal("usage: %s [-c config] run | list | show ID | flush | retry ID | drop ID"
	      " | check-routes [DOVECOT_CONF]",
	      msg_progname());
}

int     main(int argc, char **argv)
{
    struct daemon_opts opts;
    struct spool_tool tool;
    const char *err;
    int     first, status;

    msg_init(argv[0], MSG_STDERR);
    first = daemon_parse_command(argc, argv, SYSCONFDIR "/mxkit/lmtp-webhook-spool.conf", &opts);
    if (!opts.check_only && first < argc && strcmp(argv[first], "run") == 0)
	daemon_starting();			/* the daemon: see daemon(3) */
    /* Dovecot's configuration, not ours: no spool needed */
    if (!opts.check_only && first < argc && strcmp(argv[first], "check-routes") == 0
	&& argc - first <= 2)
	return (tool_check_routes(argc - first == 2 ? argv[first + 1] : NULL));
    memset(&tool, 0, sizeof(tool));
    /* list, flush ...: not a start of the daemon (whose checks -t and
       run make as this user) */
    if (!opts.check_only && first < argc && strcmp(argv[first], "run") != 0)
	daemon_config_tool_command();
    tool_load(&tool, opts.config_path);
    if (tool.cfg->error_count) {
	config_print_errors(tool.cfg);
	return (1);
    }
    if (opts.check_only) {
	printf("%s: configuration OK\n", opts.config_path);
	return (0);
    }
    if (first >= argc)
	msg_fatal("usage: %s [-c config] run | list | show ID | flush | retry ID | drop ID"
	      " | check-routes [DOVECOT_CONF]",
		  msg_progname());
    /* a spool_dir not made yet: the daemon's user's, as Postfix's queue */
    if ((err = spool_owner_make(tool.dir, config_get_str(tool.cfg, "user"))) != NULL)
	msg_fatal("%s", err);
    /* root: the spool's work as its owner, never through its links */
    if ((err = spool_owner_enter(tool.dir)) != NULL)
	msg_fatal("%s", err);
    if ((err = spool_init(tool.dir)) != NULL)
	msg_fatal("%s", err);
    curl_global_init(CURL_GLOBAL_DEFAULT);
    tool.foreground = opts.foreground;
    if (strcmp(argv[first], "run") == 0) {	/* runner_main() detaches */
	daemon_log_init(argv[0], &opts, tool.cfg);
	daemon_config_running(tool.cfg);
    }
    status = tool_command(&tool, argc - first, argv + first);
    curl_global_cleanup();
    config_free(&tool.cfg);
    return (status);
}
