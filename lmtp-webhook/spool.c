/*
 * NAME
 *	spool 3
 * SUMMARY
 *	durable webhook events
 * SYNOPSIS
 *	#include "spool.h"
 *
 *	const char *spool_init(dir)
 *	const char *spool_ready(dir)
 *	const char *spool_reserve(dir, &event, &reservation)
 *	const char *spool_reserve_stream(dir, &event, &reservation, &keeper)
 *	const char *spool_stream_done(&reservation)
 *	int	spool_scratch(dir)
 *	const char *spool_commit(&reservation)
 *	const char *spool_commit_why(&reservation, why)
 *	void	spool_discard(&reservation)
 *	const char *spool_store(dir, subdir, &event)
 *	const char *spool_update(dir, &event, &gone)	(spool_outcome.c)
 *	int	spool_bury(dir, id, path, name)	(spool_outcome.c)
 *	const char *spool_load(path, &event)		(spool_read.c)
 *	char	**spool_list(dir, subdir, &count)	(spool_read.c)
 *	int	spool_sweep_tmp(dir, now)		(spool_tmp.c)
 *	int	spool_recycle(dir, path, &pool)	(spool_tmp.c)
 *	int	spool_free_count(dir)		(spool_tmp.c)
 * DESCRIPTION
 *	A spool directory holds tmp/ (files being written), active/
 *	(events waiting to be posted) and dead/ (events given up on),
 *	one JSON file per event named after its webhook-id: a second
 *	event with the same id replaces the first instead of posting
 *	twice.
 *
 *	An event file is one line of JSON (id, url, created, attempts,
 *	next_attempt, last_error, body_length, and secret_files when the
 *	route names its own: the paths, never a secret; padded with spaces
 *	when the body was streamed) followed by the body bytes
 *	exactly as they are signed and posted.
 *
 *	Writers reserve first: spool_reserve() checks the spool
 *	(spool_ready(): subdirectories made again if removed, active/ and
 *	tmp/ writable and on one mount, as rename() needs), creates the file in tmp/ and allocates its full
 *	size (fallocate); the plugin uses spool_reserve_stream() and
 *	writes the whole event while it parses the message. Either way a
 *	full, unwritable or broken spool is found while the recipient can
 *	still be tempfailed, at the price of no copy. Once the mail is saved,
 *	spool_commit() makes the event durable before LMTP answers, as
 *	res->sync says: SPOOL_SYNC_ALWAYS (the default: fsync, rename into
 *	active/, fsync the directory), SPOOL_SYNC_OPTIMIZED (rename, then
 *	fsync the file, which on a journaling file system commits its new
 *	name with it), SPOOL_SYNC_NEVER (rename); the plugin follows
 *	Dovecot's mail_fsync (an event that a crash before the sync left
 *	incomplete is refused by spool_load(): see spool_read.c). A
 *	target directory removed in between is made again. A failure after
 *	the rename leaves the event in active/ (the caller tempfails; the
 *	retry's event has the same id). The rename into
 *	active/ is what wakes lmtp-webhook-spool (inotify).
 *
 *	spool_load() (whole, or mapped from SPOOL_MAP_MIN on): spool_read.c.
 *
 *	Every event file's mtime is its next attempt time, so that a
 *	scan can skip what is not due with stat() alone.
 *
 *	spool_store() writes an event the same durable way (the spool
 *	tool, and when dead-lettering). spool_update(), the outcome of an
 *	attempt, and spool_bury(), a file of active/ that is no event:
 *	spool_outcome.c.
 *
 *	spool_recycle() is how lmtp-webhook-spool removes a delivered
 *	event: a small file is renamed to tmp/free.PID.N instead (at most
 *	SPOOL_FREE_MAX of them), and a reservation that needs a new file
 *	takes one of those (rename, then write over it) before creating
 *	one. Every event is a file, and creating and removing an inode per
 *	event is what a file system charges most for (ext4 without a
 *	journal scans past recently deleted inodes on every creation).
 *	A free file's old bytes are never read, nor kept: spool_claim()
 *	cuts them off (a crash between a rename and its fsync must not
 *	show them under the new name), and the commit truncates the
 *	event to its length.
 *
 *	spool_sweep_tmp() removes what crashed writers left in tmp/:
 *	files whose writer (the pid in the name) is gone and that were
 *	last changed over an hour ago, and any file unchanged for 36 hours (the pid may
 *	be another container's). A live lmtp process whose idle keeper
 *	file was swept notices it before its next reservation, and a
 *	commit whose file vanished under it writes the event anew.
 * DIAGNOSTICS
 *	NULL, or a message in a static buffer naming the file and the
 *	system error. spool_load() sets errno to EBADMSG when the file is
 *	there but is not an event file.
 */

