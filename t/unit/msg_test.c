/* msg_test - unit tests for common/msg.c */


#include "build_config.h"
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
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
    return (tap_done());
}
