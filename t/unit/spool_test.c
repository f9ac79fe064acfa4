/* spool_test - unit tests for lmtp-webhook/spool.c */

#include "build_config.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "spool.h"
#include "tap.h"

static int count(const char *dir, const char *sub)
{
    int     n;
    char  **names = spool_list(dir, sub, &n);

    spool_list_free(names, n);
    return (n);
}

/* files_in - every entry of dir/sub, whatever its name */

static int files_in(const char *dir, const char *sub)
{
    char   *path = spool_path(dir, sub, NULL);
    DIR    *d = opendir(path);
    struct dirent *de;
    int     n = 0;

    while (d != NULL && (de = readdir(d)) != NULL)
	n += strcmp(de->d_name, ".") != 0 && strcmp(de->d_name, "..") != 0;
    if (d != NULL)
	closedir(d);
    free(path);
    return (n);
}

static void write_file(const char *path, const char *text)
{
    FILE   *fp = fopen(path, "w");

    fputs(text, fp);
    fclose(fp);
}

static int exists(const char *dir, const char *name)
{
    char   *path = spool_path(dir, SPOOL_TMP, name);
    int     found = access(path, F_OK) == 0;

    free(path);
    return (found);
}

/* a pid that was just used and is gone */
static long dead_pid(void)
{
    pid_t   pid = fork();

    if (pid == 0)
	_exit(0);
    waitpid(pid, NULL, 0);
    return ((long) pid);
}

static void test_sweep(const char *dir)
{
    char    orphan[100], live[100], plain[100];
    char   *path;
    time_t  now = time(NULL);

    snprintf(orphan, sizeof(orphan), "reserve.%ld.1", dead_pid());
    snprintf(live, sizeof(live), "reserve.%ld.2", (long) getpid());
    snprintf(plain, sizeof(plain), "msg_1.%ld.3", dead_pid());
    path = spool_path(dir, SPOOL_TMP, orphan);
    write_file(path, "x");
    free(path);
    path = spool_path(dir, SPOOL_TMP, live);
    write_file(path, "x");
    free(path);
    path = spool_path(dir, SPOOL_TMP, plain);
    write_file(path, "x");
    free(path);
    path = spool_path(dir, SPOOL_TMP, "no-pid-here");
    write_file(path, "x");
    free(path);

    is_int(spool_sweep_tmp(dir, now), 0, "sweep: fresh files stay, writer gone or not");
    is_int(spool_sweep_tmp(dir, now + 2 * 3600), 2, "sweep after 2h: the gone writers' files");
    ok(!exists(dir, orphan) && !exists(dir, plain), "both kinds of tmp file of a gone writer");
    ok(exists(dir, live) && exists(dir, "no-pid-here"), "a live writer's file and an unnamed one stay");
    is_int(spool_sweep_tmp(dir, now + 37 * 3600), 2, "sweep after 37h: everything");
    ok(!exists(dir, live) && !exists(dir, "no-pid-here"), "tmp/ is empty");
}

/* a sweep in steps: no more names per call than asked, every stale file
   removed and counted exactly; abandoned, what it did not reach stays */
static void test_sweep_steps(const char *dir)
{
    struct spool_sweep sw = {NULL, 0};
    char    name[100], *path;
    time_t  later = time(NULL) + 37 * 3600;
    int     i, steps = 0, most = 0, n = 2 * SPOOL_SWEEP_STEP + 7, before;

    for (i = 0; i < n; i++) {
	snprintf(name, sizeof(name), "reserve.1.%d", i);	/* pid 1 lives */
	path = spool_path(dir, SPOOL_TMP, name);
	write_file(path, "x");
	free(path);
    }
    is_int(spool_sweep_tmp_step(dir, later, &sw, 10), 0, "a step of 10 names: more left");
    ok(sw.removed <= 10 && sw.removed >= 8, "... it removed at most 10 (%d)", sw.removed);
    before = sw.removed;
    spool_sweep_tmp_end(&sw);
    ok(sw.dir == NULL, "an abandoned sweep is closed");
    is_int(files_in(dir, SPOOL_TMP), n - before, "abandoned: the names it did not reach stay");
    while (steps < n && (i = sw.removed, spool_sweep_tmp_step(dir, later, &sw, 100)) == 0) {
	most = sw.removed - i > most ? sw.removed - i : most;
	steps++;
    }
    ok(most <= 100, "never more than 100 removed in a step of 100 (%d)", most);
    ok(steps >= (n - before) / 100, "the sweep took %d steps", steps);
    is_int(sw.removed, n - before, "a sweep anew removed exactly the rest");
    is_int(files_in(dir, SPOOL_TMP), 0, "tmp/ is empty");
    ok(sw.dir == NULL, "a finished sweep is closed");
    is_int(spool_sweep_tmp_step(dir, later, &sw, 100), 1, "an empty tmp/: done at once");
    is_int(sw.removed, 0, "... nothing removed");
}

