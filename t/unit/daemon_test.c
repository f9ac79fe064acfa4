/* daemon_test - unit tests for common/daemon.c */


#include "build_config.h"
#include <errno.h>
#include <signal.h>
#include <sys/stat.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <stddef.h>
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

static void test_signal_policy(void)
{
    sigset_t set;
    int     fd = daemon_signal_fd();

    is_int(daemon_signal_action(SIGHUP), DAEMON_RELOAD, "SIGHUP reloads");
    is_int(daemon_signal_action(SIGTERM), DAEMON_STOP, "SIGTERM stops");
    is_int(daemon_signal_action(SIGINT), DAEMON_STOP, "SIGINT stops");
    is_int(daemon_signal_action(SIGUSR1), DAEMON_FLUSH, "SIGUSR1 flushes");
    is_int(daemon_signal_action(SIGUSR2), DAEMON_NONE, "SIGUSR2 means nothing");
    ok(fd >= 0, "signal pipe");
    kill(getpid(), SIGUSR1);			/* the default action would kill us */
    is_int(daemon_signal_next(), SIGUSR1, "SIGUSR1 arrives through the pipe");
    daemon_signal_block(&set);
    ok(sigismember(&set, SIGHUP) && sigismember(&set, SIGTERM) && sigismember(&set, SIGINT)
       && sigismember(&set, SIGUSR1), "the blocked set has the four signals");
    kill(getpid(), SIGUSR1);
    kill(getpid(), SIGHUP);
    {
	int     a = daemon_signal_wait(&set), b = daemon_signal_wait(&set);

	ok((a == SIGUSR1 && b == SIGHUP) || (a == SIGHUP && b == SIGUSR1),
	   "sigwait returns both blocked signals (%d, %d)", a, b);
    }
    is_int(daemon_signal_next(), 0, "blocked signals do not reach the pipe");
}

static const struct config_spec test_specs[] = {
    {"listen", CONFIG_LIST, "inet:127.0.0.1:10031", CONFIG_RESTART},
    {"store", CONFIG_STRING, "memory", CONFIG_RESTART},
    {"deadline", CONFIG_DURATION, "100ms", 0},
    {"max_connections", CONFIG_INT, "10000", 0},
    {"listener", CONFIG_DIRECTIVE, NULL, CONFIG_REPEAT | CONFIG_RESTART},
    DAEMON_CONFIG_SPECS,
    {0},
};

static struct config *test_config(const char *text)
{
    return (config_read_buffer("t.conf", text, strlen(text), test_specs));
}

/* test_errors - the configuration's errors, one per line */

static int test_has_error(const struct config *cfg, const char *want)
{
    for (int i = 0; i < cfg->error_count; i++)
	if (strstr(cfg->errors[i], want))
	    return (1);
    for (int i = 0; i < cfg->error_count; i++)
	diag("error: %s", cfg->errors[i]);
    return (0);
}

static void test_check_one(const char *text, int errors, const char *want, const char *name)
{
    struct config *cfg = test_config(text);

    daemon_config_check(cfg);
    is_int(cfg->error_count, errors, "%s: %d error(s)", name, errors);
    if (want)
	ok(test_has_error(cfg, want), "%s: says \"%s\"", name, want);
    config_free(&cfg);
}

/*
 * test_pidfile_tried - -t opens the pid file as start-up will, and leaves
 * the file system as it found it; a reload (this process holds a pid
 * file) does not open it at all.
 */