#define _GNU_SOURCE			/* fallocate() */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>

#include "spool.h"
#include "spool_int.h"
#include "wh_alloc.h"

char    spool_err[SPOOL_ERR_SIZE];

const char *spool_fail(const char *what, const char *path)
{
    snprintf(spool_err, sizeof(spool_err), "%s %s: %s", what, path, strerror(errno));
    return (spool_err);
}

char   *spool_path(const char *dir, const char *subdir, const char *id)
{
    size_t  len = strlen(dir) + strlen(subdir) + (id ? strlen(id) : 0) + 3;
    char   *path = wh_malloc(len);

    snprintf(path, len, "%s/%s%s%s", dir, subdir, id ? "/" : "", id ? id : "");
    return (path);
}

/* spool_id_ok - ids become file names: letters, digits, '_', '-' only */

int     spool_id_ok(const char *id)
{
    if (*id == 0 || strlen(id) > 128)
	return (0);
    return (strspn(id, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
		   "0123456789_-") == strlen(id));
}

/*
 * spool_mkdir - a subdirectory of the spool, owned like the spool: root
 * (a runner started as root, the spool tool) must not make one that the
 * lmtp processes' user cannot write to. 0 if made or already there.
 */
static int spool_mkdir(const char *dir, const char *path)
{
    struct stat st;

    /* stat() first: it takes no lock, where mkdir() of an existing
       directory locks the spool directory exclusively, and every lmtp
       process and the runner ask for each subdirectory on each event */
    if (stat(path, &st) == 0)
	return (0);
    if (mkdir(path, 0700) < 0)
	return (errno == EEXIST ? 0 : -1);
    if (geteuid() == 0 && stat(dir, &st) == 0 && st.st_uid != 0
	&& chown(path, st.st_uid, st.st_gid) < 0)
	return (-1);
    return (0);
}

/*
 * spool_own - a file root creates in the spool becomes the spool's
 * owner's, as spool_mkdir() does for directories: an operator's retry
 * or flush as root otherwise left root's 0600 event files (and
 * runner.lock) that the daemon, run as the user Dovecot delivers as,
 * can neither read nor lock: never posted, or no daemon at all.
 */
int     spool_own(const char *dir, int fd)
{
    struct stat st;

    if (geteuid() != 0 || stat(dir, &st) < 0 || st.st_uid == 0)
	return (0);
    return (fchown(fd, st.st_uid, st.st_gid));
}

/*
 * spool_same_mount - 0 when path is on tmp/'s mount, else -1 with errno
 * (EXDEV: another mount). An event is written in tmp/ and renamed into
 * active/, and rename() across mounts fails (EXDEV) only at the commit,
 * after the mail is saved, and again on every retry: one more copy of
 * the mail per retry. The mount id where statx() gives it (a bind
 * mount of the same file system is another mount too), else the device.
 */