/* the runner swept an idle keeper file just before a commit: not lost */
static void test_keeper_swept(const char *dir, const struct spool_event *ev)
{
    struct spool_keeper keeper = SPOOL_KEEPER_INIT;
    struct spool_reservation res;
    struct spool_event swept = *ev, back;
    char   *path;

    swept.id = "msg_swept";
    is_str(spool_reserve_kept(dir, &swept, &res, &keeper), NULL, "reserve in a keeper file");
    ok(unlink(keeper.path) == 0, "keeper file removed under the reservation");
    is_str(spool_commit_why(&res, "HTTP status 503"), NULL, "commit still succeeds");
    path = spool_path(dir, SPOOL_ACTIVE, swept.id);
    is_str(spool_load(path, &back), NULL, "the event is in active/");
    is_str(back.body, ev->body, "with its body");
    is_str(back.last_error, "HTTP status 503", "and its last error");
    ok(keeper.fd < 0, "the keeper starts afresh next time");
    spool_event_free(&back);
    unlink(path);
    free(path);
}

/*
 * test_stream - a body written by the caller (the plugin streams it):
 * header line in its padded slot, body exactly as written; the keeper
 * file swept under it is copied, not lost; discard leaves it empty.
 */
static void test_stream(const char *dir, const struct spool_event *ev)
{
    struct spool_keeper keeper = SPOOL_KEEPER_INIT;
    struct spool_reservation res;
    struct spool_event ev2 = *ev, back;
    const char *body = "{\"streamed\":\"body\"}\n\n";
    char   *path;
    struct stat st;

    for (int swept = 0; swept < 2; swept++) {
	ev2.id = swept ? "msg_stream_swept" : "msg_stream";
	ev2.body = NULL;
	ev2.body_len = 0;
	is_str(spool_reserve_stream(dir, &ev2, &res, &keeper), NULL, "reserve for a stream");
	ok(pwrite(res.fd, body, strlen(body), (off_t) res.meta_len) == (ssize_t) strlen(body),
	   "the caller writes the body after the header slot");
	ev2.body_len = strlen(body);
	is_str(spool_stream_done(&res), NULL, "header line written into its slot");
	if (swept)
	    ok(unlink(keeper.path) == 0, "keeper file removed before the commit");
	is_str(spool_commit(&res), NULL, "commit");
	path = spool_path(dir, SPOOL_ACTIVE, ev2.id);
	is_str(spool_load(path, &back), NULL, "the streamed event loads");
	ok(back.body_len == strlen(body) && memcmp(back.body, body, back.body_len) == 0,
	   "body byte for byte%s", swept ? " (copied out of the swept file)" : "");
	is_str(back.id, ev2.id, "id in the padded header line");
	spool_event_free(&back);
	unlink(path);
	free(path);
    }
    is_str(spool_reserve_stream(dir, &ev2, &res, &keeper), NULL, "reserve again");
    ok(pwrite(res.fd, body, strlen(body), (off_t) res.meta_len) > 0, "write");
    spool_discard(&res);
    ok(keeper.fd >= 0 && fstat(keeper.fd, &st) == 0 && st.st_size == 0,
       "discard empties the keeper file");
    spool_keeper_close(&keeper);
    {
	int     fd = spool_scratch(dir);

	ok(fd >= 0 && write(fd, "x", 1) == 1 && count(dir, SPOOL_TMP) == 0,
	   "spool_scratch: a file with no name in tmp/");
	if (fd >= 0)
	    close(fd);
    }
}

/* held_stream - an event streamed as the plugin does, marked held */
static int held_stream(const char *dir, struct spool_event *ev, struct spool_reservation *res,
		               struct spool_keeper *keeper, const char *body)
{
    ev->held = 1;
    ev->body = NULL;
    ev->body_len = 0;
    if (spool_reserve_stream(dir, ev, res, keeper) != NULL
	|| pwrite(res->fd, body, strlen(body), (off_t) res->meta_len) != (ssize_t) strlen(body))
	return (-1);
    ev->body_len = strlen(body);
    return (spool_stream_done(res) == NULL ? 0 : -1);
}

/* wall_now - the clock file times come from (time() may be a tick behind) */

static time_t wall_now(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_REALTIME, &ts);
    return (ts.tv_sec);
}

static int same_file(int fd, const char *path)
{
    struct stat a, b;

    return (fstat(fd, &a) == 0 && stat(path, &b) == 0 && a.st_ino == b.st_ino
	    && a.st_dev == b.st_dev);
}