static void test_pidfile_tried(void)
{
    char    dir[] = "/tmp/mxkit-pidtry.XXXXXX", text[256], path[200], link[200];
    struct stat st;
    int     fd = -1;

    if (mkdtemp(dir) == NULL) {
	ok(0, "mkdtemp: %s", strerror(errno));
	return;
    }
    snprintf(path, sizeof(path), "%s/d.pid", dir);
    snprintf(text, sizeof(text), "pid_file = %s\n", path);
    test_check_one(text, 0, NULL, "a missing pid file that can be created");
    ok(access(path, F_OK) != 0, "and it is not left behind");
    fd = open(path, O_WRONLY | O_CREAT, 0644);
    ok(fd >= 0 && write(fd, "42\n", 3) == 3 && close(fd) == 0, "an existing pid file");
    test_check_one(text, 0, NULL, "an existing pid file that can be opened");
    ok(stat(path, &st) == 0 && st.st_size == 3, "and it is not changed");
    unlink(path);
    snprintf(link, sizeof(link), "%s/planted.pid", dir);
    ok(symlink("/etc/passwd", link) == 0, "a symbolic link planted");
    snprintf(text, sizeof(text), "pid_file = %s\n", link);
    test_check_one(text, 1, "is a symbolic link: pid_file must name a regular file",
		   "a symbolic link as pid file");
    unlink(link);
    fd = -1;
    ok(daemon_pidfile_lock(path, &fd) == NULL && daemon_pidfile_held(), "a pid file held");
    test_check_one("pid_file = /proc/mxkit-x.pid\n", 0, NULL,
		   "a reload (a pid file held): the file is not tried");
    daemon_pidfile_remove(path, &fd);
    ok(!daemon_pidfile_held(), "none held after removal");
    ok(rmdir(dir) == 0, "nothing of the checks left in the directory");
}

static void test_generic_checks(void)
{
    test_check_one("user = nobody\npid_file = /tmp/x.pid\nmetrics_listen = inet:127.0.0.1:9101\n"
		   "syslog = yes\n", 0, NULL, "good generic settings");
    test_check_one("\n\nuser = no-such-user-mxkit\n", 1,
		   "t.conf:3: user: unknown user \"no-such-user-mxkit\"", "unknown user");
    test_check_one("user = root\n", 1, "uid 0", "root as user");
    test_check_one("pid_file = /nonexistent-mxkit/run/x.pid\n", 1,
		   "pid_file: directory /nonexistent-mxkit/run: No such file", "missing directory");
    test_check_one("pid_file = /etc/passwd/x.pid\n", 1, "pid_file: /etc/passwd is not a directory",
		   "a file as the directory");
    test_check_one("pid_file = run/x.pid\n", 1, "not an absolute path", "relative pid_file");
    test_check_one("pid_file = /tmp/\n", 1, "names a directory", "pid_file ending in /");
    test_check_one("pid_file = /proc/mxkit-x.pid\n", 1,
		   "pid_file: cannot create /proc/mxkit-x.pid: No such file or directory",
		   "a directory that takes no file");
    test_pidfile_tried();
    test_check_one("metrics_listen = 127.0.0.1:notaport\n", 1, "t.conf:1: metrics_listen:",
		   "bad metrics_listen");
    test_check_one("metrics_listen = unix:/tmp/m.sock\n", 1, "Prometheus scrapes TCP",
		   "UNIX metrics_listen");
}

static int test_clashes_dual(const char *metrics, const char *a, int dual, const char *b)
{
    char    text[256];
    struct config *cfg;
    struct daemon_address addrs[2] = {{.name = "listen", .spec = a, .line = 1,
    .dual_stack = dual}, {.name = "listen", .spec = b, .line = 2}};
    int     n;

    snprintf(text, sizeof(text), "%s%s\n", metrics ? "metrics_listen = " : "",
	     metrics ? metrics : "");
    cfg = test_config(text);
    daemon_config_addresses(cfg, addrs, b ? 2 : 1);
    n = cfg->error_count;
    config_free(&cfg);
    return (n);
}

static int test_clashes(const char *metrics, const char *a, const char *b)
{
    return (test_clashes_dual(metrics, a, 0, b));
}

/* helper-65 F7: "::" without IPV6_V6ONLY, and ::ffff:a.b.c.d, hold IPv4 */

