/*
 * NAME
 *	skeleton_drain 3
 * SUMMARY
 *	the stop signal's drain, the same in every daemon that has one
 * SYNOPSIS
 *	#include "skeleton.h"
 *
 *	long long skeleton_drain_ms(cfg)
 *
 *	int	skeleton_stopping(sig, drain_ms)
 *
 *	void	skeleton_drained(left, drain_ms)
 *
 *	int	skeleton_signal_wait_ms(&set, ms)
 * DESCRIPTION
 *	A stop signal (SIGTERM, SIGINT: daemon_signal_action() says
 *	DAEMON_STOP) stops accepting at once and lets the work in flight
 *	finish: the daemon exits 0 when none is left, or when drain_timeout
 *	has passed since the signal (what is still open then is cut, as
 *	every stop did before; default 25s, below Kubernetes' 30 s
 *	terminationGracePeriodSeconds; 0 cuts at once). A second stop
 *	signal during the drain cuts at once. What "in flight" is, each
 *	daemon says in its manual page: a milter session inside a message,
 *	a policy request received and not yet answered, a relayed session.
 *
 *	skeleton_drain_ms() is drain_timeout of cfg, in milliseconds.
 *
 *	skeleton_stopping() is called for every stop signal. The first
 *	turns readiness off (skeleton_ready(0)), logs, and returns
 *	SKELETON_DRAIN, or SKELETON_CUT when drain_ms is 0; every later one
 *	logs and returns SKELETON_CUT.
 *
 *	skeleton_drained() logs how the drain ended: LEFT pieces of work
 *	still open (cut), or none.
 *
 *	skeleton_signal_wait_ms() is daemon_signal_wait() for at most ms
 *	milliseconds: the signal, or 0 when none came.
 */

#include "build_config.h"

#include <errno.h>
#include <signal.h>
#include <string.h>
#include <time.h>

#include "daemon.h"
#include "msg.h"
#include "skeleton.h"

long long skeleton_drain_ms(const struct config *cfg)
{
    return (config_get_duration(cfg, "drain_timeout"));
}

int     skeleton_stopping(int sig, long long drain_ms)
{
    static int stops;

    if (stops++ > 0) {
	msg_info("signal %d during the drain: cutting the work in flight", sig);
	return (SKELETON_CUT);
    }
    skeleton_ready(0);
    if (drain_ms <= 0) {
	msg_info("terminating on signal %d", sig);
	return (SKELETON_CUT);
    }
    msg_info("terminating on signal %d: not accepting; the work in flight has %lld.%03llds"
	     " (drain_timeout) to finish, a second signal cuts it", sig, drain_ms / 1000,
	     drain_ms % 1000);
    return (SKELETON_DRAIN);
}

void    skeleton_drained(int left, long long drain_ms)
{
    if (left > 0)
	msg_warn("drain_timeout (%lld.%03llds) passed: %d still open, cut", drain_ms / 1000,
		 drain_ms % 1000, left);
    else
	msg_info("drained: nothing left in flight");
}

int     skeleton_signal_wait_ms(const sigset_t *set, long long ms)
{
    struct timespec ts;
    int     sig;

    if (ms < 0)
	ms = 0;
    ts.tv_sec = ms / 1000;
    ts.tv_nsec = (ms % 1000) * 1000000;
    while ((sig = sigtimedwait(set, NULL, &ts)) < 0) {
	if (errno == EAGAIN)
	    return (0);
	if (errno != EINTR)
	    msg_fatal("sigtimedwait: %s", strerror(errno));
    }
    return (sig);
}
