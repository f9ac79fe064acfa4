/*
 * NAME
 *	msg 3
 * SUMMARY
 *	diagnostics to stderr and/or syslog
 * SYNOPSIS
 *	#include "msg.h"
 *
 *	void	msg_init(progname, outputs)
 *	void	msg_set_outputs(outputs)
 *	void	msg_set_bounded(on)
 *	void	msg_info(fmt, ...)
 *	void	msg_warn(fmt, ...)
 *	void	msg_error(fmt, ...)
 *	void	msg_fatal(fmt, ...)
 *	void	msg_panic(fmt, ...)
 * DESCRIPTION
 *	Lines look like Postfix's: "program[pid]: warning: text", so that
 *	operators can grep mxkit logs exactly as they grep the maillog.
 *	msg_fatal() exits with status 1; msg_panic() is for broken
 *	invariants and aborts (core dump). msg_error() logs and returns.
 *
 *	outputs is MSG_STDERR, MSG_SYSLOG or both; syslog uses LOG_MAIL.
 *	msg_init() opens /dev/null on whichever of descriptors 0, 1 and 2
 *	is closed (a daemon started as "daemon 2>&-"), so that no file,
 *	socket or pid file the program opens later becomes its stderr.
 *	msg_set_fd() redirects the stderr copy (tests). msg_set_outputs()
 *	changes the outputs after msg_init() (a daemon that detaches stops
 *	writing to the terminal that started it).
 *
 *	msg_set_bounded(1): the stderr copy never waits for good. A
 *	detaching daemon and its starter write to whoever started them,
 *	and a caller that reads their stderr only after the start (a
 *	pipe that fills at 64 KB) would otherwise hold both in write()
 *	for ever, past start_timeout. A line waits at most
 *	MSG_STALL_MS for room, and none waits once one was dropped,
 *	until the reader makes room again; syslog keeps every line. The
 *	copy is cut at PIPE_BUF, the most a pipe with room takes whole.
 * DIAGNOSTICS
 *	None; a failed write is ignored (there is nowhere left to report it).
 */

#include "build_config.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <syslog.h>
#include <unistd.h>

#include "msg.h"

#define MSG_LEVEL_INFO   0
#define MSG_LEVEL_WARN   1
#define MSG_LEVEL_ERROR  2
#define MSG_LEVEL_FATAL  3
#define MSG_LEVEL_PANIC  4

int     msg_verbose;

static const char *msg_name = "mxkit";
static int msg_outputs = MSG_STDERR;
static int msg_fd = 2;
static int msg_bounded;			/* msg_set_bounded() */
static int msg_stalled;			/* a bounded line was dropped */

#define MSG_STALL_MS	1000		/* a bounded line's longest wait */

void    msg_init(const char *progname, int outputs)
{
    const char *slash = strrchr(progname, '/');
    int     fd;

    /* started with stdin, stdout or stderr closed ("daemon 2>&-"): the
       next open() would become "stderr" (an epoll descriptor, a
       listener, the pid file), written to by every message and replaced
       by /dev/null when the daemon detaches */
    while ((fd = open("/dev/null", O_RDWR)) >= 0 && fd <= 2)
	 /* void */ ;
    if (fd > 2)
	close(fd);
    msg_name = slash ? slash + 1 : progname;
    msg_outputs = outputs;
    if (outputs & MSG_SYSLOG)
	openlog(msg_name, LOG_PID | LOG_NDELAY, LOG_MAIL);
}

void    msg_set_outputs(int outputs)
{
    msg_outputs = outputs;
}

void    msg_set_bounded(int on)
{
    msg_bounded = on;
    msg_stalled = 0;
}

/* msg_write_stderr - the stderr copy of one line */

static void msg_write_stderr(const char *line, int len)
{
    struct pollfd pfd = {msg_fd, POLLOUT, 0};
    int     n;

    if (msg_bounded) {
	while ((n = poll(&pfd, 1, msg_stalled ? 0 : MSG_STALL_MS)) < 0 && errno == EINTR)
	     /* void */ ;
	if ((msg_stalled = (n == 0)) != 0)
	    return;				/* syslog has it */
    }
    if (write(msg_fd, line, len) < 0) {
	/* nowhere left to report this */
    }
}

void    msg_set_fd(int fd)
{
    msg_fd = fd;
}

const char *msg_progname(void)
{
    return (msg_name);
}

void    msg_vlog(int level, const char *fmt, va_list ap)
{
    static const char *const labels[] = {"", "warning: ", "error: ", "fatal: ", "panic: "};
    static const int priorities[] = {LOG_INFO, LOG_WARNING, LOG_ERR, LOG_CRIT, LOG_CRIT};
    char    text[4096];
    char    line[4200];
    int     saved_errno = errno;
    int     len;

    vsnprintf(text, sizeof(text), fmt, ap);
    if (msg_outputs & MSG_STDERR) {
	len = snprintf(line, sizeof(line), "%s[%ld]: %s%s\n", msg_name,
		       (long) getpid(), labels[level], text);
	if (len > (int) sizeof(line) - 1)
	    len = sizeof(line) - 1;
	if (msg_bounded && len > PIPE_BUF) {	/* whole into a pipe with room */
	    len = PIPE_BUF;
	    line[len - 1] = '\n';
	}
	msg_write_stderr(line, len);
    }
    if (msg_outputs & MSG_SYSLOG)
	syslog(priorities[level], "%s%s", labels[level], text);
    errno = saved_errno;
}

#define MSG_WRAPPER(name, level) \
    void name(const char *fmt, ...) \
    { \
	va_list ap; \
	va_start(ap, fmt); \
	msg_vlog(level, fmt, ap); \
	va_end(ap); \
    }

MSG_WRAPPER(msg_info, MSG_LEVEL_INFO)
MSG_WRAPPER(msg_warn, MSG_LEVEL_WARN)
MSG_WRAPPER(msg_error, MSG_LEVEL_ERROR)

void    msg_fatal(const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    msg_vlog(MSG_LEVEL_FATAL, fmt, ap);
    va_end(ap);
    exit(1);
}

void    msg_panic(const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    msg_vlog(MSG_LEVEL_PANIC, fmt, ap);
    va_end(ap);
    abort();
}