static void test_dual_stack(void)
{
    FILE   *fp = fopen("/proc/sys/net/ipv6/bindv6only", "r");
    int     v6only = 0;

    if (fp) {
	if (fscanf(fp, "%d", &v6only) != 1)
	    v6only = 0;
	fclose(fp);
    }
    is_int(test_clashes_dual("inet:127.0.0.1:9101", "inet6:[::]:9101", 1, NULL), !v6only,
	   "a dual-stack :: and metrics_listen on 127.0.0.1, one port: clash (bindv6only %d)",
	   v6only);
    is_int(test_clashes_dual(NULL, "inet6:[::]:25", 1, "inet:0.0.0.0:25"), !v6only,
	   "a dual-stack :: and the IPv4 wildcard: clash");
    is_int(test_clashes_dual(NULL, "inet6:[::]:25", 1, "inet:127.0.0.1:26"), 0,
	   "a dual-stack :: and IPv4 on another port: none");
    is_int(test_clashes_dual(NULL, "inet6:[::1]:25", 1, "inet:127.0.0.1:25"), 0,
	   "a dual-stack ::1 holds no IPv4");
    is_int(test_clashes(NULL, "inet6:[::]:25", "inet:127.0.0.1:25"), 0,
	   ":: with IPV6_V6ONLY (addr_listen) and 127.0.0.1: none");
    is_int(test_clashes("inet:127.0.0.1:9101", "inet6:[::ffff:127.0.0.1]:9101", NULL), 1,
	   "::ffff:127.0.0.1 and metrics_listen on 127.0.0.1: clash");
    is_int(test_clashes(NULL, "inet6:[::ffff:127.0.0.1]:25", "inet:0.0.0.0:25"), 1,
	   "::ffff:127.0.0.1 and the IPv4 wildcard: clash");
    is_int(test_clashes(NULL, "inet6:[::ffff:127.0.0.1]:25", "inet:127.0.0.2:25"), 0,
	   "::ffff:127.0.0.1 and 127.0.0.2: none");
    is_int(test_clashes(NULL, "inet6:[::ffff:127.0.0.1]:25", "inet6:[::ffff:127.0.0.1]:25"), 1,
	   "one mapped address twice: clash");
}

static void test_addresses(void)
{
    is_int(test_clashes(NULL, "inet:127.0.0.1:25", "inet:127.0.0.1:25"), 1, "same address twice");
    is_int(test_clashes(NULL, "inet:0.0.0.0:25", "inet:127.0.0.1:25"), 1, "wildcard and address");
    is_int(test_clashes(NULL, "inet:127.0.0.1:25", "inet:127.0.0.2:25"), 0,
	   "two addresses, one port");
    is_int(test_clashes(NULL, "inet:127.0.0.1:25", "inet:127.0.0.1:26"), 0, "two ports");
    is_int(test_clashes(NULL, "inet6:[::]:25", "inet:0.0.0.0:25"), 0,
	   "IPv6 and IPv4 wildcards coexist (V6ONLY)");
    is_int(test_clashes(NULL, "inet6:[::]:25", "inet6:[::1]:25"), 1, "IPv6 wildcard and ::1");
    is_int(test_clashes(NULL, "unix:/tmp/a.sock", "unix:/tmp/a.sock"), 1, "one UNIX path twice");
    is_int(test_clashes(NULL, "unix:/tmp/a.sock", "unix:/tmp/b.sock"), 0, "two UNIX paths");
    /* TEST-NET addresses: bound by no interface here (bind() to port 0
       fails with EADDRNOTAVAIL; nothing listens anywhere) */
    is_int(test_clashes(NULL, "inet:192.0.2.1:25", NULL), 1, "an address no interface has");
    is_int(test_clashes(NULL, "inet6:[2001:db8::1]:25", NULL), 1,
	   "an IPv6 address no interface has");
    is_int(test_clashes(NULL, "inet:127.0.0.1:25", NULL), 0, "loopback is this host's");
    is_int(test_clashes(NULL, "inet:0.0.0.0:25", NULL), 0, "the wildcard is this host's");
    test_check_one("metrics_listen = inet:192.0.2.1:9101\n", 1,
		   "no interface of this host has that address",
		   "metrics_listen on an address no interface has");
    is_int(test_clashes("inet:127.0.0.1:9101", "inet:127.0.0.1:9101", NULL), 1,
	   "metrics_listen on a listener's address");
    is_int(test_clashes("inet:127.0.0.1:9101", "inet:127.0.0.1:25", NULL), 0,
	   "metrics_listen elsewhere");
    is_int(test_clashes(NULL, "garbage", "garbage"), 0, "unparsable addresses left to the caller");
    is_int(test_clashes(NULL, "inet:127.0.0.1:0", NULL), 1, "a listener on port 0");
    is_int(test_clashes(NULL, "inet6:[::1]:0", NULL), 1, "an IPv6 listener on port 0");
    is_int(test_clashes("inet:127.0.0.1:0", "inet:127.0.0.1:25", NULL), 1,
	   "metrics_listen on port 0");
    is_int(test_clashes(NULL, "unix:/tmp/0", NULL), 0, "a UNIX path has no port");
    test_dual_stack();
}