static int spool_same_mount(const char *tmp, const char *path)
{
    struct statx a, b;
    unsigned int want = STATX_BASIC_STATS;
    int     other;

#ifdef STATX_MNT_ID				/* Linux 5.8 and its headers */
    want |= STATX_MNT_ID;
#endif
    if (statx(AT_FDCWD, tmp, 0, want, &a) < 0 || statx(AT_FDCWD, path, 0, want, &b) < 0)
	return (-1);
    other = a.stx_dev_major != b.stx_dev_major || a.stx_dev_minor != b.stx_dev_minor;
#ifdef STATX_MNT_ID
    if (a.stx_mask & b.stx_mask & STATX_MNT_ID)
	other = a.stx_mnt_id != b.stx_mnt_id;
#endif
    if (other)
	errno = EXDEV;
    return (other ? -1 : 0);
}

/*
 * spool_ready - the spool's subdirectories exist (made again when someone
 * removed one: each writer would otherwise fail the same way forever) and
 * active/ and tmp/ are writable by us, so that a writer finds a spool it
 * cannot use before it does anything that cannot be undone (the plugin:
 * before the mail is saved). The spool directory itself is never made
 * here: missing, it may be an unmounted volume, and events written to
 * whatever is below the mount point would be lost at the next mount.
 */
const char *spool_ready(const char *dir)
{
    static const char *const subdirs[] = {SPOOL_TMP, SPOOL_ACTIVE, SPOOL_DEAD};
    const char *err = NULL;

    for (int i = 0; i < 3 && err == NULL; i++) {
	char   *path = spool_path(dir, subdirs[i], NULL);

	if (spool_mkdir(dir, path) < 0)
	    err = spool_fail("cannot create", path);
	else if (i < 2 && faccessat(AT_FDCWD, path, W_OK | X_OK, AT_EACCESS) < 0)
	    err = spool_fail("cannot write to", path);
	free(path);
    }
    if (err == NULL) {				/* events are renamed tmp/ -> active/ */
	char   *tmp = spool_path(dir, SPOOL_TMP, NULL), *act = spool_path(dir, SPOOL_ACTIVE, NULL);

	if (spool_same_mount(tmp, act) < 0)
	    err = spool_fail("cannot rename from tmp/ into", act);
	free(tmp);
	free(act);
    }
    return (err);
}

const char *spool_init(const char *dir)
{
    static const char *const subdirs[] = {SPOOL_TMP, SPOOL_ACTIVE, SPOOL_DEAD};

    if (mkdir(dir, 0700) < 0 && errno != EEXIST)
	return (spool_fail("cannot create", dir));
    for (int i = 0; i < 3; i++) {
	char   *path = spool_path(dir, subdirs[i], NULL);
	int     bad = spool_mkdir(dir, path) < 0;

	if (bad) {
	    spool_fail("cannot create", path);
	    free(path);
	    return (spool_err);
	}
	free(path);
    }
    return (NULL);
}

/* spool_meta - the first line of an event file: everything but the body */

static char *spool_meta(const struct spool_event *ev, size_t *len_r)
{
    json_t *j = json_object();
    char   *text;

    json_object_set_new(j, "id", json_string(ev->id));
    json_object_set_new(j, "url", json_string(ev->url));
    json_object_set_new(j, "created", json_integer(ev->created));
    json_object_set_new(j, "attempts", json_integer(ev->attempts));
    json_object_set_new(j, "next_attempt", json_integer(ev->next_attempt));
    json_object_set_new(j, "last_error", ev->last_error ?
			json_string(ev->last_error) : json_null());
    json_object_set_new(j, "body_length", json_integer((json_int_t) ev->body_len));
    if (ev->held)				/* spool_hold.c */
	json_object_set_new(j, "held", json_true());
    if (ev->secret_count > 0)			/* paths, never a secret */
	json_object_set_new(j, "secret_files", ev->secret_count == 1
			    ? json_pack("[s]", ev->secret_files[0])
			    : json_pack("[ss]", ev->secret_files[0], ev->secret_files[1]));
    text = json_dumps(j, JSON_COMPACT | JSON_PRESERVE_ORDER);
    json_decref(j);
    if (text == NULL)
	abort();				/* out of memory, or id/url not UTF-8 */
    *len_r = strlen(text);
    return (text);
}

