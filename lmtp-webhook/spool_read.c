/*
 * NAME
 *	spool_read 3
 * SUMMARY
 *	reading the webhook spool: events and listings
 * SYNOPSIS
 *	#include "spool.h"
 *
 *	const char *spool_load(path, &event)
 *	void	spool_map_guard()
 *	int	spool_event_spoiled(&event)
 *	char	**spool_list(dir, subdir, &count)
 *	void	spool_list_free(names, count)
 *	void	spool_event_free(&event)
 *	void	spool_event_body_free(&event)
 *	long long spool_mtime_due(&stat)
 * DESCRIPTION
 *	The reading half of spool(3) (see spool.c for the file format).
 *	spool_load() reads an event file whole, or maps it read-only from
 *	SPOOL_MAP_MIN (1 MB) on: the body then points into the mapping
 *	and is not NUL-terminated, and spool_event_free() unmaps it.
 *	spool_event_body_free() lets go of the body alone (before the
 *	event's file is reused). spool_list() returns the event ids in a
 *	subdirectory, sorted.
 *
 *	An event's mtime is its next attempt, or the end of its hold
 *	(spool.c, spool_hold.c), only when it was set ahead of the file's
 *	change (its ctime): a file written, released or copied in has its
 *	mtime at or before its ctime and is due now; so is one whose ctime
 *	is ahead of the clock (stepped back since: the schedule was the old
 *	clock's). spool_mtime_due()
 *	returns that time, or 0 for due now, and spool_load() keeps it as
 *	the event's mtime. Read from the mtime alone, a clock stepped back
 *	an hour left every new event an hour in the future: none was
 *	posted for the hour.
 *
 *	A mapped file truncated under its reader (by hand: ": >
 *	active/ID") makes each later read of the cut pages a SIGBUS, which
 *	killed lmtp-webhook-spool run mid-POST with every attempt in
 *	flight. After spool_map_guard() (the runner calls it), such a fault
 *	maps a page of zeros there instead and marks the event spoiled:
 *	its reader (libcurl sending it, the signature) goes on, and
 *	spool_event_spoiled() tells the runner that what it read was not
 *	the event. A fault anywhere else still kills.
 *
 *	A body holding a NUL byte is not an event (EBADMSG): event bodies
 *	are JSON, and zeros are what a crash between the commit's rename
 *	and its sync (mail_fsync = optimized) leaves where blocks were not
 *	written; the runner moves such a file to dead/ and Postfix's retry
 *	(LMTP had not answered) brings the whole event under the same id.
 * DIAGNOSTICS
 *	spool_load() returns NULL, or a message in a static buffer naming
 *	the file; errno is EBADMSG when the file is there but is not an
 *	event file.
 */

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <stdio.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>

#include "spool.h"
#include "spool_int.h"
#include "wh_alloc.h"

/* the mappings the fault handler may mend: more at once are read */
#define SPOOL_MAPS_MAX	1024

static struct {
    char   *volatile addr;
    volatile size_t len;
    volatile sig_atomic_t spoiled;
} spool_maps[SPOOL_MAPS_MAX];
static long spool_page;

/*
 * spool_map_fault - SIGBUS: a page of zeros over a cut page of a mapped
 * event (mmap() is a bare system call on Linux: no lock, no malloc), or
 * the default action back, so that the fault, retried, kills as before.
 */
static void spool_map_fault(int sig, siginfo_t *info, void *context)
{
    static const struct sigaction dfl = {.sa_handler = SIG_DFL};
    uintptr_t at = (uintptr_t) info->si_addr;

    (void) context;
    for (int i = 0; i < SPOOL_MAPS_MAX; i++) {
	uintptr_t base = (uintptr_t) spool_maps[i].addr;

	if (base != 0 && at >= base && at < base + spool_maps[i].len
	    && mmap((void *) (at & ~(uintptr_t) (spool_page - 1)), (size_t) spool_page,
		    PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0) != MAP_FAILED) {
	    spool_maps[i].spoiled = 1;
	    return;
	}
    }
    sigaction(sig, &dfl, NULL);
}

