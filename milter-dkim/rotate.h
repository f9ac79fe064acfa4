#ifndef MXKIT_ROTATE_H
#define MXKIT_ROTATE_H

/* rotate - milter-dkim-keygen rotate: new key, --activate, --retire. */

#include <sys/types.h>

int     rotate_main(int argc, char **argv);

/* rotate_milter.c: the running milter, and what it can read */
long    rotate_milter_pid(const char *pid_file, const char **why);
const char *rotate_milter_reads(const char *user, const char *pid_file, const char *path);

/* keygen.c: write DIR/SELECTOR.private (0600, 0640 with group_reads) and
   .txt; the record, malloc'ed */
int     keygen_bits(const char *text);
const char *keygen_files(const char *domain, const char *selector, int ed25519, int bits,
			         const char *dir, uid_t uid, gid_t gid, int group_reads,
			         char **record);

#endif
