#ifndef LMTP_WEBHOOK_SPOOL_TOOL_H
#define LMTP_WEBHOOK_SPOOL_TOOL_H

/* spool_tool.h - lmtp-webhook-spool internals shared by its files */

#include "config.h"
#include "sign.h"

struct spool_tool {
    const char *config_path;
    int     foreground;			/* -f */
    struct config *cfg;
    const char *dir, *secret_file, *ca_file;
    long    timeout_ms;
    int     concurrency;
    long long dead_after;		/* seconds */
};

/* SIGHUP: 0, or -1 (errors logged, nothing changed) */
int     tool_reload(struct spool_tool *tool, struct config **old_cfg_r);

/* runner: returns the number of events still waiting */
enum runner_mode { RUNNER_DAEMON, RUNNER_FLUSH };
int     runner_main(struct spool_tool *tool, enum runner_mode mode);
long long runner_backoff(int attempts, long long retry_after);
int     runner_due(long long next, time_t now);
#define RUNNER_RETRY_AFTER_MAX	86400	/* seconds: the longest Retry-After kept */
int     runner_lock(const char *dir, int *fd_r, long *holder_r);
void    runner_unlock(int fd);
void    runner_lock_record(int fd);
void    runner_lock_detached(void *fd_ptr);
int     runner_lock_check(const char *dir, int *fd_r, long *holder_r);

/* spool_routes.c: check-routes, doveconf's routes as the plugin reads them */
int     tool_check_routes(const char *dovecot_conf);

/* spool_owner.c: as root, in the spool as its owner */
const char *spool_owner_enter(const char *dir);
void    spool_owner_root(void);
void    spool_owner_again(void);
const char *spool_owner_make(const char *dir, const char *user);
const char *spool_owner_user_reads(const char *user, const char *path);

/* runner_metrics.c: the series of run with metrics_listen */
struct metrics_series;
struct runner_metrics {
    struct metrics_series *delivered, *failed, *gone, *dead, *duration;
};
extern struct runner_metrics runner_metrics;
void    runner_metrics_init(struct spool_tool *tool);
void    runner_count(struct metrics_series *series);

#endif