/*
 * test_update - spool_update(), an attempt's outcome: written over the
 * file the event was loaded from, never over another renamed over it
 * during the attempt (the tool's retry), nor when it was dropped.
 */
static void test_update(const char *dir, const struct spool_event *ev)
{
    struct spool_event ev2 = *ev, loaded, retried, back;
    char   *path;
    int     gone = -1, tmp_before;

    ev2.id = "msg_update";
    ev2.attempts = 1;
    ev2.next_attempt = 2000000000;
    path = spool_path(dir, SPOOL_ACTIVE, ev2.id);
    is_str(spool_store(dir, SPOOL_ACTIVE, &ev2), NULL, "update: an event stored");
    if (!is_str(spool_load(path, &loaded), NULL, "update: loaded (its file noted)"))
	return;
    loaded.attempts = 2;
    is_str(spool_update(dir, &loaded, &gone), NULL, "update: an attempt's outcome");
    is_int(gone, 0, "update: written");
    if (spool_load(path, &back) == NULL) {
	is_int(back.attempts, 2, "update: its file has it");
	spool_event_free(&back);
    }
    spool_event_free(&loaded);
    /* the attempt under way when the operator's retry renames its file */
    if (!is_str(spool_load(path, &loaded), NULL, "update: loaded again"))
	return;
    tmp_before = files_in(dir, SPOOL_TMP);
    retried = ev2;
    retried.attempts = 7;			/* tells the files apart */
    retried.next_attempt = 0;
    is_str(spool_store(dir, SPOOL_ACTIVE, &retried), NULL, "update: a retry renamed over it");
    loaded.attempts = 3;
    is_str(spool_update(dir, &loaded, &gone), NULL, "update over a retried file: no error");
    is_int(gone, SPOOL_UPDATE_REPLACED, "update over a retried file: replaced, not written");
    if (spool_load(path, &back) == NULL) {
	ok(back.attempts == 7 && back.next_attempt == 0, "update: the retry's file stands");
	spool_event_free(&back);
    } else
	ok(0, "update: the retry's file stands");
    is_int(files_in(dir, SPOOL_TMP), tmp_before, "update: nothing of ours left in tmp/");
    unlink(path);
    is_str(spool_update(dir, &loaded, &gone), NULL, "update of a dropped event: no error");
    is_int(gone, SPOOL_UPDATE_GONE, "update of a dropped event: gone, nothing written");
    ok(access(path, F_OK) < 0, "update: dropped stays dropped");
    spool_event_free(&loaded);
    free(path);
}

/*
 * test_hold - spool_hold.c, the plugin's order: a held event is in active/
 * before the mail is saved, "held", its mtime SPOOL_HOLD away; spool_unhold()
 * makes it due now, spool_withdraw() removes it but never another file under
 * its name, and a hold never replaces an event already there (the commit does).
 */