void    spool_map_guard(void)
{
    struct sigaction sa;

    memset(&sa, 0, sizeof(sa));
    spool_page = sysconf(_SC_PAGESIZE);
    sa.sa_sigaction = spool_map_fault;
    sa.sa_flags = SA_SIGINFO;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGBUS, &sa, NULL);
}

static int spool_map_remember(char *addr, size_t len)
{
    for (int i = 0; i < SPOOL_MAPS_MAX; i++) {
	if (spool_maps[i].addr == NULL) {
	    spool_maps[i].spoiled = 0;
	    spool_maps[i].len = len;
	    spool_maps[i].addr = addr;
	    return (0);
	}
    }
    return (-1);
}

static void spool_map_forget(const char *addr)
{
    for (int i = 0; i < SPOOL_MAPS_MAX; i++)
	if (spool_maps[i].addr == addr)
	    spool_maps[i].addr = NULL;
}

/* spool_event_spoiled - a read of the event's mapping found its file cut */

int     spool_event_spoiled(const struct spool_event *ev)
{
    for (int i = 0; ev->map != NULL && i < SPOOL_MAPS_MAX; i++)
	if (spool_maps[i].addr == ev->map)
	    return (spool_maps[i].spoiled);
    return (0);
}

/*
 * spool_read_file - the whole file: read into memory (NUL-terminated),
 * or from SPOOL_MAP_MIN bytes on mapped read-only (*mapped_r = 1), so
 * that what lmtp-webhook-spool holds of concurrency events in flight
 * is page cache the kernel can drop, not its own memory.
 */
static char *spool_read_file(const char *path, size_t *len_r, int *mapped_r,
			             struct stat *st_r)
{
    struct stat st;
    char   *data;
    size_t  got = 0;
    ssize_t n;
    /* no O_NOFOLLOW, no O_NONBLOCK: a FIFO dropped into active/ hung
       the runner (and list) in open(); a symbolic link had it post, as
       its user, whatever file the link named */
    int     fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK);

    *mapped_r = 0;
    if (fd < 0 && errno == ELOOP) {
	snprintf(spool_err, sizeof(spool_err), "%s: not a spooled event: a symbolic link",
		 path);
	errno = EBADMSG;
	return (NULL);
    }
    if (fd < 0 || fstat(fd, &st) < 0) {
	spool_fail("cannot open", path);
	if (fd >= 0)
	    close(fd);
	return (NULL);
    }
    *st_r = st;
    if (!S_ISREG(st.st_mode)) {
	snprintf(spool_err, sizeof(spool_err), "%s: not a spooled event: not a regular file",
		 path);
	close(fd);
	errno = EBADMSG;
	return (NULL);
    }
    if (st.st_size >= SPOOL_MAP_MIN) {
	data = mmap(NULL, (size_t) st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
	if (data == MAP_FAILED) {
	    close(fd);
	    spool_fail("cannot map", path);
	    return (NULL);
	}
	if (spool_map_remember(data, (size_t) st.st_size) == 0) {
	    close(fd);
	    *mapped_r = 1;
	    *len_r = (size_t) st.st_size;
	    return (data);
	}
	munmap(data, (size_t) st.st_size);	/* no room to guard it: read */
    }
    data = wh_malloc((size_t) st.st_size + 1);
    while (got < (size_t) st.st_size && (n = read(fd, data + got, st.st_size - got)) > 0)
	got += (size_t) n;
    close(fd);
    data[got] = 0;
    *len_r = got;
    return (data);
}

/* spool_secret_files - the optional "secret_files": 1 or 2 absolute paths */