/* test_fit - daemon_config_connections() under a soft limit of 100 */

static void test_fit_child(void)
{
    struct rlimit rl = {100, 100};
    struct config *cfg;
    int     bad = 0;

    /* soft 100, hard 200: raised to 200 */
    bad |= (setrlimit(RLIMIT_NOFILE, &(struct rlimit) {100, 200}) < 0
	    || daemon_nofile_raise() != 200) << 5;
    if (setrlimit(RLIMIT_NOFILE, &rl) < 0)
	_exit(64);
    cfg = test_config("max_connections = 68\n");
    bad |= daemon_config_connections(cfg, "max_connections", 1, 32) != 68 || cfg->error_count;
    config_free(&cfg);
    cfg = test_config("\nmax_connections = 69\n");
    bad |= (daemon_config_connections(cfg, "max_connections", 1, 32) != 68
	    || cfg->error_count != 1
	    || !strstr(cfg->errors[0], "t.conf:2: max_connections = 69 needs 101 open files")
	    || !strstr(cfg->errors[0], "lower it to 68")) << 1;
    config_free(&cfg);
    cfg = test_config("");
    bad |= (daemon_config_connections(cfg, "max_connections", 6, 32) != 11
	    || cfg->error_count) << 2;
    config_free(&cfg);
    cfg = test_config("max_connections = 0\n");
    bad |= (daemon_config_connections(cfg, "max_connections", 1, 32),
	    cfg->error_count != 1 || !strstr(cfg->errors[0], "at least 1")) << 3;
    config_free(&cfg);
    cfg = test_config("max_connections = 1\n");
    bad |= (daemon_config_connections(cfg, "max_connections", 1, 100),
	    cfg->error_count != 1 || !strstr(cfg->errors[0], "leaves no descriptor")) << 4;
    config_free(&cfg);
    _exit(bad);
}

static void test_fit(void)
{
    pid_t   pid;
    int     status;

    if ((pid = fork()) == 0)
	test_fit_child();
    waitpid(pid, &status, 0);
    ok(WIFEXITED(status), "fit child exited");
    is_int(WEXITSTATUS(status), 0, "max_connections fits the open-files limit (bit mask of "
	   "failures: 1 fits, 2 explicit too many, 4 default lowered, 8 zero, 16 no room, "
	   "32 raise)");
}

/* test_reload - which restart-only changes are named, and only names */

static char *test_reload_log(const char *old_text, const char *new_text, int *count)
{
    struct config *old = test_config(old_text), *new = test_config(new_text);
    char    path[] = "/tmp/daemon_test.log.XXXXXX";
    int     fd = mkstemp(path);
    static char buf[2048];
    ssize_t n;

    daemon_config_running(old);
    msg_set_fd(fd);
    *count = daemon_config_reload(new);
    msg_set_fd(2);
    n = pread(fd, buf, sizeof(buf) - 1, 0);
    buf[n > 0 ? n : 0] = 0;
    close(fd);
    unlink(path);
    config_free(&old);
    config_free(&new);
    return (buf);
}

/* test_reload_sequence - reloads compare with what runs, not the last file */

static void test_reload_sequence(void)
{
    struct config *start = test_config("store = memory\n");
    struct config *redis = test_config("store = redis://127.0.0.1/0\nlistener a\n");
    struct config *back = test_config("store = memory\n");
    int     fd = open("/dev/null", O_WRONLY);

    daemon_config_running(start);
    config_free(&start);			/* the snapshot outlives it */
    msg_set_fd(fd);
    is_int(daemon_config_reload(redis), 2, "reload 1: store and listener changed");
    is_int(daemon_config_reload(redis), 2, "reload 2, same file: still not in effect, said again");
    is_int(daemon_config_unapplied(redis, "store"), 1, "store differs from the running one");
    is_int(daemon_config_unapplied(redis, "deadline"), 0, "deadline is applied by a reload");
    is_int(daemon_config_reload(back), 0, "reload 3, the running values again: nothing to say");
    msg_set_fd(2);
    close(fd);
    config_free(&redis);
    config_free(&back);
}

