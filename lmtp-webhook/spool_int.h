#ifndef LMTP_WEBHOOK_SPOOL_INT_H
#define LMTP_WEBHOOK_SPOOL_INT_H

/* spool_int.h - shared by spool.c and spool_read.c only */

#define SPOOL_ERR_SIZE	512

extern char spool_err[SPOOL_ERR_SIZE];	/* the last error, for callers */
const char *spool_fail(const char *what, const char *path);

#endif
