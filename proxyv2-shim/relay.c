/*
 * NAME
 *	relay 3
 * SUMMARY
 *	bidirectional socket relay with splice(2) on libevent
 * SYNOPSIS
 *	#include "relay.h"
 *
 *	struct relay *relay_start(base, client_fd, backend_fd, idle_ms,
 *				done, context)
 *	void	relay_bytes(relay, &up, &down)
 *	void	relay_free(&relay)
 * DESCRIPTION
 *	Each direction moves data socket -> pipe -> socket with splice(2),
 *	so the bytes never visit user space. A direction reads only when
 *	its pipe is empty, which is the back-pressure: a slow reader on
 *	one side stops reading from the other.
 *
 *	End of file on one side is passed on with shutdown(SHUT_WR) to
 *	the other (half-close: an SMTP client may close its sending side
 *	after QUIT and still read the 221). Every other end is passed on
 *	as a reset (SO_LINGER 0 on both sockets, which the caller
 *	closes), so that a cut stream never ends like a whole one: a
 *	reset read on one side, a write that fails because the other
 *	side is gone (found by the direction that writes there, which
 *	may be the other one: the bytes in its pipe are lost), a read
 *	error, or an idle timeout while a pipe still holds bytes. The
 *	relay is done when both directions have ended, on an error, or
 *	after idle_ms without a byte moved either way (read or written:
 *	a slow reader draining what the shim holds is not idle).
 *
 *	No SPLICE_F_MORE: on line protocols it holds back the last
 *	segment of each reply (~200 ms).
 * DIAGNOSTICS
 *	done(context, NULL) after an orderly end, done(context, reason)
 *	otherwise. The caller closes the sockets and frees the relay.
 */

#include "build_config.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "relay.h"
#include "xalloc.h"

#define RELAY_CHUNK (1024 * 1024)
#define RELAY_PIPE_SIZE (1024 * 1024)	/* fewer splice calls per MB */

struct relay_half {
    struct relay *relay;
    int     from;
    int     to;
    int     pipe[2];
    size_t  pending;			/* bytes in the pipe */
    int     eof;			/* read side ended */
    int     shut;			/* passed on with shutdown() */
    int     grown;			/* pipe enlarged for bulk data */
    unsigned long long bytes;
    struct event *readable;
    struct event *writable;
};

struct relay {
    struct relay_half up;		/* client -> backend */
    struct relay_half down;		/* backend -> client */
    struct event *idle;
    int     idle_ms;
    time_t  last_activity;		/* CLOCK_MONOTONIC seconds */
    relay_done_fn done;
    void   *context;
    int     finished;
};

static time_t relay_now(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (ts.tv_sec);
}

/*
 * relay_cut - end both connections with a reset: the caller's close()
 * then sends RST, so neither peer can take a stream cut short for a
 * whole one (a protocol whose data ends at end of file would).
 */
static void relay_cut(struct relay *r)
{
    struct linger hard = {1, 0};

    (void) setsockopt(r->up.from, SOL_SOCKET, SO_LINGER, &hard, sizeof(hard));
    (void) setsockopt(r->down.from, SOL_SOCKET, SO_LINGER, &hard, sizeof(hard));
}

/* relay_end - stop both directions and report; cut: with a reset */

static void relay_end(struct relay *r, const char *why, int cut)
{
    if (r->finished)
	return;
    r->finished = 1;
    if (cut)
	relay_cut(r);
    event_del(r->up.readable);
    event_del(r->up.writable);
    event_del(r->down.readable);
    event_del(r->down.writable);
    event_del(r->idle);
    r->done(r->context, why);			/* may free r */
}

static void relay_finish(struct relay *r, const char *why)
{
    relay_end(r, why, why != NULL);
}

/* relay_pump - move what can move now; 0 to wait, else an error */

