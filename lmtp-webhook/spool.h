#ifndef LMTP_WEBHOOK_SPOOL_H
#define LMTP_WEBHOOK_SPOOL_H

/* spool.h - durable webhook events: one JSON file per event */

#include <stddef.h>

#define SPOOL_ACTIVE	"active"
#define SPOOL_DEAD	"dead"
#define SPOOL_TMP	"tmp"

struct spool_event {
    char   *id, *url, *body, *last_error;
    size_t  body_len;
    long long created, next_attempt;
    int     attempts;
};

struct spool_reservation {
    int     fd;
    char   *tmp_path, *final_path, *dir_path;
    const struct spool_event *ev;	/* must live until commit/discard */
    char   *meta;			/* the header line */
    size_t  meta_len;
    int     written;			/* no fallocate(): already written */
};

const char *spool_init(const char *dir);
const char *spool_reserve(const char *dir, const struct spool_event *ev,
			          struct spool_reservation *res);
const char *spool_commit(struct spool_reservation *res);
void    spool_discard(struct spool_reservation *res);
const char *spool_store(const char *dir, const char *subdir, const struct spool_event *ev);
const char *spool_load(const char *path, struct spool_event *ev);
char  **spool_list(const char *dir, const char *subdir, int *count);
void    spool_list_free(char **names, int count);
char   *spool_path(const char *dir, const char *subdir, const char *id);
int     spool_id_ok(const char *id);
void    spool_event_free(struct spool_event *ev);

#endif
