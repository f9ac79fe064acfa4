/* msg_test - unit tests for common/msg.c */


#include "build_config.h"
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "msg.h"
#include "tap.h"

static void capture(void (*emit)(void), char *buf, size_t len)
{
    int     fds[2];
    ssize_t got;

    if (pipe(fds) < 0)
	return;
    msg_set_fd(fds[1]);
    emit();
    msg_set_fd(2);
    close(fds[1]);
    got = read(fds[0], buf, len - 1);
    buf[got > 0 ? got : 0] = 0;
    close(fds[0]);
}

static void emit_warn(void)
{
    msg_warn("disk %s", "full");
}

static void emit_info(void)
{
    msg_info("started");
}

static void emit_error(void)
{
    msg_error("t.conf:3: bad");
}

static double now(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (ts.tv_sec + ts.tv_nsec / 1e9);
}

/*
 * A bounded stderr copy into a pipe nobody reads (a caller that reads
 * only after the start): the first line that finds it full waits about
 * a second, the next ones not at all, and once the reader makes room
 * the lines are whole again (one line, at most PIPE_BUF, never cut).
 */
static void test_bounded(void)
{
    int     fds[2], i, flags;
    char    big[5000], buf[8192];
    double  t0, first, rest;
    ssize_t got;

    if (pipe(fds) < 0)
	return;
    flags = fcntl(fds[1], F_GETFL);
    fcntl(fds[1], F_SETFL, flags | O_NONBLOCK);
    memset(big, 'x', sizeof(big) - 1);
    big[sizeof(big) - 1] = 0;
    while (write(fds[1], big, 4096) > 0)	/* full */
	 /* void */ ;
    fcntl(fds[1], F_SETFL, flags);
    msg_set_fd(fds[1]);
    msg_set_bounded(1);
    t0 = now();
    msg_warn("the pipe is full");
    first = now() - t0;
    t0 = now();
    for (i = 0; i < 1000; i++)
	msg_warn("and stays full %d", i);
    rest = now() - t0;
    ok(first >= 0.9 && first < 3, "bounded: the first line into a full pipe waits ~1 s (%.2f s)",
       first);
    ok(rest < 0.5, "bounded: 1000 more lines do not wait (%.3f s)", rest);
    fcntl(fds[0], F_SETFL, fcntl(fds[0], F_GETFL) | O_NONBLOCK);
    while (read(fds[0], buf, sizeof(buf)) > 0)	/* the reader catches up */
	 /* void */ ;
    msg_warn("%s", big);
    got = read(fds[0], buf, sizeof(buf));
    ok(got == PIPE_BUF && buf[got - 1] == '\n' && strncmp(buf, "msg_test[", 9) == 0,
       "bounded: with room again, a long line arrives cut at PIPE_BUF, newline kept (%zd)", got);
    msg_set_bounded(0);
    msg_set_fd(2);
    close(fds[0]);
    close(fds[1]);
}

int     main(void)
{
    char    buf[512], want[512];
    int     status;
    pid_t   pid;

    msg_init("/usr/sbin/msg_test", MSG_STDERR);
    capture(emit_warn, buf, sizeof(buf));
    snprintf(want, sizeof(want), "msg_test[%ld]: warning: disk full\n", (long) getpid());
    is_str(buf, want, "warning format");
    capture(emit_info, buf, sizeof(buf));
    snprintf(want, sizeof(want), "msg_test[%ld]: started\n", (long) getpid());
    is_str(buf, want, "info has no label");
    capture(emit_error, buf, sizeof(buf));
    snprintf(want, sizeof(want), "msg_test[%ld]: error: t.conf:3: bad\n", (long) getpid());
    is_str(buf, want, "error format");
    if ((pid = fork()) == 0) {
	msg_set_fd(open("/dev/null", 1));
	msg_fatal("bye");
    }
    waitpid(pid, &status, 0);
    ok(WIFEXITED(status) && WEXITSTATUS(status) == 1, "msg_fatal exits with status 1");
    test_bounded();
    return (tap_done());
}