static const char *relay_pump(struct relay_half *h)
{
    ssize_t n;

    for (;;) {
	if (h->pending > 0) {
	    n = splice(h->pipe[0], NULL, h->to, NULL, h->pending,
		       SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
	    if (n > 0) {
		h->pending -= (size_t) n;
		h->relay->last_activity = relay_now();
		continue;
	    }
	    if (n < 0 && errno == EAGAIN) {
		event_add(h->writable, NULL);
		return (NULL);
	    }
	    if (n < 0 && errno == EINTR)
		continue;
	    return (h == &h->relay->up ? "write to backend failed" : "write to client failed");
	}
	if (h->eof) {
	    if (!h->shut)
		(void) shutdown(h->to, SHUT_WR);
	    h->shut = 1;
	    return (NULL);
	}
	n = splice(h->from, NULL, h->pipe[1], NULL, RELAY_CHUNK,
		   SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
	if (n > 0) {
	    /*
	     * A full default pipe means bulk data: a 1 MB pipe cuts the
	     * splice calls per megabyte sixteenfold. Only then, because
	     * pipe pages count against the user's pipe-user-pages-soft;
	     * past it the kernel refuses and the default size stays.
	     */
	    if (!h->grown && n >= 65536) {
		(void) fcntl(h->pipe[1], F_SETPIPE_SZ, RELAY_PIPE_SIZE);
		h->grown = 1;
	    }
	    h->pending = (size_t) n;
	    h->bytes += (unsigned long long) n;
	    h->relay->last_activity = relay_now();
	    continue;
	}
	if (n == 0) {
	    h->eof = 1;
	    continue;
	}
	if (errno == EAGAIN) {
	    event_add(h->readable, NULL);
	    return (NULL);
	}
	if (errno == EINTR)
	    continue;
	if (errno == ECONNRESET)		/* passed on as a reset: relay_cut() */
	    return (h == &h->relay->up ? "reset by the client" : "reset by the backend");
	return (h == &h->relay->up ? "read from client failed" : "read from backend failed");
    }
}

static void relay_event(evutil_socket_t fd, short what, void *context)
{
    struct relay_half *h = context;
    struct relay *r = h->relay;
    const char *err = relay_pump(h);

    if (err)
	relay_finish(r, err);
    else if (r->up.shut && r->down.shut)
	relay_finish(r, NULL);
}

static void relay_idle(evutil_socket_t fd, short what, void *context)
{
    struct relay *r = context;
    long    quiet = (long) (relay_now() - r->last_activity) * 1000;
    struct timeval tv;

    if (quiet >= r->idle_ms) {
	/* idle with nothing held: closed as a server closes an idle
	   connection; with bytes still held, the stream is cut */
	if (r->up.pending == 0 && r->down.pending == 0)
	    relay_end(r, "idle timeout", 0);
	else
	    relay_end(r, "idle timeout with bytes not yet delivered", 1);
	return;
    }
    tv.tv_sec = (r->idle_ms - quiet) / 1000 + 1;
    tv.tv_usec = 0;
    event_add(r->idle, &tv);
}

static int relay_half_init(struct event_base *base, struct relay *r, struct relay_half *h,
			           int from, int to)
{
    h->relay = r;
    h->from = from;
    h->to = to;
    if (pipe2(h->pipe, O_NONBLOCK | O_CLOEXEC) < 0)
	return (-1);

    h->readable = event_new(base, from, EV_READ, relay_event, h);
    h->writable = event_new(base, to, EV_WRITE, relay_event, h);
    return (0);
}

struct relay *relay_start(struct event_base *base, int client_fd, int backend_fd,
			          int idle_ms, relay_done_fn done, void *context)
{
    struct relay *r = xcalloc(1, sizeof(*r));
    struct timeval tv = {idle_ms / 1000, (idle_ms % 1000) * 1000};

    r->up.pipe[0] = r->up.pipe[1] = r->down.pipe[0] = r->down.pipe[1] = -1;
    if (relay_half_init(base, r, &r->up, client_fd, backend_fd) < 0
	|| relay_half_init(base, r, &r->down, backend_fd, client_fd) < 0) {
	relay_free(&r);
	return (NULL);
    }
    r->idle_ms = idle_ms;
    r->done = done;
    r->context = context;
    r->last_activity = relay_now();
    r->idle = evtimer_new(base, relay_idle, r);
    event_add(r->idle, &tv);
    /* Data may already wait (pipelined behind the PROXY header). */
    event_active(r->up.readable, EV_READ, 0);
    event_active(r->down.readable, EV_READ, 0);
    return (r);
}

void    relay_bytes(const struct relay *r, unsigned long long *up, unsigned long long *down)
{
    *up = r->up.bytes;
    *down = r->down.bytes;
}

static void relay_half_free(struct relay_half *h)
{
    if (h->readable)
	event_free(h->readable);
    if (h->writable)
	event_free(h->writable);
    for (int i = 0; i < 2; i++)
	if (h->pipe[i] >= 0)
	    close(h->pipe[i]);
}

void    relay_free(struct relay **rp)
{
    struct relay *r = *rp;

    if (r == NULL)
	return;
    relay_half_free(&r->up);
    relay_half_free(&r->down);
    if (r->idle)
	event_free(r->idle);
    free(r);
    *rp = NULL;
}