static int spool_write_all(int fd, const char *data, size_t len)
{
    while (len > 0) {
	ssize_t n = write(fd, data, len);

	if (n < 0 && errno == EINTR)
	    continue;
	if (n <= 0)
	    return (-1);
	data += n;
	len -= (size_t) n;
    }
    return (0);
}

int     spool_fsync_dir(const char *path)
{
    int     fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC), rc;

    if (fd < 0)
	return (-1);
    rc = fsync(fd);
    close(fd);
    return (rc);
}

/* spool_tmp_create - a new file of our own in tmp/ */

static int spool_tmp_create(const char *path)
{
    /* read too: a streamed event is copied if its file was swept */
    return (open(path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600));
}

/* spool_allocate - meta line and space for ev in res->fd */

static const char *spool_allocate(const struct spool_event *ev, struct spool_reservation *res)
{
    res->ev = ev;
    res->meta = spool_meta(ev, &res->meta_len);
    res->meta[res->meta_len++] = '\n';	/* json_dumps left room: the NUL */
    /* slack: spool_commit_why() may add a last_error to the header line */
    if (fallocate(res->fd, 0, 0, (off_t) (res->meta_len + ev->body_len + 512)) == 0)
	return (NULL);
    if (errno != EOPNOTSUPP && errno != ENOSYS)
	return (spool_fail("cannot allocate space for", res->tmp_path));
    if (spool_write_all(res->fd, res->meta, res->meta_len) < 0
	|| spool_write_all(res->fd, ev->body, ev->body_len) < 0)
	return (spool_fail("cannot write", res->tmp_path));
    res->written = 1;
    return (NULL);
}

static void spool_names(const char *dir, const char *id, struct spool_reservation *res)
{
    res->final_path = spool_path(dir, SPOOL_ACTIVE, id);
    res->dir_path = spool_path(dir, SPOOL_ACTIVE, NULL);
}

/*
 * spool_reserve - claim the space the event needs, without writing it:
 * fallocate() fails with ENOSPC now rather than write() later, and costs
 * no copy when the first attempt succeeds (the usual case). Where the
 * file system cannot preallocate, the event is written instead.
 */
const char *spool_reserve(const char *dir, const struct spool_event *ev,
			          struct spool_reservation *res)
{
    const char *err;

    memset(res, 0, sizeof(*res));
    res->fd = -1;
    if ((err = spool_ready(dir)) != NULL)
	return (err);
    res->tmp_path = spool_tmp_name(dir, ev->id);
    spool_names(dir, ev->id, res);
    if ((res->fd = spool_tmp_create(res->tmp_path)) < 0)
	err = spool_fail("cannot create", res->tmp_path);
    else if (spool_own(dir, res->fd) < 0)
	err = spool_fail("cannot chown", res->tmp_path);
    else
	err = spool_allocate(ev, res);
    if (err)
	spool_discard(res);
    return (err);
}

/*
 * spool_reserve_kept - the same in the keeper's file, which outlives
 * the reservation unless it is committed: an lmtp process then pays two
 * system calls per delivery (fallocate, and ftruncate on discard), not
 * a file creation and removal. A new keeper file is made (and the
 * spool's directories, once) when there is none.
 */
/* spool_keeper_take - the keeper's file, made anew if it is gone */

static const char *spool_keeper_take(const char *dir, const struct spool_event *ev,
			                     struct spool_reservation *res,
				             struct spool_keeper *keeper)
{
    const char *err;
    struct stat st;

