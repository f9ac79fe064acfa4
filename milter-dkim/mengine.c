/*
 * NAME
 *	mengine 3
 * SUMMARY
 *	milter protocol sockets: listen, one thread per session
 * SYNOPSIS
 *	#include "mengine.h"
 *
 *	int	mengine_open(spec, &err)
 *
 *	int	mengine_run(listen_fd, desc)
 *
 *	void	mengine_drain(drain_ms)
 *
 *	void	mengine_stop(void)
 *
 *	int	mengine_timeout;
 *
 *	int	mengine_max_sessions;
 * DESCRIPTION
 *	Takes the place of libmilter under milter.c. Debian's libmilter is
 *	built with its worker pool: a session whose next packet had not
 *	arrived within 1 ms went back to a controller thread (a byte down a
 *	pipe, the controller's poll set rebuilt, a worker woken by condition
 *	variable or a thread created, and one exiting again above four
 *	idle), so every wait on the MTA cost several thread hand-offs, and
 *	each packet four system calls (poll and read for the length, poll
 *	and read for the rest). Measured through Postfix, 10 sessions: 20
 *	context switches, 82 polls, 49 reads and 0.8 thread creations per
 *	message (doc/benchmarks.md).
 *
 *	Here a session has one thread from accept to close: idle workers
 *	wait in accept() (the kernel wakes one per connection), and the
 *	one that accepted reads whatever has arrived (one read() takes many
 *	packets), hands each whole packet to msession(3), writes all the
 *	replies that produced with one write, and blocks in read() again;
 *	the callbacks, the RSA signature included, run on it. No thread
 *	waits for another, and no thread is made per connection: the last
 *	idle worker to accept starts one more first (so one always waits
 *	in accept()), and a worker that finds MENGINE_IDLE_MAX (8) others
 *	idle when its session ends exits. Threads: the sessions open plus
 *	up to 8, and never more than mengine_max_sessions (max_sessions):
 *	with that many sessions open no thread waits in accept(), and
 *	clients wait in the listen backlog until one ends (a warning every
 *	10 s at most). Without it only the open-files limit bounded them,
 *	and that is raised to the hard limit at start (524288 under
 *	systemd): a client could make a thread and an 8 MB packet buffer
 *	per connection. One thread per session rather than an event loop per CPU
 *	because inbound mail is verified at end of message with blocking
 *	DNS (libopendkim, SPF, DMARC): on an event loop one slow lookup
 *	would stall every session sharing that loop.
 *
 *	mengine_open() makes the listening socket of "spec" as libmilter
 *	read it: unix:PATH, local:PATH or a bare PATH; inet:PORT[@HOST] and
 *	inet6:PORT[@HOST] (no host: every address). A TCP socket gets
 *	TCP_NODELAY (replies are one write each, but Postfix's next packet
 *	must not wait for our ACK). -1 and err set on failure.
 *
 *	mengine_run() starts the first worker and waits for mengine_drain()
 *	or mengine_stop() (safe from any thread, also before mengine_run());
 *	then it shuts the listener down (accept() returns in every idle
 *	worker; new clients are refused). After mengine_drain(ms) the
 *	sessions between messages (msession_between(): waiting for the
 *	MTA's next MAIL) are closed at once, and those inside a message
 *	finish it: each is closed once its end of message is answered (or
 *	the message aborted), instead of reading the next. That lasts until
 *	none is left, ms milliseconds pass, or mengine_stop() is called (a
 *	second SIGTERM). Then it ends the sessions still open (their sockets
 *	are shut down: their threads see end of file, run the abort and
 *	close callbacks and exit; Postfix applies milter_default_action),
 *	waits for the workers, at most 10 seconds, and closes the listener.
 *	A session parked in read() between messages says so in an atomic
 *	(mengine_parked()), which the drain swaps to "cut" before shutting
 *	its socket down: a MAIL that arrives in that instant is dropped
 *	with the session, never half served.
 *
 *	Bounds: a packet up to MPROTO_DATA_MAX (mproto(3)); the input
 *	buffer grows to the packet it holds and shrinks back when it was
 *	large; a session with no progress for mengine_timeout seconds
 *	(reading or writing; libmilter's 7210 by default) is closed, and
 *	one that has not negotiated 10 s after it was accepted: an MTA
 *	sends OPTNEG as it connects (it is in the socket buffer when a
 *	client waited in the backlog), and a client that sends nothing
 *	would hold one of max_sessions for two hours. Out of
 *	descriptors or memory, accept() pauses 100 ms (skeleton(3) logs it,
 *	rate-limited) and the clients wait in the backlog; when no worker
 *	can be started, accepting resumes as soon as a session ends.
 * DIAGNOSTICS
 *	A session ended by a protocol error, a timeout or an I/O error is
 *	logged with the reason; end of file is not.
 */

