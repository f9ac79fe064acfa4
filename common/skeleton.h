#ifndef MXKIT_SKELETON_H
#define MXKIT_SKELETON_H

/* skeleton - the start sequence and listener guard of every daemon. */

#include <event2/listener.h>

#include "config.h"
#include "daemon.h"

struct skeleton {
    char   *pid_file;			/* a copy: a reload frees the config */
    int     pid_fd;
    /* optional: run in the detached process before the pid file is
       written, so that whoever reads the pid file finds it done */
    void    (*detached) (void *context);
    void   *context;
    int     locked;			/* skeleton_lock() done */
};

void    skeleton_lock(struct skeleton *sk, const struct config *cfg);
void    skeleton_start(struct skeleton *sk, const struct daemon_opts *opts,
		               const struct config *cfg);
void    skeleton_stop(struct skeleton *sk);
void    skeleton_ready(int on);
void    skeleton_listener_guard(struct evconnlistener *lev);
int     skeleton_accept_exhausted(int err);
void    skeleton_accept_failed(int listen_fd, int err);
unsigned long skeleton_accept_pauses(void);

/* skeleton_drain - a stop signal lets the work in flight finish */
#define SKELETON_DRAIN	1		/* finish what is in flight */
#define SKELETON_CUT	2		/* cut what is in flight */

long long skeleton_drain_ms(const struct config *cfg);
int     skeleton_stopping(int sig, long long drain_ms);
void    skeleton_drained(int left, long long drain_ms);
int     skeleton_signal_wait_ms(const sigset_t *set, long long ms);

#endif