static void test_hold(const char *dir, const struct spool_event *ev)
{
    static const enum spool_sync syncs[] = {SPOOL_SYNC_OPTIMIZED, SPOOL_SYNC_ALWAYS,
    SPOOL_SYNC_NEVER};
    static const char *const names[] = {"optimized", "always", "never"};
    struct spool_keeper keeper = SPOOL_KEEPER_INIT;
    struct spool_reservation res;
    struct spool_event ev2 = *ev, back;
    const char *body = "{\"held\":\"body\"}";
    char   *path, *other;
    struct stat st;
    time_t  now = time(NULL);

    ev2.id = "msg_held";
    ev2.attempts = 0;				/* as the plugin makes it */
    ev2.created = ev2.next_attempt = (long long) now;
    path = spool_path(dir, SPOOL_ACTIVE, ev2.id);
    for (int i = 0; i < 3; i++) {
	ok(held_stream(dir, &ev2, &res, &keeper, body) == 0, "%s: streamed", names[i]);
	res.sync = syncs[i];
	is_str(spool_hold(&res), NULL, "%s: hold", names[i]);
	ok(res.held && keeper.fd < 0 && res.fd >= 0 && same_file(res.fd, path),
	   "%s: named active/ID before the save, its descriptor the caller's", names[i]);
	ok(stat(path, &st) == 0 && st.st_mtime >= now + SPOOL_HOLD,
	   "%s: its mtime (next attempt) SPOOL_HOLD away", names[i]);
	if (is_str(spool_load(path, &back), NULL, "%s: loads", names[i])) {
	    struct timespec past[2] = {{now - 5, 0}, {now - 5, 0}};

	    ok(back.held && back.mtime == (long long) st.st_mtime && back.attempts == 0,
	       "%s: held:true, and the mtime read", names[i]);
	    ok(spool_held_busy(path) && spool_held_now(&back, path, now),
	       "%s: its delivery at work (flock): held now", names[i]);
	    back.mtime = now - 5;		/* a save that outlives its hold */
	    ok(spool_held_now(&back, path, now), "%s: past its hold, still held while its "
	       "delivery holds it", names[i]);
	    (void) utimensat(AT_FDCWD, path, past, 0);
	    spool_event_free(&back);
	}
	is_str(spool_unhold(&res), NULL, "%s: released", names[i]);
	ok(!spool_held_busy(path), "%s: released: no delivery holds it", names[i]);
	if (spool_load(path, &back) == NULL) {
	    ok(!spool_held_now(&back, path, time(NULL)), "%s: released: not held now "
	       "(\"held\" still in its header)", names[i]);
	    spool_event_free(&back);
	}
	ok(res.fd < 0 && stat(path, &st) == 0 && st.st_mtime <= wall_now()
	   && st.st_atime <= wall_now(), "%s: due now (both times set: IN_ATTRIB)", names[i]);
	if (spool_load(path, &back) == NULL) {
	    ok(back.body_len == strlen(body) && memcmp(back.body, body, back.body_len) == 0
	       && strcmp(back.id, ev2.id) == 0, "%s: the event byte for byte", names[i]);
	    spool_event_free(&back);
	} else
	    ok(0, "%s: loads after the release", names[i]);
	unlink(path);
    }
    ok(held_stream(dir, &ev2, &res, &keeper, body) == 0 && spool_hold(&res) == NULL,
       "held again");
    spool_withdraw(&res);
    ok(access(path, F_OK) < 0 && errno == ENOENT && res.fd < 0, "withdrawn: gone");

    other = spool_path(dir, SPOOL_TMP, "other");
    ok(held_stream(dir, &ev2, &res, &keeper, body) == 0 && spool_hold(&res) == NULL,
       "held, then another file renamed over its name");
    write_file(other, "another");
    ok(rename(other, path) == 0, "(the other file in place)");
    spool_withdraw(&res);
    ok(access(path, F_OK) == 0 && stat(path, &st) == 0 && st.st_size == 7,
       "withdraw leaves a file that is not its own");

    /* path holds "another": an event with this id is there already */
    ok(held_stream(dir, &ev2, &res, &keeper, body) == 0, "streamed with active/ID there");
    res.sync = SPOOL_SYNC_OPTIMIZED;
    is_str(spool_hold(&res), NULL, "hold: no error");
    ok(!res.held && keeper.fd >= 0 && stat(path, &st) == 0 && st.st_size == 7,
       "not held, and the file there not replaced");
    ok(!spool_held_busy(res.tmp_path), "not held: not locked either (the runner must not "
       "wait for a delivery on the file it commits)");
    ok(fstat(keeper.fd, &st) == 0 && st.st_mtime <= wall_now(),
       "its mtime back to now: due once committed");
    spool_withdraw(&res);
    ok(keeper.fd >= 0 && fstat(keeper.fd, &st) == 0 && st.st_size == 0
       && stat(path, &st) == 0 && st.st_size == 7,
       "withdraw of an unheld reservation: discarded, the other file kept");
    ok(held_stream(dir, &ev2, &res, &keeper, body) == 0 && spool_hold(&res) == NULL
       && !res.held, "again not held");
    is_str(spool_unhold(&res), NULL, "release of an unheld reservation: the commit");
    if (spool_load(path, &back) == NULL) {
	ok(back.body_len == strlen(body) && back.held && back.mtime <= (long long) time(NULL),
	   "it replaced the file there, due now");
	spool_event_free(&back);
    } else
	ok(0, "it replaced the file there, due now");
    unlink(path);
    spool_keeper_close(&keeper);
    free(other);
    free(path);
}

static void rmdir_sub(const char *dir, const char *sub)
{
    char   *path = spool_path(dir, sub, NULL);
    char    cmd[400];

    snprintf(cmd, sizeof(cmd), "rm -rf %s", path);
    if (system(cmd) != 0)
	diag("cannot remove %s", path);
    free(path);
}

/*
 * test_removed_dirs - issue 14 item 8: a removed active/ (or tmp/, dead/)
 * is made again by the writer that needs it, before the reservation
 * (the plugin would otherwise save a mail copy per Postfix retry), and
 * again at commit when removed in between; the spool directory itself
 * is never made by a writer (an unmounted volume).
 */