#include "build_config.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <openssl/crypto.h>

#include "addr.h"
#include "daemon.h"
#include "mengine.h"
#include "msession.h"
#include "msg.h"
#include "skeleton.h"
#include "xalloc.h"

#define MENGINE_BUF_MIN	16384
#define MENGINE_BUF_KEEP (256 * 1024)	/* shrink back past this */

int     mengine_timeout = 7210;
int     mengine_max_sessions = 1000;

#define MENGINE_IDLE_MAX 8		/* idle workers kept waiting in accept() */
#define MENGINE_OPTNEG_TIMEOUT 10	/* seconds from accept to negotiation */

/* a session's c.idle: is it parked in read() between messages? */
#define MENGINE_BUSY	0
#define MENGINE_PARKED	1		/* between messages, in read() */
#define MENGINE_CUT	2		/* parked when the drain began: closed */

struct mengine_conn {
    int     fd;
    _Atomic int idle;
    struct mengine_conn *prev, *next;
};

static struct {
    pthread_mutex_t lock;
    pthread_cond_t gone;
    int     wake[2];			/* mengine_stop() writes here */
    int     listen_fd;
    const struct smfiDesc *desc;
    int     threads;			/* workers */
    int     idle;			/* of them, in accept() */
    int     stopping;			/* accept no more */
    int     cutting;			/* every session is being cut */
    int     cut;			/* mengine_stop(): cut at once */
    long long drain_ms;			/* mengine_drain(): let sessions finish */
    _Atomic int draining;
    struct mengine_conn *list;		/* sessions being served */
} mengine = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, {-1, -1}, -1, NULL,
0, 0, 0, 0, 0, 0, 0, NULL};

/* mengine_open_inet - inet:PORT[@HOST] or inet6:PORT[@HOST] */

static int mengine_open_inet(const char *spec, int family, const char **err)
{
    const char *at = strchr(spec, '@');
    char   *port = at ? xstrndup(spec, at - spec) : xstrdup(spec);
    char   *host = at ? xstrdup(at + 1) : NULL;
    struct addrinfo hints = {0}, *res = NULL;
    int     fd = -1, one = 1;

    if (host && *host == '[' && host[strlen(host) - 1] == ']') {
	memmove(host, host + 1, strlen(host));
	host[strlen(host) - 1] = 0;
    }
    hints.ai_family = family;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_PASSIVE;
    if (getaddrinfo(host, port, &hints, &res) != 0 || res == NULL)
	*err = "socket: the host or port does not resolve";
    else if ((fd = socket(res->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0)) < 0)
	*err = "socket: cannot make a TCP socket";
    else if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0
	     || bind(fd, res->ai_addr, res->ai_addrlen) < 0) {
	*err = errno == EADDRINUSE ? "socket: cannot bind the address: it is in use"
	    : errno == EADDRNOTAVAIL ? "socket: cannot bind the address: no interface has it"
	    : "socket: cannot bind the address";
	close(fd);
	fd = -1;
    } else {
	(void) setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    }
    if (res)
	freeaddrinfo(res);
    free(port);
    free(host);
    return (fd);
}

static int mengine_open_unix(const char *path, const char **err)
{
    union {
	struct sockaddr sa;
	struct sockaddr_un sun;
    }       u = {.sun = {.sun_family = AF_UNIX}};
    int     fd;

    if (strlen(path) >= sizeof(u.sun.sun_path)) {
	*err = "socket: the UNIX socket path is too long";
	return (-1);
    }
    strcpy(u.sun.sun_path, path);
    if ((fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0)) < 0) {
	*err = "socket: cannot make a UNIX socket";
	return (-1);
    }
    if (bind(fd, &u.sa, sizeof(u.sun)) < 0) {
	*err = "socket: cannot bind the UNIX socket (exists, or no permission?)";
	close(fd);
	return (-1);
    }
    return (fd);
}