    memset(res, 0, sizeof(*res));
    res->fd = -1;
    if ((err = spool_ready(dir)) != NULL)
	return (err);
    if (keeper->fd >= 0 && (strcmp(keeper->dir, dir) != 0 || stat(keeper->path, &st) < 0
			    || st.st_dev != keeper->dev || st.st_ino != keeper->ino))
	spool_keeper_close(keeper);	/* not where it was: start again */
    if (keeper->fd < 0) {
	keeper->path = spool_tmp_name(dir, "reserve");
	keeper->dir = wh_strdup(dir);
	if ((keeper->fd = spool_claim(dir, keeper->path)) < 0)
	    keeper->fd = spool_tmp_create(keeper->path);
	if (keeper->fd < 0 || fstat(keeper->fd, &st) < 0) {
	    spool_fail("cannot create", keeper->path);
	    spool_keeper_close(keeper);
	    return (spool_err);
	}
	keeper->dev = st.st_dev;
	keeper->ino = st.st_ino;
    }
    res->fd = keeper->fd;
    res->tmp_path = wh_strdup(keeper->path);
    res->keeper = keeper;
    res->ev = ev;
    spool_names(dir, ev->id, res);
    return (NULL);
}

const char *spool_reserve_kept(const char *dir, const struct spool_event *ev,
			               struct spool_reservation *res, struct spool_keeper *keeper)
{
    const char *err;

    if ((err = spool_keeper_take(dir, ev, res, keeper)) == NULL
	&& (err = spool_allocate(ev, res)) != NULL)
	spool_discard(res);
    return (err);
}

/*
 * spool_reserve_stream - the keeper's file, for a body the caller writes
 * itself (pwrite() into res->fd from offset res->meta_len on) while it
 * produces it, so that no event is ever held whole in memory. The
 * header line gets a slot wide enough for any body_length; when the
 * body is done (ev->body_len set), spool_stream_done() writes it there,
 * padded with spaces (JSON ignores them). Then spool_commit() or
 * spool_discard() as usual. A write that fails (ENOSPC) is found before
 * the mail is saved, as fallocate() finds it for spool_reserve_kept().
 */
const char *spool_reserve_stream(const char *dir, const struct spool_event *ev,
				         struct spool_reservation *res,
				         struct spool_keeper *keeper)
{
    struct spool_event widest;
    const char *err;

    if ((err = spool_keeper_take(dir, ev, res, keeper)) != NULL)
	return (err);
    widest = *ev;
    widest.body_len = (size_t) 1e15;		/* 16 digits: any body */
    res->meta = spool_meta(&widest, &res->meta_len);
    res->meta_len++;				/* the newline */
    res->written = 1;
    res->streamed = 1;
    return (NULL);
}

const char *spool_stream_done(struct spool_reservation *res)
{
    size_t  len;
    char   *meta = spool_meta(res->ev, &len);

    if (len + 1 > res->meta_len) {		/* a body of a petabyte */
	free(meta);
	errno = EFBIG;
	return (spool_fail("cannot write", res->tmp_path));
    }
    meta = wh_realloc(meta, res->meta_len);
    memset(meta + len, ' ', res->meta_len - 1 - len);
    meta[res->meta_len - 1] = '\n';
    free(res->meta);
    res->meta = meta;
    if (pwrite(res->fd, meta, res->meta_len, 0) != (ssize_t) res->meta_len)
	return (spool_fail("cannot write", res->tmp_path));
    return (NULL);
}

/*
 * spool_scratch - a nameless file in tmp/ for what a writer needs to keep
 * aside for a while (the plugin: an event's text and html, which come
 * before the attachments in the message but after them in the event);
 * gone when closed. -1 with errno.
 */
int     spool_scratch(const char *dir)
{
    char   *path = spool_path(dir, SPOOL_TMP, NULL);
    int     fd = open(path, O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);

    free(path);
    if (fd < 0 && (errno == EOPNOTSUPP || errno == EISDIR || errno == EINVAL)) {
	path = spool_tmp_name(dir, "scratch");	/* no O_TMPFILE here */
	if ((fd = spool_tmp_create(path)) >= 0)
	    (void) unlink(path);
	free(path);
    }
    return (fd);
}

/* spool_copy - a streamed event's bytes from one file to another */

