/*
 * NAME
 *	tabfile 3
 * SUMMARY
 *	read and atomically replace a table file, under a lock
 * SYNOPSIS
 *	#include "tabfile.h"
 *
 *	const char *tabfile_lock(path, &fd)
 *	const char *tabfile_read(path, &text)
 *	const char *tabfile_replace(path, text)
 *
 *	void	tabfile_split(text, &lines)
 *	char	*tabfile_join(&lines)
 *	void	tabfile_set(&lines, lineno, text)
 *	void	tabfile_append(&lines, text)
 *	void	tabfile_lines_free(&lines)
 * DESCRIPTION
 *	tabfile_lock() takes an exclusive flock(2) on the directory that
 *	holds path (symbolic links resolved) and returns its descriptor;
 *	closing it releases the lock. The directory, not the file, is
 *	locked: the file itself is replaced by rename(2), and a lock on
 *	the old inode would not stop a second writer that opened the new
 *	one. Every milter-dkim-keygen rotate takes this lock before it
 *	reads the KeyTable and keeps it until both tables are written.
 *
 *	tabfile_replace() writes text to a temporary file in the same
 *	directory with the mode, owner and group of the file it replaces,
 *	fsync()s it, rename()s it over path and fsync()s the directory:
 *	a reader (the milter at SIGHUP) sees the old table or the new
 *	one, never a part, and a crash leaves one of the two on disk. A
 *	symbolic link is followed: its target is replaced, the link kept.
 *
 *	tabfile_split() cuts a table into lines at each newline exactly
 *	as tables(3) numbers them (line N is lines.line[N - 1]; a final
 *	newline leaves an empty last line); tabfile_join() puts them back
 *	byte for byte, skipping lines set to NULL (deleted).
 *	tabfile_append() adds a line before that empty last one (adding
 *	the newline a file lacked), ending in CR LF when the first line
 *	does.
 * DIAGNOSTICS
 *	NULL on success, or an error text in static storage (overwritten
 *	by the next call); the temporary file is removed on failure.
 */

#include "build_config.h"

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "tabfile.h"
#include "xalloc.h"

#define TABFILE_MAX	(64 * 1024 * 1024)	/* a table larger is not a table */

static char tabfile_err[PATH_MAX + 256];

static const char *tabfile_fail(const char *what, const char *path)
{
    snprintf(tabfile_err, sizeof(tabfile_err), "%s: %s: %s", path, what, strerror(errno));
    return (tabfile_err);
}

/* tabfile_dir - the directory of path's final target (malloc'ed) */

static char *tabfile_dir(const char *path, char **target)
{
    char    real[PATH_MAX], *copy;

    if (realpath(path, real) == NULL)
	return (NULL);
    if (target)
	*target = xstrdup(real);
    copy = xstrdup(real);
    real[0] = 0;
    snprintf(real, sizeof(real), "%s", dirname(copy));
    free(copy);
    return (xstrdup(real));
}

const char *tabfile_lock(const char *path, int *fd)
{
    char   *dir = tabfile_dir(path, NULL);

    *fd = -1;
    if (dir == NULL)
	return (tabfile_fail("cannot resolve", path));
    if ((*fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) < 0) {
	tabfile_fail("cannot open", dir);
	free(dir);
	return (tabfile_err);
    }
    while (flock(*fd, LOCK_EX) < 0) {
	if (errno != EINTR) {
	    tabfile_fail("cannot lock", dir);
	    close(*fd);
	    *fd = -1;
	    free(dir);
	    return (tabfile_err);
	}
    }
    free(dir);
    return (NULL);
}

const char *tabfile_read(const char *path, char **text)
{
    FILE   *fp = fopen(path, "r");
    size_t  cap = 4096, len = 0, got;

    *text = NULL;
    if (fp == NULL)
	return (tabfile_fail("cannot open", path));
    *text = xmalloc(cap);
    while ((got = fread(*text + len, 1, cap - len - 1, fp)) > 0) {
	len += got;
	if (len + 1 == cap) {
	    if (cap >= TABFILE_MAX) {
		fclose(fp);
		free(*text);
		*text = NULL;
		errno = EFBIG;
		return (tabfile_fail("cannot read", path));
	    }
	    *text = xrealloc(*text, cap *= 2);
	}
    }
    if (ferror(fp)) {
	fclose(fp);
	free(*text);
	*text = NULL;
	return (tabfile_fail("cannot read", path));
    }
    fclose(fp);
    (*text)[len] = 0;
    if (memchr(*text, 0, len) != NULL) {
	free(*text);
	*text = NULL;
	snprintf(tabfile_err, sizeof(tabfile_err), "%s: contains a NUL byte: not a table",
		 path);
	return (tabfile_err);
    }
    return (NULL);
}