int     mengine_open(const char *spec, const char **err)
{
    const char *colon = strchr(spec, ':');
    int     fd;

    *err = NULL;
    if (mengine.wake[0] < 0 && pipe2(mengine.wake, O_CLOEXEC | O_NONBLOCK) < 0) {
	*err = "cannot make a pipe";
	return (-1);
    }
    if (colon == NULL)
	fd = mengine_open_unix(spec, err);
    else if (strncmp(spec, "unix:", 5) == 0 || strncmp(spec, "local:", 6) == 0)
	fd = mengine_open_unix(colon + 1, err);
    else if (strncmp(spec, "inet:", 5) == 0)
	fd = mengine_open_inet(spec + 5, AF_INET, err);
    else if (strncmp(spec, "inet6:", 6) == 0)
	fd = mengine_open_inet(spec + 6, AF_INET6, err);
    else {
	*err = "socket must be inet:PORT@HOST, inet6:PORT@HOST or unix:/PATH";
	return (-1);
    }
    if (fd >= 0 && listen(fd, SOMAXCONN) < 0) {
	*err = "socket: listen failed";
	close(fd);
	fd = -1;
    }
    return (fd);
}

/* mengine_write - every reply of one batch, at once */

static const char *mengine_write(int fd, struct mproto_buf *out)
{
    size_t  off = 0;
    ssize_t n;

    while (off < out->len) {
	if ((n = send(fd, out->data + off, out->len - off, MSG_NOSIGNAL)) > 0)
	    off += n;
	else if (n < 0 && errno == EINTR)
	    continue;
	else if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
	    return ("the MTA read nothing for the timeout");
	else
	    return (n < 0 ? strerror(errno) : "write error");
    }
    out->len = 0;
    return (NULL);
}

/* mengine_room - buffer space for the rest of the packet at its head */

static char *mengine_room(char *buf, size_t have, size_t *cap)
{
    size_t  need = MENGINE_BUF_MIN;
    uint32_t n;

    if (have >= 4) {
	memcpy(&n, buf, 4);
	n = ntohl(n);				/* <= MPROTO_DATA_MAX + 1: framed */
	if (4 + (size_t) n > need)
	    need = 4 + (size_t) n;
    }
    if (have == 0 && *cap > MENGINE_BUF_KEEP) {	/* after a big header */
	free(buf);
	*cap = MENGINE_BUF_MIN;
	return (xmalloc(*cap));
    }
    if (need > *cap || *cap - have < 512) {
	*cap = need > *cap ? need : *cap * 2;
	buf = xrealloc(buf, *cap);
    }
    return (buf);
}

/*
 * mengine_parked - about to read between messages: say so to a drain
 * (mengine_cut_parked()), and close now when one runs. The store and the
 * load are sequentially consistent, as the drain's: either this sees it
 * draining, or the drain sees this parked.
 */
static int mengine_parked(struct mengine_conn *c, const struct msession *s, size_t have)
{
    if (have > 0 || !msession_between(s))
	return (0);
    atomic_store(&c->idle, MENGINE_PARKED);
    return (atomic_load(&mengine.draining));
}

/* mengine_serve - read, dispatch, write, until QUIT, EOF or an error */

static const char *mengine_serve(int fd, struct msession *s, struct mengine_conn *c)
{
    size_t  cap = MENGINE_BUF_MIN, have = 0, used;
    char   *buf = xmalloc(cap);
    const char *why = NULL;
    struct timeval tv = {mengine_timeout, 0};
    ssize_t n;
    int     r, negotiated = 0;

    for (;;) {
	r = msession_input(s, buf, have, &used);
	if (!negotiated && s->version) {	/* the session's own timeout now */
	    (void) setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	    negotiated = 1;
	}
	memmove(buf, buf + used, have - used);
	have -= used;
	if (s->out.len && (why = mengine_write(fd, &s->out)) != NULL)
	    break;
	if (r != MSESSION_MORE) {
	    why = r == MSESSION_ERROR ? s->error : NULL;
	    break;
	}
	buf = mengine_room(buf, have, &cap);
	if (mengine_parked(c, s, have))
	    break;				/* a stop: no next message here */
	while ((n = read(fd, buf + have, cap - have)) < 0 && errno == EINTR)
	     /* void */ ;
	if (atomic_exchange(&c->idle, MENGINE_BUSY) == MENGINE_CUT)
	    break;				/* a next MAIL raced the stop */
	if (n == 0)
	    break;				/* the MTA closed: not an error */
	if (n < 0) {
	    why = errno != EAGAIN && errno != EWOULDBLOCK ? strerror(errno) : negotiated ?
		"the MTA sent nothing for the timeout" : "no negotiation within 10 s";
	    break;
	}
	have += n;
    }
    free(buf);
    return (why);
}

static void mengine_pause(void)
{
    struct timespec pause = {0, 100 * 1000 * 1000};

    while (nanosleep(&pause, &pause) < 0 && errno == EINTR)
	 /* void */ ;
}

static void *mengine_worker(void *);