static void test_removed_dirs(const char *dir, const struct spool_event *ev)
{
    struct spool_reservation res;
    struct spool_keeper keeper = SPOOL_KEEPER_INIT;
    char   *path = spool_path(dir, SPOOL_ACTIVE, ev->id), *gone;

    rmdir_sub(dir, SPOOL_ACTIVE);
    rmdir_sub(dir, SPOOL_TMP);
    rmdir_sub(dir, SPOOL_DEAD);
    is_str(spool_ready(dir), NULL, "spool_ready makes removed subdirectories again");
    rmdir_sub(dir, SPOOL_ACTIVE);
    rmdir_sub(dir, SPOOL_TMP);
    is_str(spool_reserve_kept(dir, ev, &res, &keeper), NULL,
	   "reserve with active/ and tmp/ removed: made again");
    rmdir_sub(dir, SPOOL_ACTIVE);
    is_str(spool_commit(&res), NULL, "commit with active/ removed since the reservation");
    ok(access(path, F_OK) == 0, "the event is in the new active/");
    spool_keeper_close(&keeper);
    rmdir_sub(dir, SPOOL_DEAD);
    is_str(spool_store(dir, SPOOL_DEAD, ev), NULL, "store into a removed dead/");
    gone = spool_path(dir, "gone", NULL);
    ok(spool_ready(gone) != NULL, "a missing spool directory is an error, not made");
    ok(access(gone, F_OK) < 0, "and stays missing");
    free(gone);
    free(path);
}

/*
 * test_recycle - a delivered event's file becomes a free file that the
 * next reservation takes instead of creating one; its old bytes never
 * reach the new event.
 */
static void test_recycle(const char *dir)
{
    struct spool_event big = {0}, small = {0}, back;
    struct spool_reservation res;
    struct spool_keeper keeper = SPOOL_KEEPER_INIT;
    char   *path, *body = malloc(5000);
    struct stat st;
    ino_t   ino;
    int     pool = 0;

    memset(body, 'B', 5000);
    big.id = "msg_big";
    big.url = small.url = "http://x/";
    big.body = body;
    big.body_len = 5000;
    small.id = "msg_small";
    small.body = "{}";
    small.body_len = 2;
    is_str(spool_store(dir, SPOOL_ACTIVE, &big), NULL, "store an event");
    path = spool_path(dir, SPOOL_ACTIVE, big.id);
    ok(stat(path, &st) == 0, "it is in active/");
    ino = st.st_ino;
    is_int(spool_recycle(dir, path, &pool), 0, "recycle it once delivered");
    ok(access(path, F_OK) < 0 && pool == 1 && spool_free_count(dir) == 1,
       "gone from active/, one free file in tmp/");
    free(path);
    is_str(spool_reserve_kept(dir, &small, &res, &keeper), NULL, "a reservation");
    is_int(spool_free_count(dir), 0, "took the free file");
    is_str(spool_commit(&res), NULL, "commit");
    path = spool_path(dir, SPOOL_ACTIVE, small.id);
    ok(stat(path, &st) == 0 && st.st_ino == ino, "the new event is the recycled inode");
    is_str(spool_load(path, &back), NULL, "and loads");
    ok(back.body_len == 2 && strcmp(back.body, "{}") == 0,
       "with its own body only: none of the old bytes");
    spool_event_free(&back);
    pool = SPOOL_FREE_MAX;
    is_int(spool_recycle(dir, path, &pool), 0, "pool full: removed instead");
    ok(access(path, F_OK) < 0 && spool_free_count(dir) == 0, "and not kept");
    errno = 0;
    ok(spool_recycle(dir, path, &pool) < 0 && errno == ENOENT, "gone already: ENOENT");
    spool_keeper_close(&keeper);
    free(path);
    free(body);
}

/*
 * test_stream_reuse - a streamed event in a free file longer, then
 * shorter, than itself, then in a keeper emptied by a discard: the
 * commit cuts what is left past the event only where something is
 * (it skips the ftruncate otherwise), and every event loads back with
 * its own bytes and size exactly.
 */
static void stream_one(const char *dir, struct spool_keeper *keeper, const char *id,
		               size_t len, int fill, int discard_first)
{
    struct spool_event ev = {0}, back;
    struct spool_reservation res;
    char   *body = malloc(len), *path = spool_path(dir, SPOOL_ACTIVE, id);
    struct stat st;

    memset(body, fill, len);
    ev.id = (char *) id;
    ev.url = "http://x/";
    if (discard_first) {		/* a long body, then a failed save */
	is_str(spool_reserve_stream(dir, &ev, &res, keeper), NULL, "reserve (discarded)");
	ok(pwrite(res.fd, "garbage", 7, (off_t) res.meta_len + 9000) == 7, "write far out");
	spool_discard(&res);
    }
    is_str(spool_reserve_stream(dir, &ev, &res, keeper), NULL, "reserve %s", id);
    ok(pwrite(res.fd, body, len, (off_t) res.meta_len) == (ssize_t) len, "stream %zu bytes", len);
    ev.body_len = len;
    is_str(spool_stream_done(&res), NULL, "header");
    {
	size_t  want = res.meta_len + len;

	is_str(spool_commit(&res), NULL, "commit %s", id);
	ok(stat(path, &st) == 0 && (size_t) st.st_size == want, "%s: file is the event's size", id);
    }
    is_str(spool_load(path, &back), NULL, "%s loads", id);
    ok(back.body_len == len && memcmp(back.body, body, len) == 0, "%s: its bytes exactly", id);
    spool_event_free(&back);
    free(body);
    free(path);
}