/* tabfile_write_all - write, fsync and close fd; 0 or -1 with errno */

static int tabfile_write_all(int fd, const char *text)
{
    size_t  len = strlen(text), done = 0;
    ssize_t n;

    while (done < len) {
	if ((n = write(fd, text + done, len - done)) < 0) {
	    if (errno == EINTR)
		continue;
	    return (-1);
	}
	done += n;
    }
    return (fsync(fd));
}

const char *tabfile_replace(const char *path, const char *text)
{
    char   *target = NULL, *dir = tabfile_dir(path, &target), *tmp;
    struct stat st;
    int     fd, dfd, saved;

    if (dir == NULL)
	return (tabfile_fail("cannot resolve", path));
    if (stat(target, &st) != 0) {
	tabfile_fail("cannot stat", target);
	free(dir);
	free(target);
	return (tabfile_err);
    }
    tmp = xasprintf("%s/.%s.XXXXXX", dir, strrchr(target, '/') + 1);
    if ((fd = mkstemp(tmp)) < 0) {
	tabfile_fail("cannot create a temporary file", tmp);
	free(tmp);
	free(dir);
	free(target);
	return (tabfile_err);
    }
    /* mode and ownership first: the content is never visible otherwise */
    if (fchmod(fd, st.st_mode & 07777) != 0
	|| (fchown(fd, st.st_uid, st.st_gid) != 0 && errno != EPERM)
	|| tabfile_write_all(fd, text) != 0 || close(fd) != 0
	|| (fd = -1, rename(tmp, target) != 0)) {
	saved = errno;
	if (fd >= 0)
	    close(fd);
	unlink(tmp);
	errno = saved;
	tabfile_fail("cannot replace", target);
    } else {
	tabfile_err[0] = 0;
	if ((dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) >= 0) {
	    if (fsync(dfd) != 0)		/* the rename is done; say so */
		tabfile_fail("fsync of the directory", dir);
	    close(dfd);
	}
    }
    free(tmp);
    free(dir);
    free(target);
    return (tabfile_err[0] ? tabfile_err : NULL);
}

void    tabfile_split(const char *text, struct tabfile_lines *l)
{
    const char *nl;

    l->line = NULL;
    l->count = 0;
    for (;;) {
	l->line = xrealloc(l->line, sizeof(char *) * (l->count + 1));
	nl = strchr(text, '\n');
	l->line[l->count++] = nl ? xstrndup(text, nl - text) : xstrdup(text);
	if (nl == NULL)
	    break;
	text = nl + 1;
    }
}

char   *tabfile_join(const struct tabfile_lines *l)
{
    size_t  len = 1;
    char   *out, *p;
    int     first = 1;

    for (int i = 0; i < l->count; i++)
	if (l->line[i])
	    len += strlen(l->line[i]) + 1;
    p = out = xmalloc(len);
    for (int i = 0; i < l->count; i++) {
	if (l->line[i] == NULL)
	    continue;
	if (!first)
	    *p++ = '\n';
	first = 0;
	p = stpcpy(p, l->line[i]);
    }
    *p = 0;
    return (out);
}

void    tabfile_set(struct tabfile_lines *l, int lineno, char *text)
{
    free(l->line[lineno - 1]);
    l->line[lineno - 1] = text;
}

/* tabfile_append - before the empty line after the last newline (see above) */

void    tabfile_append(struct tabfile_lines *l, const char *text)
{
    const char *first = l->line[0] ? l->line[0] : "";
    int     crlf = *first && first[strlen(first) - 1] == '\r';

    l->line = xrealloc(l->line, sizeof(char *) * (l->count + 2));
    if (l->line[l->count - 1] == NULL || *l->line[l->count - 1] != 0) {
	if (crlf && l->line[l->count - 1]) {	/* the file lacked its last newline */
	    char   *with = xasprintf("%s\r", l->line[l->count - 1]);

	    free(l->line[l->count - 1]);
	    l->line[l->count - 1] = with;
	}
	l->line[l->count++] = xstrdup("");
    }
    l->line[l->count] = l->line[l->count - 1];
    l->line[l->count - 1] = xasprintf("%s%s", text, crlf ? "\r" : "");
    l->count++;
}

void    tabfile_lines_free(struct tabfile_lines *l)
{
    for (int i = 0; i < l->count; i++)
	free(l->line[i]);
    free(l->line);
    l->line = NULL;
    l->count = 0;
}
