/*
 * NAME
 *	ctl_main 3
 * SUMMARY
 *	policyd-ratelimit ctl: the operator's command
 * SYNOPSIS
 *	policyd-ratelimit ctl [-c config_file] [-s socket] show KEY
 *	policyd-ratelimit ctl [-c config_file] [-s socket] reset KEY
 *	policyd-ratelimit ctl [-c config_file] [-s socket] release KEY
 *	policyd-ratelimit ctl [-c config_file] [-s socket] top [N]
 * DESCRIPTION
 *	Sends one request to the running daemon's control_socket (read
 *	from the configuration, or given with -s) and prints the answer.
 * DIAGNOSTICS
 *	Exit status 0 when the daemon answered "ok", 1 when it answered
 *	an error (printed on stderr), 2 when it could not be asked. A
 *	daemon that is stopped (SIGSTOP, a debugger, swapped out) or
 *	hung accepts connections into its backlog and never answers:
 *	connecting, sending and each read give up after CTL_CLIENT_WAIT
 *	seconds without progress (exit 2), so a script or monitoring
 *	check that runs ctl never hangs with it.
 */

#include "build_config.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/un.h>
#include <unistd.h>

#include "config.h"
#include "ctl.h"
#include "daemon.h"
#include "msg.h"
#include "xalloc.h"

#define CTL_CLIENT_WAIT	30		/* s without progress: longer than any
					 * daemon phase and a top of a big store */

static void ctl_usage(void)
{
    fprintf(stderr, "usage: policyd-ratelimit ctl [-c config_file] [-s socket] "
	    "show KEY | reset KEY | release KEY | top [N]\n");
    exit(2);
}

/* ctl_socket_path - -s, or control_socket from the configuration */

static char *ctl_socket_path(const char *config_path, const struct config_spec *specs)
{
    struct config *cfg = config_read(config_path, specs);
    const char *path;
    char   *copy;

    if (cfg->error_count) {
	config_print_errors(cfg);
	exit(2);
    }
    if ((path = config_get_str(cfg, "control_socket")) == NULL) {
	fprintf(stderr, "policyd-ratelimit ctl: %s sets no control_socket\n", config_path);
	exit(2);
    }
    copy = xstrdup(path);
    config_free(&cfg);
    return (copy);
}

static int ctl_connect(const char *path)
{
    union {
	struct sockaddr sa;
	struct sockaddr_un un;
    } u;
    struct timeval wait = {CTL_CLIENT_WAIT, 0};
    int     fd;

    memset(&u, 0, sizeof(u));
    u.un.sun_family = AF_UNIX;
    if (strlen(path) >= sizeof(u.un.sun_path)) {
	fprintf(stderr, "policyd-ratelimit ctl: socket path too long\n");
	exit(2);
    }
    strcpy(u.un.sun_path, path);
    /* a full backlog blocks connect(2) on a UNIX socket: SO_SNDTIMEO bounds it */
    if ((fd = socket(AF_UNIX, SOCK_STREAM, 0)) < 0
	|| setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &wait, sizeof(wait)) < 0
	|| setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &wait, sizeof(wait)) < 0
	|| connect(fd, &u.sa, sizeof(u.un)) < 0) {
	fprintf(stderr, "policyd-ratelimit ctl: cannot connect to %s: %s\n", path,
		errno == EAGAIN || errno == EWOULDBLOCK || errno == EINPROGRESS
		? "the daemon accepts no connection (stopped or hung?)" : strerror(errno));
	exit(2);
    }
    return (fd);
}

/* ctl_exchange - send the request, print the answer; the exit status */

static int ctl_exchange(int fd, const char *request)
{
    struct ctl_out in = {0};
    char    buf[65536];
    ssize_t n;
    size_t  off = 0, len = strlen(request);
    int     status;

    while (off < len) {
	if ((n = send(fd, request + off, len - off, MSG_NOSIGNAL)) <= 0)
	    break;				/* an early answer says why */
	off += n;
    }
    (void) shutdown(fd, SHUT_WR);
    while ((n = read(fd, buf, sizeof(buf))) > 0 || (n < 0 && errno == EINTR))
	if (n > 0)
	    ctl_printf(&in, "%.*s", (int) n, buf);
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
	fprintf(stderr, "policyd-ratelimit ctl: no answer from the daemon in %ds "
		"(stopped or hung?)\n", CTL_CLIENT_WAIT);
	free(in.text);
	return (2);
    }
    if (in.len >= 3 && strncmp(in.text, "ok\n", 3) == 0) {
	fwrite(in.text + 3, 1, in.len - 3, stdout);
	status = 0;
    } else {
	fprintf(stderr, "policyd-ratelimit ctl: %.*s%s", (int) in.len, in.text ? in.text : "",
		in.len ? "" : "no answer from the daemon\n");
	status = in.len ? 1 : 2;
    }
    free(in.text);
    return (status);
}

int     ctl_main(int argc, char **argv, const char *default_config,
		         const struct config_spec *specs)
{
    const char *config_path = default_config;
    char   *path = NULL, *request;
    int     ch, fd, status;

    while ((ch = getopt(argc, argv, "+c:s:")) != -1) {
	switch (ch) {
	case 'c':
	    config_path = optarg;
	    break;
	case 's':
	    path = xstrdup(optarg);
	    break;
	default:
	    ctl_usage();
	}
    }
    argc -= optind, argv += optind;
    if (argc < 1 || argc > 2 || (strcmp(argv[0], "top") != 0 && argc != 2))
	ctl_usage();
    if (argc == 2 && strpbrk(argv[1], "\r\n") != NULL) {
	/* the daemon reads one line: "reset a\nb" would reset a */
	fprintf(stderr, "policyd-ratelimit ctl: KEY with a line break: no request "
		"can carry it\n");
	return (1);
    }
    if (argc == 2 && strlen(argv[1]) > POLICY_LINE_MAX) {
	fprintf(stderr, "policyd-ratelimit ctl: KEY longer than %d bytes: no request "
		"can carry it\n", POLICY_LINE_MAX);
	return (1);
    }
    if (path == NULL)
	path = ctl_socket_path(config_path, specs);
    request = xasprintf("%s%s%s\n", argv[0], argc == 2 ? " " : "", argc == 2 ? argv[1] : "");
    fd = ctl_connect(path);
    status = ctl_exchange(fd, request);
    close(fd);
    free(request);
    free(path);
    return (status);
}