static int spool_copy(int from, int to, size_t len)
{
    char    buf[65536];
    off_t   at = 0;

    while ((size_t) at < len) {
	size_t  want = len - (size_t) at < sizeof(buf) ? len - (size_t) at : sizeof(buf);
	ssize_t n = pread(from, buf, want, at);

	if (n <= 0 || pwrite(to, buf, (size_t) n, at) != n) {
	    if (n == 0)
		errno = EIO;
	    return (-1);
	}
	at += n;
    }
    return (0);
}

void    spool_keeper_close(struct spool_keeper *keeper)
{
    if (keeper->fd >= 0)
	close(keeper->fd);
    if (keeper->fd >= 0 && keeper->path)
	(void) unlink(keeper->path);
    free(keeper->path);
    free(keeper->dir);
    keeper->fd = -1;
    keeper->path = keeper->dir = NULL;
}

/* spool_commit_why - spool_commit(), recording why the attempt failed */

const char *spool_commit_why(struct spool_reservation *res, const char *why)
{
    struct spool_event ev;
    char    error[256];

    if (!res->written && why != NULL) {	/* header not written yet */
	ev = *res->ev;
	snprintf(error, sizeof(error), "%s", why);
	ev.last_error = error;
	free(res->meta);
	res->meta = spool_meta(&ev, &res->meta_len);
	res->meta[res->meta_len++] = '\n';
    }
    return (spool_commit(res));
}

/*
 * spool_commit_anew - the keeper's file was swept away under us (idle for
 * longer than the sweep allows, then reused in the same instant): write
 * the event, header line included, to a file of its own.
 */
static const char *spool_commit_anew(struct spool_reservation *res)
{
    struct spool_keeper *keeper = res->keeper;

    int     old_fd = dup(keeper->fd);	/* an unlinked file: a streamed */
    const char *err = NULL;		/* event is only there */

    free(res->tmp_path);
    res->tmp_path = spool_tmp_name(keeper->dir, res->ev->id);
    spool_keeper_close(keeper);
    res->keeper = NULL;
    res->written = res->streamed;
    if ((res->fd = spool_tmp_create(res->tmp_path)) < 0)
	err = spool_fail("cannot create", res->tmp_path);
    else if (res->streamed && (old_fd < 0 || spool_copy(old_fd, res->fd,
					    res->meta_len + res->ev->body_len) < 0))
	err = spool_fail("cannot copy the event into", res->tmp_path);
    if (old_fd >= 0)
	close(old_fd);
    if (err != NULL) {
	if (res->fd < 0) {
	    free(res->tmp_path);
	    res->tmp_path = NULL;
	}
	spool_discard(res);
	return (err);
    }
    return (spool_commit(res));
}

/*
 * spool_commit_dir_again - the rename found no target directory (removed
 * since spool_ready() looked): make it again and retry the rename once.
 * With errno ENOENT and -1 when it was the source file that was missing.
 */
int     spool_dir_again(const char *dir_path)
{
    struct stat st;
    const char *slash;
    char   *spool;
    int     rc;

    if (stat(dir_path, &st) == 0 || errno != ENOENT) {
	errno = ENOENT;
	return (-1);
    }
    slash = strrchr(dir_path, '/');
    spool = wh_strndup(dir_path, slash ? (size_t) (slash - dir_path) : 0);
    rc = spool_mkdir(*spool ? spool : ".", dir_path);
    free(spool);
    return (rc);
}

int     spool_commit_dir_again(struct spool_reservation *res)
{
    if (spool_dir_again(res->dir_path) < 0)
	return (-1);
    return (rename(res->tmp_path, res->final_path));
}

/* spool_commit_write - the event into the reserved space (SPOOL_SYNC_ALWAYS: fsynced) */