static void test_reload(void)
{
    int     count;
    char   *log;

    log = test_reload_log("deadline = 1s\n", "deadline = 2s\n", &count);
    is_int(count, 0, "a change a reload applies is not reported");
    is_str(log, "", "and nothing is logged");
    log = test_reload_log("store = redis://:hunter2@127.0.0.1:6379/0\nuser = nobody\n",
			  "store = redis://:swordfish@127.0.0.1:6379/0\n", &count);
    is_int(count, 2, "store and user changed");
    ok(strstr(log, "reload: store, user changed but cannot change while running") != NULL,
       "both named: %s", log);
    ok(strstr(log, "hunter2") == NULL && strstr(log, "swordfish") == NULL,
       "no value (secret) in the log");
    log = test_reload_log("", "listen = inet:127.0.0.1:10031\n", &count);
    is_int(count, 0, "setting the default explicitly is no change");
    log = test_reload_log("listener a\nlistener b\n", "listener a\nlistener b\n", &count);
    is_int(count, 0, "same repeated lines");
    log = test_reload_log("listener a\nlistener b\n", "listener a\n", &count);
    is_int(count, 1, "a repeated line removed");
    log = test_reload_log("listener a\nlistener b\n", "listener b\nlistener a\n", &count);
    is_int(count, 1, "repeated lines reordered");
    log = test_reload_log("", "syslog = yes\nmetrics_listen = inet:127.0.0.1:1\n"
			  "pid_file = /tmp/p\n", &count);
    is_int(count, 3, "the generic rows need a restart");
    test_reload_sequence();
    daemon_config_running(NULL);
}

/* a datagram socket bound at name ("@x": abstract); its fd */
static int notify_listener(const char *name)
{
    union {
	struct sockaddr sa;
	struct sockaddr_un un;
    }       addr;
    size_t  len = strlen(name);
    int     fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_NONBLOCK, 0);

    memset(&addr, 0, sizeof(addr));
    addr.un.sun_family = AF_UNIX;
    memcpy(addr.un.sun_path, name, len);
    if (name[0] == '@')
	addr.un.sun_path[0] = 0;
    if (name[0] == '/')
	unlink(name);
    if (bind(fd, &addr.sa, offsetof(struct sockaddr_un, sun_path) + len) < 0) {
	close(fd);
	return (-1);
    }
    return (fd);
}

static void notify_case(const char *name, const char *label)
{
    char    buf[64];
    int     fd = notify_listener(name);
    ssize_t n;

    ok(fd >= 0, "%s: a listener", label);
    setenv("NOTIFY_SOCKET", name, 1);
    is_int(daemon_notify("READY=1"), 0, "%s: READY=1 sent", label);
    n = fd >= 0 ? recv(fd, buf, sizeof(buf) - 1, 0) : -1;
    buf[n > 0 ? n : 0] = 0;
    is_str(buf, "READY=1", "%s: exactly READY=1 arrives, one datagram", label);
    if (fd >= 0)
	close(fd);
    if (name[0] == '/')
	unlink(name);
}

static void test_notify(void)
{
    char    path[64], longer[200];

    unsetenv("NOTIFY_SOCKET");
    is_int(daemon_notify("READY=1"), 0, "no NOTIFY_SOCKET: nothing to tell, no error");
    snprintf(path, sizeof(path), "/tmp/daemon_test.notify.%ld", (long) getpid());
    notify_case(path, "a path");
    snprintf(path, sizeof(path), "@daemon_test.notify.%ld", (long) getpid());
    notify_case(path, "the abstract namespace");
    setenv("NOTIFY_SOCKET", "relative/notify", 1);
    is_int(daemon_notify("READY=1"), -1, "a relative NOTIFY_SOCKET: refused");
    memset(longer, 'x', sizeof(longer) - 1);
    longer[0] = '/';
    longer[sizeof(longer) - 1] = 0;
    setenv("NOTIFY_SOCKET", longer, 1);
    is_int(daemon_notify("READY=1"), -1, "a NOTIFY_SOCKET longer than sun_path: refused");
    setenv("NOTIFY_SOCKET", "/nonexistent-mxkit/notify", 1);
    is_int(daemon_notify("READY=1"), -1, "nobody listening: -1, the daemon goes on");
    unsetenv("NOTIFY_SOCKET");
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
    test_signal_policy();
    test_generic_checks();
    test_addresses();
    test_fit();
    test_reload();
    test_privileges();
    test_notify();
    return (tap_done());
}
