#ifndef LMTP_WEBHOOK_SPOOL_INT_H
#define LMTP_WEBHOOK_SPOOL_INT_H

/* spool_int.h - shared by the spool*.c files only */

#define SPOOL_ERR_SIZE	512

extern char spool_err[SPOOL_ERR_SIZE];	/* the last error, for callers */
const char *spool_fail(const char *what, const char *path);

/* spool.c */
int     spool_fsync_dir(const char *path);
int     spool_dir_again(const char *dir_path);
const char *spool_commit_write(struct spool_reservation *res);
int     spool_commit_dir_again(struct spool_reservation *res);

/* spool_tmp.c */
char   *spool_tmp_name(const char *dir, const char *prefix);
int     spool_free_name(const char *name);
int     spool_claim(const char *dir, const char *path);
int     spool_rename_new(const char *from, const char *to);

#endif
