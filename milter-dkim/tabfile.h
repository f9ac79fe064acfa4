#ifndef MXKIT_TABFILE_H
#define MXKIT_TABFILE_H

/* tabfile - read and atomically replace a table file, under a lock. */

struct tabfile_lines {
    char  **line;				/* NULL: deleted */
    int     count;
};

const char *tabfile_lock(const char *path, int *fd);
const char *tabfile_read(const char *path, char **text);
const char *tabfile_replace(const char *path, const char *text);
void    tabfile_split(const char *text, struct tabfile_lines *l);
char   *tabfile_join(const struct tabfile_lines *l);
void    tabfile_set(struct tabfile_lines *l, int lineno, char *text);
void    tabfile_append(struct tabfile_lines *l, const char *text);
void    tabfile_lines_free(struct tabfile_lines *l);

#endif
