#ifndef MXKIT_DAEMON_H
#define MXKIT_DAEMON_H

/* daemon - what every mxkit daemon does the same way. */

#include <signal.h>
#include <sys/stat.h>
#include <sys/types.h>

#include "addr.h"
#include "config.h"

struct daemon_opts {
    const char *config_path;
    int     check_only;			/* -t */
    int     foreground;			/* -f */
};

void    daemon_parse_args(int argc, char **argv, const char *default_config,
			          struct daemon_opts *opts);
int     daemon_parse_command(int argc, char **argv, const char *default_config,
			             struct daemon_opts *opts);
void    daemon_log_init(const char *progname, const struct daemon_opts *opts,
			        const struct config *cfg);
void    daemon_detach(long long timeout_ms, void (*failed) (void));
void    daemon_detached(void);
const char *daemon_pidfile_write(const char *path, int *fd);
const char *daemon_pidfile_lock(const char *path, int *fd);
const char *daemon_pidfile_record(const char *path, int fd);
void    daemon_pidfile_remove(const char *path, int *fd);
int     daemon_pidfile_held(void);
void    daemon_set_running(void);
int     daemon_is_running(void);
int     daemon_pidfile_foreign(int fd);
const char *daemon_socket_give(const char *path, const char *user, mode_t mode);
const char *daemon_drop_privileges(const char *user);
const char *daemon_as_user(const char *user, const char *(*check) (void *),
			           void *context);
const char *daemon_as_process(long pid, const char *(*check) (void *), void *context);
int     daemon_notify(const char *state);

/*
 * Signal policy, the same in every daemon: SIGHUP reloads, SIGTERM and
 * SIGINT stop, SIGUSR1 flushes where a daemon has something to flush (and
 * is logged and ignored elsewhere), SIGPIPE is ignored.
 */
#define DAEMON_NONE	0
#define DAEMON_RELOAD	1
#define DAEMON_STOP	2
#define DAEMON_FLUSH	3

int     daemon_signal_action(int sig);
int     daemon_signal_fd(void);
int     daemon_signal_next(void);
void    daemon_signal_block(sigset_t *set);
void    daemon_signal_hold(void);
void    daemon_starting(void);
long long daemon_mono_ms(void);
long long daemon_mono_sec(void);
int     daemon_signal_wait(const sigset_t *set);

/*
 * daemon_config - the rows every daemon's specification ends with, and
 * the checks of their values that -t, start-up and reload share.
 */
#define DAEMON_CONFIG_SPECS \
    {"pid_file", CONFIG_STRING, NULL, CONFIG_RESTART}, \
    {"user", CONFIG_STRING, NULL, CONFIG_RESTART}, \
    {"syslog", CONFIG_BOOL, "no", CONFIG_RESTART}, \
    {"metrics_listen", CONFIG_STRING, NULL, CONFIG_RESTART}, \
    {"start_timeout", CONFIG_DURATION, "90s", CONFIG_RESTART}

/*
 * drain_timeout: how long a stop signal lets the work in flight finish
 * (skeleton_drain(3)); a row of its own, for the daemons that drain
 * (not lmtp-webhook-spool, whose runs finish their file anyway).
 */
#define DAEMON_DRAIN_SPECS \
    {"drain_timeout", CONFIG_DURATION, "25s", 0}

/* the longest drain_timeout */
#define DAEMON_DRAIN_TIMEOUT_MAX (3600LL * 1000)

/* the longest start_timeout: a start that has not served in a day will not */
#define DAEMON_START_TIMEOUT_MAX (24LL * 3600 * 1000)

struct daemon_address {
    const char *name;			/* the parameter, for messages */
    const char *spec;			/* "inet:HOST:PORT", "unix:/path" */
    int     line;
    const struct addr *addr;		/* spec parsed already, or NULL */
    int     dual_stack;			/* bound without IPV6_V6ONLY */
};

void    daemon_config_check(struct config *cfg);
void    daemon_config_tool_command(void);
int     daemon_config_as_start(void);
const char *daemon_config_socket_dir(const char *path);
int     daemon_config_user_cannot_write(const struct config *cfg, const struct stat *st);
void    daemon_config_addresses(struct config *cfg, const struct daemon_address *addrs,
				        int count);
long long daemon_config_connections(struct config *cfg, const char *name,
				            int per_connection, int reserve);
void    daemon_config_running(const struct config *cfg);
int     daemon_config_unapplied(const struct config *new, const char *name);
int     daemon_config_reload(const struct config *new);
long    daemon_nofile_raise(void);
long    daemon_threads_max(void);

#endif