static void test_stream_reuse(const char *dir)
{
    struct spool_keeper keeper = SPOOL_KEEPER_INIT;
    char   *path;
    int     pool = 0;

    stream_one(dir, &keeper, "msg_sr_big", 7000, 'B', 0);
    path = spool_path(dir, SPOOL_ACTIVE, "msg_sr_big");
    is_int(spool_recycle(dir, path, &pool), 0, "the long one becomes a free file");
    free(path);
    stream_one(dir, &keeper, "msg_sr_small", 300, 's', 0);	/* in the longer file */
    path = spool_path(dir, SPOOL_ACTIVE, "msg_sr_small");
    is_int(spool_recycle(dir, path, &pool), 0, "the short one becomes a free file");
    free(path);
    stream_one(dir, &keeper, "msg_sr_grow", 9000, 'g', 0);	/* in the shorter file */
    stream_one(dir, &keeper, "msg_sr_after", 100, 'a', 1);	/* keeper after a discard */
    ok(spool_free_count(dir) == 0, "every free file was taken");
    spool_keeper_close(&keeper);
    for (int i = 0; i < 2; i++) {
	path = spool_path(dir, SPOOL_ACTIVE, i ? "msg_sr_grow" : "msg_sr_after");
	unlink(path);
	free(path);
    }
}

/*
 * test_big_load - an event from SPOOL_MAP_MIN bytes on is mapped, not
 * read into memory (lmtp-webhook-spool holds concurrency of them), and
 * stores and loads back byte for byte all the same.
 */
static void test_big_load(const char *dir)
{
    struct spool_event big = {0}, back, again;
    size_t  len = SPOOL_MAP_MIN + 12345;
    char   *body = malloc(len), *path;

    for (size_t i = 0; i < len; i++)		/* any byte but NUL: no body has one */
	body[i] = (char) (1 + (i * 7 + (i >> 9)) % 255);
    big.id = "msg_mapped";
    big.url = "http://x/";
    big.body = body;
    big.body_len = len;
    big.attempts = 3;
    is_str(spool_store(dir, SPOOL_ACTIVE, &big), NULL, "store a big event");
    path = spool_path(dir, SPOOL_ACTIVE, big.id);
    is_str(spool_load(path, &back), NULL, "load it");
    ok(back.map != NULL, "it is mapped, not read into memory");
    ok(back.body_len == len && memcmp(back.body, body, len) == 0, "body byte for byte");
    back.attempts = 4;
    is_str(spool_store(dir, SPOOL_ACTIVE, &back), NULL, "rewritten from the mapping");
    spool_event_free(&back);
    is_str(spool_load(path, &again), NULL, "load the rewrite");
    ok(again.attempts == 4 && again.body_len == len && memcmp(again.body, body, len) == 0,
       "new header, same body");
    ok(!spool_event_spoiled(&again), "not spoiled");
    /* a page of zeros where a crash left a block unwritten: not an event */
    {
	struct spool_event holed = big, none;
	char   *path2;

	holed.id = "msg_holed";
	holed.body = malloc(len);
	memcpy(holed.body, body, len);
	memset(holed.body + 8192, 0, 4096);
	is_str(spool_store(dir, SPOOL_ACTIVE, &holed), NULL, "store an event with a page of zeros");
	path2 = spool_path(dir, SPOOL_ACTIVE, holed.id);
	errno = 0;
	ok(spool_load(path2, &none) != NULL && errno == EBADMSG,
	   "a body holding NUL bytes is not an event (EBADMSG)");
	holed.body[8192] = 'x';
	memset(holed.body + 8193, 'y', 4095);
	holed.body[len - 1] = 0;
	is_str(spool_store(dir, SPOOL_ACTIVE, &holed), NULL, "one NUL, in its last byte");
	errno = 0;
	ok(spool_load(path2, &none) != NULL && errno == EBADMSG, "refused as well");
	unlink(path2);
	free(path2);
	free(holed.body);
    }
    /* cut by hand while mapped: zeros past the cut and "spoiled", no SIGBUS */
    spool_map_guard();
    ok(truncate(path, 100) == 0, "the file cut to 100 bytes while mapped");
    {
	size_t  nonzero = 0;

	for (size_t i = 8192; i < again.body_len; i++)
	    nonzero += ((volatile char *) again.body)[i] != 0;
	is_int((long) nonzero, 0, "the pages past the cut read as zeros");
    }
    ok(spool_event_spoiled(&again), "and the event is spoiled");
    spool_event_free(&again);
    errno = 0;
    ok(spool_load(path, &again) != NULL && errno == EBADMSG, "the cut file is no event");
    unlink(path);
    free(path);
    free(body);
}

