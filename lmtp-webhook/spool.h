#ifndef LMTP_WEBHOOK_SPOOL_H
#define LMTP_WEBHOOK_SPOOL_H

/* spool.h - durable webhook events: one JSON file per event */

#include <dirent.h>
#include <stddef.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <time.h>

#define SPOOL_ACTIVE	"active"
#define SPOOL_DEAD	"dead"
#define SPOOL_TMP	"tmp"
#define SPOOL_FREE	"free"		/* tmp/free.PID.N: for reuse */
#define SPOOL_FREE_MAX	64
#define SPOOL_FREE_SIZE_MAX (256 * 1024)

/* tmp/ files: a gone writer's after an hour, anyone's after 36 hours */
#define SPOOL_TMP_ORPHAN_AGE	3600
#define SPOOL_TMP_MAX_AGE	(36 * 3600)

#define SPOOL_MAX_SECRETS 2

/* spool_hold(): how long a held event waits when it is never released */
#define SPOOL_HOLD	900

struct spool_event {
    char   *id, *url, *body, *last_error;
    char   *secret_files[SPOOL_MAX_SECRETS];	/* the route's; none: global */
    int     secret_count;
    size_t  body_len;
    long long created, next_attempt;
    int     attempts;
    int     held;			/* "held": due at its mtime, see spool_hold.c */
    long long mtime;			/* spool_load(): spool_mtime_due() */
    dev_t   dev;			/* spool_load(): the file that was */
    ino_t   ino;			/* read (spool_update() checks it) */
    void   *map;			/* spool_load(): the file, mapped; */
    size_t  map_len;			/* then body points into it, no NUL */
};

/* spool_load() maps event files from this size on instead of reading them */
#define SPOOL_MAP_MIN	(1024 * 1024)

/* when a commit syncs: Dovecot's mail_fsync, for the event as for the mail */
enum spool_sync {
    SPOOL_SYNC_ALWAYS = 0,		/* fsync, rename, fsync the directory */
    SPOOL_SYNC_OPTIMIZED,		/* rename, fsync: the name goes with it */
    SPOOL_SYNC_NEVER,			/* rename: the kernel writes it back */
};

struct spool_reservation {
    int     fd;
    enum spool_sync sync;		/* SPOOL_SYNC_ALWAYS unless set */
    char   *tmp_path, *final_path, *dir_path;
    const struct spool_event *ev;	/* must live until commit/discard */
    char   *meta;			/* the header line */
    size_t  meta_len;
    int     written;			/* no fallocate(): already written */
    struct spool_keeper *keeper;	/* the file is the keeper's */
    int     streamed;			/* the body is written by the caller */
    int     held;			/* spool_hold(): in active/, fd ours */
};

/* a tmp/ file an lmtp process keeps from one delivery to the next */
struct spool_keeper {
    int     fd;
    char   *path, *dir;
    dev_t   dev;			/* to notice the file removed or */
    ino_t   ino;			/* the spool remounted */
};

#define SPOOL_KEEPER_INIT { -1, 0, 0, 0, 0 }

const char *spool_init(const char *dir);
const char *spool_ready(const char *dir);
const char *spool_reserve(const char *dir, const struct spool_event *ev,
			          struct spool_reservation *res);
const char *spool_reserve_kept(const char *dir, const struct spool_event *ev,
			               struct spool_reservation *res, struct spool_keeper *keeper);
/* the caller writes the body into res->fd at res->meta_len, sets
   ev->body_len, then spool_stream_done(): see spool.c */
const char *spool_reserve_stream(const char *dir, const struct spool_event *ev,
				         struct spool_reservation *res,
				         struct spool_keeper *keeper);
const char *spool_stream_done(struct spool_reservation *res);
int     spool_scratch(const char *dir);
void    spool_keeper_close(struct spool_keeper *keeper);
const char *spool_commit(struct spool_reservation *res);
const char *spool_commit_why(struct spool_reservation *res, const char *why);
void    spool_discard(struct spool_reservation *res);
const char *spool_hold(struct spool_reservation *res);
const char *spool_unhold(struct spool_reservation *res);
void    spool_withdraw(struct spool_reservation *res);
int     spool_held_now(const struct spool_event *ev, const char *path, time_t now);
int     spool_held_busy(const char *path);
const char *spool_store(const char *dir, const char *subdir, const struct spool_event *ev);
const char *spool_update(const char *dir, const struct spool_event *ev, int *gone_r);

/* spool_update()'s *gone_r: nothing written, because active/ID was */
#define SPOOL_UPDATE_GONE	1	/* removed (dropped by request) */
#define SPOOL_UPDATE_REPLACED	2	/* another file (a retry, a delivery) */
const char *spool_dead(const char *dir, const struct spool_event *ev, int *how);

/* spool_dead()'s *how besides those: the error returned, and the file */
#define SPOOL_DEAD_AS_IS	3	/* moved to dead/ as it was */
#define SPOOL_DEAD_KEPT		4	/* still in active/ */
const char *spool_load(const char *path, struct spool_event *ev);
long long spool_mtime_due(const struct stat *st);
void    spool_map_guard(void);
int     spool_event_spoiled(const struct spool_event *ev);
char  **spool_list(const char *dir, const char *subdir, int *count);
char  **spool_list_foreign(const char *dir, const char *subdir, int *count,
			           void (*foreign) (const char *name, void *context),
			           void *context);
void    spool_list_free(char **names, int count);
int     spool_sweep_tmp(const char *dir, time_t now);

/* a sweep of tmp/ in steps of at most SPOOL_SWEEP_STEP names: a tmp/ of
   a million leftovers must not stop the runner's loop for seconds */
#define SPOOL_SWEEP_STEP	2000
struct spool_sweep {
    DIR    *dir;			/* open during a sweep, NULL between */
    int     removed;			/* so far in this sweep */
};
int     spool_sweep_tmp_step(const char *dir, time_t now, struct spool_sweep *sw, int visits);
void    spool_sweep_tmp_end(struct spool_sweep *sw);
int     spool_recycle(const char *dir, const char *path, int *pool);
int     spool_free_count(const char *dir);
char   *spool_path(const char *dir, const char *subdir, const char *id);
int     spool_id_ok(const char *id);
int     spool_own(const char *dir, int fd);
#define SPOOL_BURY_NAME	160
int     spool_bury(const char *dir, const char *id, const char *path,
		           char name[SPOOL_BURY_NAME]);
void    spool_event_free(struct spool_event *ev);
void    spool_event_body_free(struct spool_event *ev);

#endif