static int spool_secret_files(json_t *files, struct spool_event *ev)
{
    size_t  n;

    if (files == NULL)
	return (0);
    if (!json_is_array(files) || (n = json_array_size(files)) < 1 || n > SPOOL_MAX_SECRETS)
	return (-1);
    for (size_t i = 0; i < n; i++) {
	const char *path = json_string_value(json_array_get(files, i));

	if (path == NULL || *path != '/')
	    return (-1);
    }
    for (size_t i = 0; i < n; i++)
	ev->secret_files[ev->secret_count++] =
	    wh_strdup(json_string_value(json_array_get(files, i)));
    return (0);
}

/*
 * spool_base - the file name of a path: an event's id must be its file
 * name. A copy under another name (cp, a backup moved back) was posted,
 * then its delivery removed the file of its id, another event's, and
 * left the copy to be posted again at every scan.
 */
static const char *spool_base(const char *path)
{
    const char *slash = strrchr(path, '/');

    return (slash ? slash + 1 : path);
}

static void spool_release(char *data, size_t len, int mapped)
{
    if (mapped) {
	spool_map_forget(data);
	munmap(data, len);
    }
    else
	free(data);
}

long long spool_mtime_due(const struct stat *st)
{
    /* changed after now: the clock was stepped back since, and what the
       mtime scheduled under the old clock (a retry 4 s on) would wait
       for the step too (helper-80: an hour) */
    if ((long long) st->st_ctime > (long long) time(NULL) + 1)
	return (0);
    if (st->st_mtim.tv_sec > st->st_ctim.tv_sec
	|| (st->st_mtim.tv_sec == st->st_ctim.tv_sec
	    && st->st_mtim.tv_nsec > st->st_ctim.tv_nsec))
	return ((long long) st->st_mtime);
    return (0);
}

const char *spool_load(const char *path, struct spool_event *ev)
{
    json_error_t jerr;
    json_t *j, *last_error = NULL, *secret_files = NULL, *held = NULL;
    const char *id, *url;
    json_int_t created, attempts, next_attempt, body_len;
    char   *data, *nl;
    size_t  len;
    int     mapped;
    struct stat st;

    memset(ev, 0, sizeof(*ev));
    memset(&st, 0, sizeof(st));
    if ((data = spool_read_file(path, &len, &mapped, &st)) == NULL)
	return (spool_err);
    if ((nl = memchr(data, '\n', len)) == NULL
	|| (j = json_loadb(data, nl - data, 0, &jerr)) == NULL) {
	snprintf(spool_err, sizeof(spool_err), "%s: not a spooled event: %s", path,
		 nl ? jerr.text : "no header line");
	spool_release(data, len, mapped);
	errno = EBADMSG;
	return (spool_err);
    }
    jerr.text[0] = 0;
    if (json_unpack_ex(j, &jerr, 0, "{s:s, s:s, s:I, s:I, s:I, s?o, s:I, s?o, s?o}",
		       "id", &id, "url", &url, "created", &created,
		       "attempts", &attempts, "next_attempt", &next_attempt,
		       "last_error", &last_error, "body_length", &body_len,
		       "secret_files", &secret_files, "held", &held) != 0
	|| (last_error && !json_is_string(last_error) && !json_is_null(last_error))
	|| (held && !json_is_boolean(held))
	|| body_len != (json_int_t) (len - (nl + 1 - data))
	|| spool_secret_files(secret_files, ev) < 0
	|| strcmp(id, spool_base(path)) != 0) {
	spool_event_free(ev);
	snprintf(spool_err, sizeof(spool_err), "%s: not a spooled event: %s", path,
		 jerr.text[0] ? jerr.text : "last_error not a string, held not a boolean, secret_files not "
		 "one or two absolute paths, truncated body, or an id that is not "
		 "its file name");
	json_decref(j);
	spool_release(data, len, mapped);
	errno = EBADMSG;
	return (spool_err);
    }
    /* a body is JSON, never a NUL: zeros are blocks a crash left
       unwritten under the event's name (mail_fsync = optimized syncs
       after the rename, and LMTP had not answered: Postfix retries) */
    if (memchr(nl + 1, 0, (size_t) body_len) != NULL) {
	snprintf(spool_err, sizeof(spool_err), "%s: not a whole event: its body holds NUL "
		 "bytes (not written whole before a crash?)", path);
	spool_event_free(ev);			/* secret_files, copied above */
	json_decref(j);
	spool_release(data, len, mapped);
	errno = EBADMSG;
	return (spool_err);
    }
    ev->id = wh_strdup(id);
    ev->url = wh_strdup(url);
    ev->created = created;
    ev->attempts = (int) attempts;
    ev->next_attempt = next_attempt;
    ev->held = held != NULL && json_is_true(held);
    ev->mtime = spool_mtime_due(&st);
    if ((long long) st.st_ctime > (long long) time(NULL) + 1)
	ev->next_attempt = 0;			/* the old clock's: due now */
    ev->dev = st.st_dev;
    ev->ino = st.st_ino;
    ev->last_error = json_is_string(last_error) ? wh_strdup(json_string_value(last_error)) : NULL;
    ev->body_len = (size_t) body_len;
    json_decref(j);
    if (mapped) {			/* the body stays in the mapping */
	ev->map = data;
	ev->map_len = len;
	ev->body = nl + 1;
	return (NULL);
    }
    ev->body = wh_malloc(ev->body_len + 1);
    memcpy(ev->body, nl + 1, ev->body_len);
    ev->body[ev->body_len] = 0;
    free(data);
    return (NULL);
}