/* mengine_full - every session slot taken: say so, once per 10 s at most */

static void mengine_full(void)
{
    static long long last = -1;
    long long now = daemon_mono_sec();

    if (last < 0 || now - last >= 10) {
	last = now;
	msg_warn("%d milter sessions open (max_sessions): further clients wait in the "
		 "listen backlog", mengine.threads);
    }
}

/* mengine_spawn - one more worker; the caller holds the lock */

static int mengine_spawn(void)
{
    pthread_attr_t attr;
    pthread_t tid;
    int     err;

    pthread_attr_init(&attr);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    if ((err = pthread_create(&tid, &attr, mengine_worker, NULL)) == 0) {
	mengine.threads++;
	mengine.idle++;
    }
    pthread_attr_destroy(&attr);
    return (err);
}

/* mengine_peer - who a session is with: an address, or the UNIX socket */

static const char *mengine_peer(int fd, char *buf, size_t len)
{
    union addr_sockaddr sa;
    socklen_t salen = sizeof(sa);

    if (getpeername(fd, &sa.sa, &salen) < 0 || (sa.sa.sa_family != AF_INET
						 && sa.sa.sa_family != AF_INET6))
	return ("the UNIX socket");
    return (addr_format(&sa.sa, buf, len));
}

/* mengine_session - one accepted connection, served on this thread */

static void mengine_session(int fd)
{
    struct timeval tv = {mengine_timeout, 0}, optneg = {MENGINE_OPTNEG_TIMEOUT, 0};
    struct mengine_conn c = {fd, MENGINE_BUSY, NULL, NULL};
    struct msession s;
    const char *why;
    char    peer[ADDR_TEXT_MAX];
    int     one = 1;

    (void) setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &optneg, sizeof(optneg));
    (void) setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
    (void) setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));	/* fails on UNIX */
    pthread_mutex_lock(&mengine.lock);
    if ((c.next = mengine.list) != NULL)
	c.next->prev = &c;
    mengine.list = &c;
    if (mengine.cutting)			/* accepted as the cut began */
	(void) shutdown(fd, SHUT_RDWR);
    pthread_mutex_unlock(&mengine.lock);
    msession_init(&s, mengine.desc);
    if ((why = mengine_serve(fd, &s, &c)) != NULL)
	msg_warn("milter session from %s closed: %s", mengine_peer(fd, peer, sizeof(peer)), why);
    msession_free(&s);
    pthread_mutex_lock(&mengine.lock);
    if (c.prev)
	c.prev->next = c.next;
    else
	mengine.list = c.next;
    if (c.next)
	c.next->prev = c.prev;
    close(fd);
    pthread_mutex_unlock(&mengine.lock);
}

/*
 * mengine_worker - accept, serve, accept again. The thread the kernel
 * wakes for a connection is the one that serves it; the last idle one
 * to accept starts another first, so one always waits in accept().
 */
static void *mengine_worker(void *arg)
{
    int     fd, err;

    (void) arg;
    for (;;) {
	fd = accept4(mengine.listen_fd, NULL, NULL, SOCK_CLOEXEC);
	err = errno;
	pthread_mutex_lock(&mengine.lock);
	if (mengine.stopping) {
	    if (fd >= 0)
		close(fd);
	    break;
	}
	if (fd < 0) {
	    pthread_mutex_unlock(&mengine.lock);
	    if (skeleton_accept_exhausted(err)) {
		skeleton_accept_failed(mengine.listen_fd, err);
		mengine_pause();		/* clients wait in the backlog */
	    } else if (err != EINTR && err != EAGAIN && err != ECONNABORTED) {
		errno = err;
		msg_warn("accept on the milter socket: %m");
		mengine_pause();		/* never a busy loop */
	    }
	    continue;
	}
	if (--mengine.idle == 0) {		/* none left in accept(): one more */
	    if (mengine.threads >= mengine_max_sessions) {
		mengine_full();			/* accepting resumes after a session */
	    } else if ((err = mengine_spawn()) != 0) {
		errno = err;			/* accepting resumes after this session */
		msg_warn("cannot create a milter session thread: %m");
	    }
	}
	pthread_mutex_unlock(&mengine.lock);
	mengine_session(fd);
	pthread_mutex_lock(&mengine.lock);
	if (mengine.stopping || mengine.idle >= MENGINE_IDLE_MAX)
	    break;				/* enough wait in accept() */
	mengine.idle++;
	pthread_mutex_unlock(&mengine.lock);
    }
    pthread_mutex_unlock(&mengine.lock);

    /*
     * OpenSSL keeps per-thread state (the random generators RSA blinding
     * draws from), freed by a thread-exit destructor. At stop, main()
     * may return as soon as the count below reaches 0, before that
     * destructor ran: free it here, while the thread still counts.
     */
    OPENSSL_thread_stop();
    pthread_mutex_lock(&mengine.lock);
    mengine.threads--;
    pthread_cond_broadcast(&mengine.gone);
    pthread_mutex_unlock(&mengine.lock);
    return (NULL);
}

