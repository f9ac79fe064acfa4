/*
 * NAME
 *	quarantine_notify 3
 * SUMMARY
 *	run a quarantine's notify command, without a shell, off the loop
 * SYNOPSIS
 *	#include "quarantine.h"
 *
 *	void	quarantine_notify_init(base, timeout_ms)
 *	void	quarantine_notify(q, key)
 *	void	quarantine_notify_shutdown()
 * DESCRIPTION
 *	quarantine_notify() forks and executes "COMMAND KEY NAME" (the
 *	locked key value and the quarantine's name as arguments; no
 *	shell, so nothing in the key is interpreted), in a session of
 *	its own, with stdin, stdout and stderr on /dev/null (a command
 *	that writes a flood of output cannot block anything), no other
 *	open descriptors, default signals, and an environment of PATH
 *	alone (nothing of the daemon's reaches it). The event loop never
 *	waits for it: a timer reaps children every 200 ms while any run,
 *	logs how each ended, and kills (SIGKILL, the whole process group)
 *	one still running after timeout_ms.
 *
 *	At most QUARANTINE_NOTIFY_MAX run at once; a lock beyond that is
 *	logged with "notify skipped" (the lock itself is in place).
 *	Safe to call from several threads.
 * DIAGNOSTICS
 *	"quarantine NAME: notify ... exited with status N", "killed after
 *	Ns", "notify skipped: ...".
 */

#include "build_config.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "daemon.h"
#include "msg.h"
#include "quarantine.h"

#define QUARANTINE_NOTIFY_MAX	16

static struct {
    pid_t   pid;
    long long started;			/* daemon_mono_ms() */
    int     killed;
    char    name[LIMIT_NAME_MAX + 1];
} quarantine_children[QUARANTINE_NOTIFY_MAX];

static pthread_mutex_t quarantine_lock = PTHREAD_MUTEX_INITIALIZER;
static struct event *quarantine_timer;
static long long quarantine_timeout_ms = 30000;

/* quarantine_ended - a notify child's end, logged; its slot free; lock held */

static void quarantine_ended(int i, int status)
{
    pid_t   pid = quarantine_children[i].pid;

    if (WIFEXITED(status) && WEXITSTATUS(status) == 0)
	msg_info("quarantine %s: notify (pid %d) done", quarantine_children[i].name, (int) pid);
    else if (!quarantine_children[i].killed)
	msg_warn("quarantine %s: notify (pid %d) %s %d", quarantine_children[i].name,
		 (int) pid, WIFEXITED(status) ? "exited with status" : "killed by signal",
		 WIFEXITED(status) ? WEXITSTATUS(status) : WTERMSIG(status));
    quarantine_children[i].pid = 0;
}

/*
 * quarantine_orphans - as PID 1 (a container's, no init before it) every
 * orphan of the system becomes this process's child: what a notify
 * command left running ("curl ... &") was a zombie for the container's
 * life, and under a pids limit forks then failed and the page about a
 * leaked credential was lost (helper-121). Reaped here; a notify child
 * among them is logged as such. Lock held.
 */
static void quarantine_orphans(void)
{
    pid_t   pid;
    int     status;

    if (getpid() != 1)
	return;
    while ((pid = waitpid(-1, &status, WNOHANG)) > 0)
	for (int i = 0; i < QUARANTINE_NOTIFY_MAX; i++)
	    if (quarantine_children[i].pid == pid)
		quarantine_ended(i, status);
}

/* quarantine_reap - log children that ended; kill those past the timeout */

static void quarantine_reap(evutil_socket_t fd, short what, void *context)
{
    long long now = daemon_mono_ms();
    int     status;

    pthread_mutex_lock(&quarantine_lock);
    quarantine_orphans();
    for (int i = 0; i < QUARANTINE_NOTIFY_MAX; i++) {
	pid_t   pid = quarantine_children[i].pid;

	if (pid == 0)
	    continue;
	if (waitpid(pid, &status, WNOHANG) == pid) {
	    quarantine_ended(i, status);
	} else if (!quarantine_children[i].killed
		   && now - quarantine_children[i].started >= quarantine_timeout_ms) {
	    msg_warn("quarantine %s: notify (pid %d) killed after %llds",
		     quarantine_children[i].name, (int) pid, quarantine_timeout_ms / 1000);
	    (void) kill(-pid, SIGKILL);		/* its session and group */
	    (void) kill(pid, SIGKILL);
	    quarantine_children[i].killed = 1;
	}
    }
    pthread_mutex_unlock(&quarantine_lock);
}

void    quarantine_notify_init(struct event_base *base, long long timeout_ms)
{
    struct timeval tick = {0, 200000};

    quarantine_timeout_ms = timeout_ms;
    quarantine_timer = event_new(base, -1, EV_PERSIST, quarantine_reap, NULL);
    event_add(quarantine_timer, &tick);
}

void    quarantine_notify_shutdown(void)
{
    if (quarantine_timer)
	event_free(quarantine_timer);
    quarantine_timer = NULL;
}

/* quarantine_exec - in the child: only async-signal-safe calls */

static void quarantine_exec(const char *path, const char *key, const char *name)
{
    char   *argv[] = {(char *) path, (char *) key, (char *) name, 0};
    char   *envp[] = {"PATH=/usr/local/bin:/usr/bin:/bin", 0};
    sigset_t none;
    int     fd;

    (void) setsid();
    sigemptyset(&none);
    (void) sigprocmask(SIG_SETMASK, &none, NULL);
    (void) signal(SIGPIPE, SIG_DFL);
    if ((fd = open("/dev/null", O_RDWR)) >= 0) {
	(void) dup2(fd, 0);
	(void) dup2(fd, 1);
	(void) dup2(fd, 2);
    }
    (void) close_range(3, ~0U, 0);
    execve(path, argv, envp);
    _exit(127);
}

void    quarantine_notify(const struct quarantine *q, const char *key)
{
    int     slot = -1;
    pid_t   pid;

    pthread_mutex_lock(&quarantine_lock);
    for (int i = 0; i < QUARANTINE_NOTIFY_MAX && slot < 0; i++)
	if (quarantine_children[i].pid == 0)
	    slot = i;
    if (quarantine_timer == NULL || slot < 0) {
	pthread_mutex_unlock(&quarantine_lock);
	msg_warn("quarantine %s: notify skipped: %s", q->name, slot < 0 ?
		 "16 notify commands are still running" : "not running as a daemon");
	return;
    }
    if ((pid = fork()) == 0)
	quarantine_exec(q->notify, key, q->name);
    if (pid < 0) {
	pthread_mutex_unlock(&quarantine_lock);
	msg_warn("quarantine %s: notify skipped: fork: %s", q->name, strerror(errno));
	return;
    }
    quarantine_children[slot].pid = pid;
    quarantine_children[slot].started = daemon_mono_ms();
    quarantine_children[slot].killed = 0;
    snprintf(quarantine_children[slot].name, sizeof(quarantine_children[slot].name), "%s",
	     q->name);
    pthread_mutex_unlock(&quarantine_lock);
    msg_info("quarantine %s: notify %s started (pid %d)", q->name, q->notify, (int) pid);
}