static int spool_name_cmp(const void *a, const void *b)
{
    return (strcmp(*(char *const *) a, *(char *const *) b));
}

char  **spool_list(const char *dir, const char *subdir, int *count)
{
    return (spool_list_foreign(dir, subdir, count, NULL, NULL));
}

/*
 * spool_list_foreign - spool_list(), and foreign() called for every other
 * name there (not an event's: "msg_x.bak", "bill.eml", 129 characters;
 * "." and ".." excepted): a file under such a name was never posted,
 * listed or moved, and nothing said so.
 */
char  **spool_list_foreign(const char *dir, const char *subdir, int *count,
			           void (*foreign) (const char *name, void *context),
			           void *context)
{
    char   *path = spool_path(dir, subdir, NULL);
    DIR    *d = opendir(path);
    struct dirent *de;
    char  **names = NULL;
    int     n = 0;

    free(path);
    *count = 0;
    if (d == NULL)
	return (NULL);
    while ((de = readdir(d)) != NULL) {
	if (!spool_id_ok(de->d_name)) {
	    if (foreign && strcmp(de->d_name, ".") != 0 && strcmp(de->d_name, "..") != 0)
		foreign(de->d_name, context);
	    continue;
	}
	names = wh_realloc(names, (n + 1) * sizeof(*names));
	names[n++] = wh_strdup(de->d_name);
    }
    closedir(d);
    if (n > 1)
	qsort(names, n, sizeof(*names), spool_name_cmp);
    *count = n;
    return (names);
}

void    spool_list_free(char **names, int count)
{
    for (int i = 0; names && i < count; i++)
	free(names[i]);
    free(names);
}

/* spool_event_body_free - the body only (unmapped: its file may be reused) */

void    spool_event_body_free(struct spool_event *ev)
{
    if (ev->map != NULL) {
	spool_map_forget(ev->map);
	munmap(ev->map, ev->map_len);
    }
    else
	free(ev->body);
    ev->map = NULL;
    ev->body = NULL;
    ev->body_len = 0;
}

void    spool_event_free(struct spool_event *ev)
{
    free(ev->id);
    free(ev->url);
    spool_event_body_free(ev);
    free(ev->last_error);
    for (int i = 0; i < ev->secret_count; i++)
	free(ev->secret_files[i]);
    memset(ev, 0, sizeof(*ev));
}