/* mengine_sessions - sessions open; the caller holds the lock */

static int mengine_sessions(void)
{
    int     n = 0;

    for (struct mengine_conn *c = mengine.list; c; c = c->next)
	n++;
    return (n);
}

/*
 * mengine_cut_parked - at the start of a drain: close the sessions
 * parked between messages (mengine_parked()). One whose next packet
 * came meanwhile is no longer parked, and finishes that message.
 */
static void mengine_cut_parked(void)
{
    int     parked;

    atomic_store(&mengine.draining, 1);
    for (struct mengine_conn *c = mengine.list; c; c = c->next) {
	parked = MENGINE_PARKED;
	if (atomic_compare_exchange_strong(&c->idle, &parked, MENGINE_CUT))
	    (void) shutdown(c->fd, SHUT_RDWR);
    }
}

/* mengine_drain_wait - until no session is left, mengine_stop() or the limit */

static void mengine_drain_wait(long long drain_ms)
{
    struct timespec until;
    int     left;

    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += drain_ms / 1000;
    until.tv_nsec += (drain_ms % 1000) * 1000000;
    if (until.tv_nsec >= 1000000000) {
	until.tv_sec++;
	until.tv_nsec -= 1000000000;
    }
    mengine_cut_parked();
    while ((left = mengine_sessions()) > 0 && !mengine.cut)
	if (pthread_cond_timedwait(&mengine.gone, &mengine.lock, &until) == ETIMEDOUT)
	    break;
    if (!mengine.cut)
	skeleton_drained(mengine_sessions(), drain_ms);
}

/*
 * mengine_finish - stop accepting (accept() returns in every idle
 * worker), let the sessions in a message finish it (mengine_drain()),
 * then end those still open (their sockets are shut down), and wait.
 */
static void mengine_finish(void)
{
    struct timespec until;

    pthread_mutex_lock(&mengine.lock);
    mengine.stopping = 1;
    (void) shutdown(mengine.listen_fd, SHUT_RDWR);	/* accept() returns */
    if (!mengine.cut && mengine.drain_ms > 0)
	mengine_drain_wait(mengine.drain_ms);
    mengine.cutting = 1;
    for (struct mengine_conn *c = mengine.list; c; c = c->next)
	(void) shutdown(c->fd, SHUT_RDWR);
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += 10;
    while (mengine.threads > 0)
	if (pthread_cond_timedwait(&mengine.gone, &mengine.lock, &until) == ETIMEDOUT) {
	    msg_warn("%d milter session threads still busy at stop", mengine.threads);
	    break;
	}
    pthread_mutex_unlock(&mengine.lock);
}

int     mengine_run(int listen_fd, const struct smfiDesc *desc)
{
    struct pollfd pfd;
    int     err;

    if (mengine.wake[0] < 0)
	msg_panic("mengine_run: no mengine_open()");
    mengine.listen_fd = listen_fd;
    mengine.desc = desc;
    mengine.stopping = 0;
    pthread_mutex_lock(&mengine.lock);
    err = mengine_spawn();
    pthread_mutex_unlock(&mengine.lock);
    if (err != 0) {
	errno = err;
	msg_fatal("cannot create a milter session thread: %m");
    }
    pfd.fd = mengine.wake[0];
    pfd.events = POLLIN;
    while (poll(&pfd, 1, -1) < 0)
	if (errno != EINTR)
	    msg_fatal("poll: %m");
    mengine_finish();
    close(listen_fd);
    return (0);
}

void    mengine_drain(long long drain_ms)
{
    ssize_t n;

    pthread_mutex_lock(&mengine.lock);
    mengine.drain_ms = drain_ms;
    pthread_mutex_unlock(&mengine.lock);
    n = write(mengine.wake[1], "x", 1);
    (void) n;
}

void    mengine_stop(void)
{
    ssize_t n;

    pthread_mutex_lock(&mengine.lock);
    mengine.cut = 1;
    pthread_cond_broadcast(&mengine.gone);	/* a drain ends */
    pthread_mutex_unlock(&mengine.lock);
    n = write(mengine.wake[1], "x", 1);
    (void) n;
}