int     main(void)
{
    char    dir[] = "/tmp/spool_test.XXXXXX";
    struct spool_event ev = {0}, back;
    struct spool_reservation res;
    struct stat st;
    char   *path;

    if (mkdtemp(dir) == NULL)
	return (1);
    is_str(spool_init(dir), NULL, "spool_init creates tmp/, active/, dead/");
    is_str(spool_init(dir), NULL, "and again on an existing spool");
    ev.id = "msg_0123abcd";
    ev.url = "https://acme.pulse.internal/api/bills/inbound";
    ev.body = "{\"type\":\"message.received\"}";
    ev.body_len = strlen(ev.body);
    ev.created = 1000;
    ev.attempts = 1;
    ev.next_attempt = 2000000000;

    is_str(spool_reserve(dir, &ev, &res), NULL, "reserve");
    is_int(count(dir, SPOOL_TMP), 0, "reservation names are not event ids");
    is_int(count(dir, SPOOL_ACTIVE), 0, "nothing active before the commit");
    spool_discard(&res);
    {
	char   *tmp = spool_path(dir, SPOOL_TMP, NULL);
	int     n = 0;
	char    cmd[300];

	snprintf(cmd, sizeof(cmd), "test -z \"$(ls -A %s)\"", tmp);
	n = system(cmd);
	is_int(n, 0, "discard removes the reservation");
	free(tmp);
    }
    is_str(spool_reserve(dir, &ev, &res), NULL, "reserve again");
    is_str(spool_commit(&res), NULL, "commit");
    is_int(count(dir, SPOOL_ACTIVE), 1, "one active event");
    path = spool_path(dir, SPOOL_ACTIVE, ev.id);
    ok(stat(path, &st) == 0 && st.st_mtime == 2000000000, "mtime is the next attempt");
    ok((st.st_mode & 0777) == 0600, "event files are 0600");
    is_str(spool_load(path, &back), NULL, "load");
    is_str(back.id, ev.id, "id round trip");
    is_str(back.url, ev.url, "url round trip");
    is_str(back.body, ev.body, "body round trip");
    is_int(back.attempts, 1, "attempts");
    is_int(back.created, 1000, "created");
    ok(back.last_error == NULL, "no last_error");
    back.last_error = strdup("HTTP status 500");
    back.attempts = 2;
    is_str(spool_store(dir, SPOOL_ACTIVE, &back), NULL, "store over the same id");
    spool_event_free(&back);
    is_int(count(dir, SPOOL_ACTIVE), 1, "still one event: same id replaces");
    is_str(spool_load(path, &back), NULL, "load again");
    is_str(back.last_error, "HTTP status 500", "last_error kept");
    is_str(spool_store(dir, SPOOL_DEAD, &back), NULL, "store into dead/");
    is_int(count(dir, SPOOL_DEAD), 1, "one dead event");
    spool_event_free(&back);

    write_file(path, "{\"id\":\"x\"");
    ok(spool_load(path, &back) != NULL && strstr(spool_load(path, &back), path) != NULL,
       "truncated JSON: error names the file");
    write_file(path, "{\"id\":\"x\",\"url\":\"u\",\"created\":1,\"attempts\":1,"
	       "\"next_attempt\":1,\"body_length\":7}\nabc");
    ok(spool_load(path, &back) != NULL, "body shorter than body_length: error");
    write_file(path, "{\"id\":\"x\",\"url\":\"u\",\"created\":1,\"attempts\":1,"
	       "\"next_attempt\":1,\"last_error\":[],\"body_length\":1}\nb");
    ok(spool_load(path, &back) != NULL, "last_error not a string: error");
    write_file(path, "{\"id\":\"msg_0123abcd\",\"url\":\"u\",\"created\":1,\"attempts\":1,"
	       "\"next_attempt\":1,\"body_length\":4}\nb\n\nc");
    is_str(spool_load(path, &back), NULL, "a body with newlines loads");
    is_str(back.body, "b\n\nc", "and is kept byte for byte");
    spool_event_free(&back);
    write_file(path, "[]\n");
    ok(spool_load(path, &back) != NULL, "not an object: error");
    /* not events, however they got into active/: EBADMSG, never a hang */
    write_file(path, "{\"id\":\"msg_other\",\"url\":\"u\",\"created\":1,\"attempts\":1,"
	       "\"next_attempt\":1,\"body_length\":1}\nb");
    errno = 0;
    ok(spool_load(path, &back) != NULL && errno == EBADMSG,
       "an id that is not the file name: not an event (EBADMSG)");
    unlink(path);
    ok(mkfifo(path, 0600) == 0, "a FIFO in its place");
    errno = 0;
    ok(spool_load(path, &back) != NULL && errno == EBADMSG, "a FIFO: EBADMSG, no hang");
    unlink(path);
    ok(symlink("/etc/hostname", path) == 0, "a symbolic link in its place");
    errno = 0;
    ok(spool_load(path, &back) != NULL && errno == EBADMSG, "a symbolic link: EBADMSG");
    unlink(path);
    /* issue 16: the route's secret files, kept as paths */
    {
	struct spool_event rot = ev;

	rot.secret_files[0] = "/etc/dovecot/acme.secret";
	rot.secret_files[1] = "/etc/dovecot/acme.next";
	rot.secret_count = 2;
	is_str(spool_store(dir, SPOOL_ACTIVE, &rot), NULL, "store with two secret files");
	is_str(spool_load(path, &back), NULL, "and load");
	ok(back.secret_count == 2 && strcmp(back.secret_files[0], rot.secret_files[0]) == 0
	   && strcmp(back.secret_files[1], rot.secret_files[1]) == 0,
	   "both paths kept, in order");
	is_str(spool_store(dir, SPOOL_ACTIVE, &back), NULL, "stored again (an attempt's rewrite)");
	spool_event_free(&back);
	is_str(spool_load(path, &back), NULL, "loads again");
	is_int(back.secret_count, 2, "the paths survive the rewrite");
	spool_event_free(&back);
    }
    write_file(path, "{\"id\":\"x\",\"url\":\"u\",\"created\":1,\"attempts\":1,"
	       "\"next_attempt\":1,\"body_length\":1,\"secret_files\":[\"a\"]}\nb");
    ok(spool_load(path, &back) != NULL, "a relative secret file: error");
    write_file(path, "{\"id\":\"x\",\"url\":\"u\",\"created\":1,\"attempts\":1,"
	       "\"next_attempt\":1,\"body_length\":1,\"secret_files\":[\"/a\",\"/b\",\"/c\"]}\nb");
    ok(spool_load(path, &back) != NULL, "three secret files: error");
    write_file(path, "{\"id\":\"x\",\"url\":\"u\",\"created\":1,\"attempts\":1,"
	       "\"next_attempt\":1,\"body_length\":1,\"secret_files\":[]}\nb");
    ok(spool_load(path, &back) != NULL, "an empty secret_files: error");
    write_file(path, "{\"id\":\"x\",\"url\":\"u\",\"created\":1,\"attempts\":1,"
	       "\"next_attempt\":1,\"body_length\":1,\"secret_files\":\"/a\"}\nb");
    ok(spool_load(path, &back) != NULL, "secret_files not an array: error");

    {
	char    name[SPOOL_BURY_NAME], *junk = spool_path(dir, SPOOL_ACTIVE, "msg_junk");

	write_file(junk, "junk one");
	is_int(spool_bury(dir, "msg_junk", junk, name), 0, "bury a file that is no event");
	is_str(name, "msg_junk", "as dead/ID");
	write_file(junk, "junk two");
	is_int(spool_bury(dir, "msg_junk", junk, name), 0, "bury another of that name");
	ok(strncmp(name, "msg_junk-notevent-", 18) == 0 && spool_id_ok(name),
	   "beside the first, under a name list shows (%s)", name);
	free(junk);
	junk = spool_path(dir, SPOOL_DEAD, "msg_junk");
	{
	    FILE   *f = fopen(junk, "r");
	    char    got[32] = "";

	    ok(f && fgets(got, sizeof(got), f) && strcmp(got, "junk one") == 0,
	       "the first kept, not replaced");
	    if (f)
		fclose(f);
	}
	unlink(junk);
	free(junk);
	junk = spool_path(dir, SPOOL_DEAD, name);
	unlink(junk);
	free(junk);
    }
    ok(spool_id_ok("msg_0123abcd"), "plain id accepted");
    ok(!spool_id_ok("../etc/passwd"), "path in id refused");
    ok(!spool_id_ok(".hidden") && !spool_id_ok(""), "dot file and empty id refused");
    ok(spool_init("/proc/no/such/dir") != NULL, "spool_init on an impossible path: error");
    free(path);
    test_keeper_swept(dir, &ev);
    test_stream(dir, &ev);
    test_update(dir, &ev);
    test_hold(dir, &ev);
    test_removed_dirs(dir, &ev);
    test_recycle(dir);
    test_stream_reuse(dir);
    test_big_load(dir);
    test_sweep(dir);
    test_sweep_steps(dir);
    {
	char    cmd[300];

	snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
	if (system(cmd) != 0)
	    diag("cannot remove %s", dir);
    }
    return (tap_done());
}
