#ifndef MXKIT_TABFILE_H
#define MXKIT_TABFILE_H

/* tabfile - read and atomically replace a table file, under a lock. */

const char *tabfile_lock(const char *path, int *fd);
const char *tabfile_read(const char *path, char **text);
const char *tabfile_replace(const char *path, const char *text);

#endif
