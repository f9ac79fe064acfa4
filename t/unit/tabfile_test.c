/* tabfile_test - unit tests for milter-dkim/tabfile.c: atomic replacement keeps
 * mode, owner and symbolic links; the lock excludes a second writer. */

#include "build_config.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "tabfile.h"
#include "tap.h"
#include "xalloc.h"

static char dir[] = "/tmp/tabfile_test.XXXXXX";

static void put(const char *path, const char *text, size_t len)
{
    int     fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);

    if (fd < 0 || write(fd, text, len) != (ssize_t) len)
	exit(1);
    close(fd);
}

/* other_locker - can a second process take the lock without waiting? */

static int other_locker(const char *path)
{
    pid_t   pid = fork();
    int     status;

    if (pid == 0) {
	char   *copy = xstrdup(path), *slash = strrchr(copy, '/');
	int     fd;

	*slash = 0;
	fd = open(copy, O_RDONLY | O_DIRECTORY);
	_exit(flock(fd, LOCK_EX | LOCK_NB) == 0 ? 0 : errno == EWOULDBLOCK ? 2 : 1);
    }
    waitpid(pid, &status, 0);
    return (WIFEXITED(status) ? WEXITSTATUS(status) : -1);
}

/* appended - text with a line appended, joined */

static char *appended(const char *text, const char *row)
{
    struct tabfile_lines l;
    char   *out;

    tabfile_split(text, &l);
    tabfile_append(&l, row);
    out = tabfile_join(&l);
    tabfile_lines_free(&l);
    return (out);
}

static void lines(void)
{
    static const char *texts[] = {"", "\n", "a", "a\n", "a\nb", "a\r\nb\r\n", "\n\n\n",
    "# c\n\tx y\n", NULL};
    static const char *want[][2] = {
	{"", "row\n"}, {"\n", "\nrow\n"}, {"a", "a\nrow\n"}, {"a\n", "a\nrow\n"},
	{"a\r\nb", "a\r\nb\r\nrow\r\n"}, {"a\r\nb\r\n", "a\r\nb\r\nrow\r\n"},
    };
    struct tabfile_lines l;
    char   *out;
    int     same = 1;

    for (const char **t = texts; *t; t++) {
	tabfile_split(*t, &l);
	out = tabfile_join(&l);
	same &= strcmp(out, *t) == 0;
	free(out);
	tabfile_lines_free(&l);
    }
    ok(same, "split and join give back every byte");
    for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++) {
	out = appended(want[i][0], "row");
	is_str(out, want[i][1], "append case %zu: the final newline and CR LF as the file "
	       "has them", i + 1);
	free(out);
    }
    tabfile_split("a\nb\nc\n", &l);
    tabfile_set(&l, 2, NULL);
    tabfile_set(&l, 1, xstrdup("A"));
    out = tabfile_join(&l);
    is_str(out, "A\nc\n", "a line set to NULL is deleted with its newline");
    free(out);
    tabfile_lines_free(&l);
}

int     main(void)
{
    char   *table, *link, *text, *sub;
    struct stat st;
    int     fd;

    if (mkdtemp(dir) == NULL)
	return (1);
    lines();
    table = xasprintf("%s/key.table", dir);
    link = xasprintf("%s/link.table", dir);
    sub = xasprintf("%s/sub", dir);
    put(table, "old\n", 4);
    chmod(table, 0640);
    if (chown(table, 65534, 65534) != 0)
	diag("chown: %s (the unit tests run as root in contrib/test)", strerror(errno));
    ok(tabfile_replace(table, "new row\n") == NULL, "replaced");
    ok(tabfile_read(table, &text) == NULL && strcmp(text, "new row\n") == 0,
       "the new content, exactly");
    free(text);
    ok(stat(table, &st) == 0 && (st.st_mode & 07777) == 0640, "mode 0640 kept");
    ok(st.st_uid == 65534 && st.st_gid == 65534, "owner and group kept (run as root)");
    ok(symlink("key.table", link) == 0 && tabfile_replace(link, "via link\n") == NULL,
       "replaced through a symbolic link");
    ok(lstat(link, &st) == 0 && S_ISLNK(st.st_mode), "the link is still a link");
    ok(tabfile_read(table, &text) == NULL && strcmp(text, "via link\n") == 0,
       "its target has the new content");
    free(text);
    put(table, "a\0b\n", 4);
    ok(tabfile_read(table, &text) != NULL && text == NULL, "a NUL byte: not a table");
    ok(tabfile_replace(sub, "x") != NULL, "a missing file is not created by replace");
    ok(tabfile_lock(table, &fd) == NULL && fd >= 0, "locked");
    is_int(other_locker(table), 2, "a second writer cannot take the lock");
    close(fd);
    is_int(other_locker(table), 0, "closing releases it");
    unlink(link);
    unlink(table);
    ok(rmdir(dir) == 0, "no temporary file left behind");
    free(table);
    free(link);
    free(sub);
    return (tap_done());
}
