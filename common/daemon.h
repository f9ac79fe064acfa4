#ifndef MXKIT_DAEMON_H
#define MXKIT_DAEMON_H

/* daemon - what every mxkit daemon does the same way. */

struct daemon_opts {
    const char *config_path;
    int     check_only;			/* -t */
    int     foreground;			/* -f */
};

void    daemon_parse_args(int argc, char **argv, const char *default_config,
			          struct daemon_opts *opts);
int     daemon_parse_command(int argc, char **argv, const char *default_config,
			             struct daemon_opts *opts);
void    daemon_detach(void);
const char *daemon_pidfile_write(const char *path, int *fd);
void    daemon_pidfile_remove(const char *path, int *fd);
const char *daemon_drop_privileges(const char *user);
int     daemon_signal_fd(void);
int     daemon_signal_next(void);

#endif