const char *spool_commit_write(struct spool_reservation *res)
{
    /* like Postfix's deferred queue: mtime = next attempt, so a scan
       needs stat(), not a parse, to skip what is not due */
    struct timespec times[2] = {{0, UTIME_OMIT}, {(time_t) res->ev->next_attempt, 0}};

    if (!res->written && (lseek(res->fd, 0, SEEK_SET) < 0
			  || spool_write_all(res->fd, res->meta, res->meta_len) < 0
		     || spool_write_all(res->fd, res->ev->body, res->ev->body_len) < 0))
	return (spool_fail("cannot write", res->tmp_path));
    if (ftruncate(res->fd, (off_t) (res->meta_len + res->ev->body_len)) < 0)
	return (spool_fail("cannot truncate", res->tmp_path));
    /* an event due now needs no futimens(): its writes made its mtime */
    if ((res->ev->next_attempt > (long long) time(NULL) && futimens(res->fd, times) < 0)
	|| (res->sync == SPOOL_SYNC_ALWAYS && fsync(res->fd) < 0))
	return (spool_fail("cannot fsync", res->tmp_path));
    return (NULL);
}

/*
 * spool_commit_sync - after the rename. SPOOL_SYNC_OPTIMIZED syncs the
 * file once it has its name: on a journaling file system (ext4, XFS,
 * Btrfs) that commit carries the rename too, one journal commit where
 * "fsync, rename, fsync the directory" costs two. The event is in
 * active/ already, complete in the page cache: the runner may post it
 * meanwhile, which only a crash before the fsync could undo, and then
 * LMTP has not answered.
 */
static const char *spool_commit_sync(struct spool_reservation *res)
{
    switch (res->sync) {
    case SPOOL_SYNC_ALWAYS:
	return (spool_fsync_dir(res->dir_path) < 0 ?
		spool_fail("cannot fsync", res->dir_path) : NULL);
    case SPOOL_SYNC_OPTIMIZED:
	return (fsync(res->fd) < 0 ? spool_fail("cannot fsync", res->final_path) : NULL);
    default:
	return (NULL);
    }
}

/* spool_commit - write (into the reserved space), rename; synced per res->sync */

const char *spool_commit(struct spool_reservation *res)
{
    const char *err;

    if ((err = spool_commit_write(res)) != NULL)
	 /* void */ ;
    else if (rename(res->tmp_path, res->final_path) < 0
	     && !(errno == ENOENT && spool_commit_dir_again(res) == 0)) {
	if (errno == ENOENT && res->keeper)
	    return (spool_commit_anew(res));
	err = spool_fail("cannot rename into", res->final_path);
    }
    else {
	/* renamed: the file is the event now, whatever the sync says (a
	   discard would empty the keeper's file, which is now in active/) */
	err = spool_commit_sync(res);
	free(res->tmp_path);		/* nothing left to remove */
	res->tmp_path = NULL;
	if (res->keeper) {		/* its file is now the event */
	    free(res->keeper->path);
	    res->keeper->path = NULL;
	    spool_keeper_close(res->keeper);
	    res->keeper = NULL;
	    res->fd = -1;
	}
    }
    spool_discard(res);
    return (err);
}

void    spool_discard(struct spool_reservation *res)
{
    if (res->keeper) {			/* empty again, for the next one */
	if (ftruncate(res->fd, 0) < 0 || lseek(res->fd, 0, SEEK_SET) < 0)
	    spool_keeper_close(res->keeper);
    } else {
	if (res->fd >= 0)
	    close(res->fd);
	if (res->tmp_path)
	    (void) unlink(res->tmp_path);
    }
    free(res->tmp_path);
    free(res->final_path);
    free(res->dir_path);
    free(res->meta);
    memset(res, 0, sizeof(*res));
    res->fd = -1;
}

const char *spool_store(const char *dir, const char *subdir, const struct spool_event *ev)
{
    struct spool_reservation res;
    const char *err;

    if ((err = spool_reserve(dir, ev, &res)) != NULL)
	return (err);
    if (strcmp(subdir, SPOOL_ACTIVE) != 0) {
	free(res.final_path);
	free(res.dir_path);
	res.final_path = spool_path(dir, subdir, ev->id);
	res.dir_path = spool_path(dir, subdir, NULL);
    }
    return (spool_commit(&res));
}
