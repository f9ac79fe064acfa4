/* daemon_test - unit tests for common/daemon.c */


#include "build_config.h"
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "daemon.h"
#include "msg.h"
#include "tap.h"

static void test_pidfile(void)
{
    char    path[] = "/tmp/daemon_test.pid.XXXXXX";
    char    buf[32], want[32];
    int     fd = -1, fd2 = -1, tmp = mkstemp(path);
    FILE   *fp;
    pid_t   pid;
    int     status;

    close(tmp);
    ok(daemon_pidfile_write(path, &fd) == NULL, "pidfile written");
    fp = fopen(path, "r");
    snprintf(want, sizeof(want), "%ld\n", (long) getpid());
    is_str(fp && fgets(buf, sizeof(buf), fp) ? buf : NULL, want, "pidfile holds our pid");
    if (fp)
	fclose(fp);
    if ((pid = fork()) == 0) {
	const char *err = daemon_pidfile_write(path, &fd2);

	_exit(err && strstr(err, "another instance is running") ? 0 : 1);
    }
    waitpid(pid, &status, 0);
    ok(WIFEXITED(status) && WEXITSTATUS(status) == 0, "second instance refused (locked)");
    daemon_pidfile_remove(path, &fd);
    ok(access(path, F_OK) != 0 && fd == -1, "pidfile removed");
}

static void test_signals(void)
{
    int     fd = daemon_signal_fd();

    ok(fd >= 0, "signal pipe");
    is_int(daemon_signal_next(), 0, "nothing pending");
    kill(getpid(), SIGHUP);
    kill(getpid(), SIGTERM);
    is_int(daemon_signal_next(), SIGHUP, "SIGHUP delivered through the pipe");
    is_int(daemon_signal_next(), SIGTERM, "then SIGTERM");
    is_int(daemon_signal_next(), 0, "then nothing");
}

static void test_privileges(void)
{
    pid_t   pid;
    int     status;

    ok(daemon_drop_privileges("root") != NULL, "dropping to root is refused");
    ok(daemon_drop_privileges("no-such-user-mxkit") != NULL, "unknown user refused");
    if (getuid() != 0) {
	tap_skip(1, "not root: cannot test setuid");
	return;
    }
    if ((pid = fork()) == 0)
	_exit(daemon_drop_privileges("nobody") == NULL && getuid() != 0
	      && geteuid() != 0 ? 0 : 1);
    waitpid(pid, &status, 0);
    ok(WIFEXITED(status) && WEXITSTATUS(status) == 0, "root drops to nobody for good");
}

int     main(void)
{
    msg_init("daemon_test", MSG_STDERR);
    test_pidfile();
    test_signals();
    test_privileges();
    return (tap_done());
}
