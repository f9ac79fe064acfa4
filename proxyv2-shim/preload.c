/*
 * NAME
 *	libproxyv2-preload 8
 * SUMMARY
 *	PROXY protocol for daemons that do not speak it (LD_PRELOAD)
 * SYNOPSIS
 *	LD_PRELOAD=libproxyv2-preload.so PROXYV2_PORTS=993,4190
 *	PROXYV2_TRUSTED=10.0.20.0/24 [PROXYV2_TIMEOUT=3s] daemon ...
 * DESCRIPTION
 *	accept() and accept4() on a listening socket whose local port is
 *	in PROXYV2_PORTS return only connections that came from a
 *	PROXYV2_TRUSTED address (default 127.0.0.0/8, ::1) and sent a
 *	valid PROXY v1 or v2 header within PROXYV2_TIMEOUT; the address
 *	they report, and getpeername() afterwards, is the client's from
 *	the header. Other connections are closed. The header is consumed;
 *	the daemon reads the client's bytes as if it were talking to it.
 *
 *	A blocking listener waits for the header in accept(), as the
 *	daemon expects accept() to block anyway, but for PRELOAD_INLINE_MS
 *	at most and only while no other connection waits: then the
 *	incomplete one is parked and accept() takes the next. A signal
 *	(a handler without SA_RESTART) parks it too, and accept() fails
 *	with EINTR, as it would without us.
 *	A non-blocking listener must never wait: a
 *	connection whose header is not complete is parked, and accept()
 *	goes on with the next one or fails with EAGAIN. A helper thread
 *	watches parked connections; when one
 *	completes it connects to the listener from loopback and sends a
 *	mark (a v2 LOCAL header with one NOOP TLV: "mxkitwak", a random
 *	key siblings share, the process id), so the daemon's
 *	event loop sees the listening socket readable and calls accept(),
 *	which hands over the parked connection and drops the wake-up
 *	connection. In a prefork server another process may take the
 *	wake-up: it closes it silently (the mark, from the listener's own
 *	address, with the key: from anywhere else, or without it, it is a
 *	client's, whatever local process sent it), and the helper wakes
 *	again, 10 ms later and backing off to 200 ms, with twice as many
 *	wake-ups each time siblings took them all (up to 8 at once),
 *	until its own process's accept() has taken every ready
 *	connection. A sibling's accept() that takes a wake-up returns
 *	EAGAIN, so that the next one wakes a process again. No new
 *	wake-up is sent while one waits to be accepted: a daemon that is
 *	not accepting gets no more than 8. Wake-ups
 *	connect without blocking: with the listen queue full, a blocking
 *	connect() held the lock accept() needs.
 *
 *	PROXYV2_WAIT=inline (servers whose processes serve one client
 *	each), and a process that can start no helper thread (RLIMIT_NPROC),
 *	wait in accept() for the whole header, PROXYV2_TIMEOUT at most: a
 *	connection set aside there waited for its process's next session,
 *	or went with it.
 *
 *	getpeername() substitutes the client's address only while the
 *	socket is the same connection (its real peer is still the
 *	balancer's address and port), so reused descriptor numbers are
 *	safe without intercepting close(). A dup()ed descriptor is found
 *	by its socket (st_dev, st_ino), also once the descriptor it was
 *	accepted on is closed and its number reused. A connection to a
 *	PROXYV2_PORTS port from a trusted balancer that this process did
 *	not accept (inherited through exec, inetd style) fails with
 *	ENOTCONN: its real peer is the balancer, whose trust the client
 *	must not get.
 *
 *	Addresses are reported as the kernel would for the listening
 *	socket: an IPv4 client on an IPv6 socket as ::ffff:a.b.c.d; an
 *	IPv6 client on an IPv4 socket cannot be reported (the daemon's
 *	buffer is sized for IPv4) and is closed.
 *
 *	No fixed limits on ports, listening sockets or descriptors: a
 *	listener or port left out would serve its clients as the
 *	balancer.
 * DIAGNOSTICS
 *	Refused connections and bad headers are reported on standard
 *	error, prefixed "libproxyv2-preload:", at most 10 per second;
 *	not when descriptor 2 is a socket other than the one it was when
 *	the library was loaded (a daemon closed it, and accept() gave its
 *	number to a client).
 */

#include "build_config.h"

#include <dirent.h>
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "addr.h"
#include "cidr_list.h"
#include "config.h"
#include "proxy_header.h"

#include "preload_int.h"

static int (*real_accept4) (int, struct sockaddr *, socklen_t *, int);
static int (*real_getpeername) (int, struct sockaddr *, socklen_t *);

static unsigned char preload_port_set[65536 / 8];
static int preload_nports;
static struct cidr_list *preload_trusted;
long long preload_timeout_ms = 3000;
struct preload_listener **preload_listeners;	/* grows; never moves a listener */
int     preload_nlisteners;
pthread_mutex_t preload_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_once_t preload_once = PTHREAD_ONCE_INIT;
int     preload_kick[2] = {-1, -1};	/* wakes the helper's poll() */
int     preload_helper_started;
int     preload_inline;

long long preload_now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ((long long) ts.tv_sec * 1000 + ts.tv_nsec / 1000000);
}

/*
 * Standard error when the library was loaded. A daemon that closes
 * descriptors 0-2 may then be given descriptor 2 by accept(): reports
 * went to that client (other peers' addresses). A socket there is
 * written to only when it is the one we were started with (journald's
 * stream under systemd); a file or a pipe always.
 */
static int preload_stderr_known;
static dev_t preload_stderr_dev;
static ino_t preload_stderr_ino;

static int preload_stderr_ok(void)
{
    struct stat st;

    if (fstat(2, &st) < 0)
	return (0);
    return (!S_ISSOCK(st.st_mode) || (preload_stderr_known && st.st_dev == preload_stderr_dev
				       && st.st_ino == preload_stderr_ino));
}

void    preload_log(const char *fmt,...)
{
    static long long window;
    static int count;
    long long now = preload_now_ms() / 1000;
    char    text[300];
    va_list ap;

    if (!preload_stderr_ok())
	return;					/* never into a client's socket */
    if (now != window) {
	window = now;
	count = 0;
    }
    if (count++ >= 10)
	return;
    va_start(ap, fmt);
    vsnprintf(text, sizeof(text), fmt, ap);
    va_end(ap);
    fprintf(stderr, "libproxyv2-preload: %s\n", text);
}

/* preload_listener_drop - close the connections parked or ready here */

static void preload_listener_drop(struct preload_listener *l)
{
    for (int i = 0; i < l->nparked; i++) {
	proxy_reader_free(&l->parked[i].reader);
	close(l->parked[i].fd);
    }
    for (int i = 0; i < l->nready; i++)
	close(l->ready[i].fd);
    for (int i = 0; i < l->nwakes; i++)
	close(l->wakes[i].fd);
    l->nparked = l->nready = l->nwakes = l->lost = 0;
}

/*
 * fork(): the helper thread does not follow into the child, and the lock
 * may be held by it at that moment. The child starts over: lock free, a
 * helper of its own when it parks a connection, its own wake-up pipe.
 * Connections parked or ready before the fork stay the parent's (both
 * reading one socket would split a header between them): the child
 * closes its copies.
 */
static void preload_fork_prepare(void)
{
    pthread_mutex_lock(&preload_lock);
}

static void preload_fork_parent(void)
{
    pthread_mutex_unlock(&preload_lock);
}

static void preload_fork_child(void)
{
    pthread_mutex_unlock(&preload_lock);
    preload_helper_started = 0;
    if (preload_kick[0] >= 0) {
	close(preload_kick[0]);
	close(preload_kick[1]);
    }
    if (pipe2(preload_kick, O_NONBLOCK | O_CLOEXEC) < 0)
	preload_kick[0] = preload_kick[1] = -1;
    for (int j = 0; j < preload_nlisteners; j++)
	preload_listener_drop(preload_listeners[j]);
}

static void preload_init(void)
{
    const char *ports = getenv("PROXYV2_PORTS");
    const char *trusted = getenv("PROXYV2_TRUSTED");
    const char *timeout = getenv("PROXYV2_TIMEOUT");
    const char *wait = getenv("PROXYV2_WAIT");
    char  **list, *bad = NULL;
    int     n;

    real_accept4 = (int (*) (int, struct sockaddr *, socklen_t *, int)) dlsym(RTLD_NEXT, "accept4");
    real_getpeername = (int (*) (int, struct sockaddr *, socklen_t *)) dlsym(RTLD_NEXT, "getpeername");
    list = config_split_list(ports ? ports : "", &n);
    for (int i = 0; i < n; i++) {
	long long port;

	/* A port that is silently dropped would serve its clients unchecked. */
	if (config_parse_int(list[i], &port) != NULL || port < 1 || port > 65535)
	    preload_log("PROXYV2_PORTS: \"%s\" is not a port; ignored", list[i]);
	else {
	    preload_port_set[port / 8] |= 1 << (port % 8);
	    preload_nports++;
	}
    }
    config_list_free(&list);
    preload_trusted = cidr_list_create();
    if (cidr_list_parse(preload_trusted, trusted ? trusted : "127.0.0.0/8, ::1", &bad)) {
	preload_log("PROXYV2_TRUSTED: bad network \"%s\"; trusting nobody", bad ? bad : "");
	free(bad);
	cidr_list_destroy(&preload_trusted);
	preload_trusted = cidr_list_create();
    }
    if (cidr_list_link_local(preload_trusted)) {
	preload_log("PROXYV2_TRUSTED: a link-local network (fe80::/10) is on every link at "
		    "once; trusting nobody");
	cidr_list_destroy(&preload_trusted);
	preload_trusted = cidr_list_create();
    }
    if (cidr_list_covers(preload_trusted, AF_INET) || cidr_list_covers(preload_trusted, AF_INET6))
	preload_log("warning: PROXYV2_TRUSTED matches every %s address: any peer that "
		    "reaches PROXYV2_PORTS may name any client",
		    !cidr_list_covers(preload_trusted, AF_INET6) ? "IPv4"
		    : !cidr_list_covers(preload_trusted, AF_INET) ? "IPv6" : "IPv4 and IPv6");
    if (timeout && (config_parse_duration(timeout, &preload_timeout_ms) != NULL
		    || preload_timeout_ms < 1 || preload_timeout_ms > 60000)) {
	preload_log("PROXYV2_TIMEOUT: \"%s\" is not a duration from 1ms to 60s; using 3s",
		    timeout);
	preload_timeout_ms = 3000;
    }
    if (wait && strcmp(wait, "inline") != 0 && strcmp(wait, "park") != 0)
	preload_log("PROXYV2_WAIT: \"%s\" is neither inline nor park; using park", wait);
    preload_inline = wait && strcmp(wait, "inline") == 0;
    if (pipe2(preload_kick, O_NONBLOCK | O_CLOEXEC) < 0)
	preload_kick[0] = preload_kick[1] = -1;
    pthread_atfork(preload_fork_prepare, preload_fork_parent, preload_fork_child);
}

static int preload_port_listed(int port)
{
    return (port > 0 && port < 65536 && (preload_port_set[port / 8] & (1 << (port % 8))));
}

int     preload_same_addr(const union addr_sockaddr *a, const union addr_sockaddr *b)
{
    if (a->sa.sa_family != b->sa.sa_family)
	return (0);
    if (a->sa.sa_family == AF_INET)
	return (a->in.sin_port == b->in.sin_port && a->in.sin_addr.s_addr == b->in.sin_addr.s_addr);
    if (a->sa.sa_family == AF_INET6)
	return (a->in6.sin6_port == b->in6.sin6_port
		&& IN6_ARE_ADDR_EQUAL(&a->in6.sin6_addr, &b->in6.sin6_addr));
    return (0);
}

/* preload_is_socket - descriptor FD names listener L's socket */

static int preload_is_socket(const struct preload_listener *l, int fd)
{
    struct stat st;

    return (fd >= 0 && fstat(fd, &st) == 0 && st.st_dev == l->dev && st.st_ino == l->ino);
}

/*
 * preload_listener_alive - L's socket is still open in this process:
 * under the descriptor last used for it, or else under another one
 * (the daemon dup()ed it and closed the first), which becomes L's. The
 * daemon closes a listening socket without telling us (a drain before
 * a restart, a port given up), so the helper asks before it waits on
 * for connections nobody will accept. Lock held.
 */
int     preload_listener_alive(struct preload_listener *l)
{
    DIR    *d;
    struct dirent *de;
    int     found = -1;

    if (preload_is_socket(l, l->fd - 1))
	return (1);
    if ((d = opendir("/proc/self/fd")) != NULL) {
	while (found < 0 && (de = readdir(d)) != NULL)
	    if (de->d_name[0] != '.' && atoi(de->d_name) != dirfd(d)
		&& preload_is_socket(l, atoi(de->d_name)))
		found = atoi(de->d_name);
	closedir(d);
    } else {					/* no /proc: every descriptor */
	long    max = sysconf(_SC_OPEN_MAX);

	for (int fd = 0; found < 0 && fd < (max > 0 && max < INT_MAX ? max : 65536); fd++)
	    if (preload_is_socket(l, fd))
		found = fd;
    }
    if (found >= 0)
	l->fd = found + 1;
    return (found >= 0);
}

/*
 * preload_listener_gone - L's socket was closed: its connections can
 * never be accepted (the kernel resets a closed listener's queue; these
 * left it). Closed, and said so, and the slot is free. Lock held.
 */
void    preload_listener_gone(struct preload_listener *l)
{
    char    text[ADDR_TEXT_MAX];

    if (l->nparked || l->nready)
	preload_log("listening socket %s closed; %d connections waiting for it closed",
		    addr_format(&l->self.sa, text, sizeof(text)), l->nparked + l->nready);
    preload_listener_drop(l);
    l->fd = 0;
}

/*
 * preload_slot - the slot of listening socket ST (found by the socket,
 * not the descriptor number: a dup()ed listener is the same one, and a
 * number reused for another socket is not), new if need be. A slot with
 * nothing waiting whose socket is no longer under its descriptor is
 * taken over rather than kept.
 */
static struct preload_listener *preload_slot(const struct stat *st)
{
    struct preload_listener *free_slot = NULL, **grown, *l;

    for (int j = 0; j < preload_nlisteners; j++) {
	l = preload_listeners[j];
	if (l->fd != 0 && l->dev == st->st_dev && l->ino == st->st_ino)
	    return (l);
	if (free_slot == NULL && (l->fd == 0 || (l->nparked + l->nready + l->nwakes == 0
						 && !preload_is_socket(l, l->fd - 1))))
	    free_slot = l;
    }
    if (free_slot) {
	free_slot->fd = 0;
	return (free_slot);
    }
    if ((grown = realloc(preload_listeners, (preload_nlisteners + 1) * sizeof(*grown))) == NULL)
	return (NULL);
    preload_listeners = grown;
    if ((grown[preload_nlisteners] = calloc(1, sizeof(**grown))) == NULL)
	return (NULL);
    return (grown[preload_nlisteners++]);
}

/*
 * preload_listener_for - state of a managed listening socket; NULL when
 * its port is not listed. &preload_no_room when it is but no memory is
 * left for it: its connections are then closed, never served unchecked.
 */
static struct preload_listener preload_no_room;

static struct preload_listener *preload_listener_for(int fd)
{
    union addr_sockaddr self;
    socklen_t len = sizeof(self);
    struct preload_listener *l;
    struct stat st;

    if (getsockname(fd, &self.sa, &len) < 0 || (self.sa.sa_family != AF_INET
						 && self.sa.sa_family != AF_INET6)
	|| !preload_port_listed(addr_port(&self.sa)) || fstat(fd, &st) < 0)
	return (NULL);
    if ((l = preload_slot(&st)) == NULL)
	return (&preload_no_room);
    if (l->fd != 0) {				/* known, maybe under another fd */
	l->fd = fd + 1;
	return (l);
    }
    l->fd = fd + 1;
    l->dev = st.st_dev;
    l->ino = st.st_ino;
    /* Wake-ups go to loopback when bound to the wildcard address. */
    if (self.sa.sa_family == AF_INET && self.in.sin_addr.s_addr == htonl(INADDR_ANY))
	self.in.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (self.sa.sa_family == AF_INET6 && IN6_IS_ADDR_UNSPECIFIED(&self.in6.sin6_addr))
	self.in6.sin6_addr = in6addr_loopback;
    l->self = self;
    l->self_len = len;
    return (l);
}

/*
 * preload_load - when the library is loaded, before the daemon's main():
 * the wake-up key its forked siblings must share (preload_init() runs
 * at the first accept(), in each of them), and standard error as the
 * daemon was started with it (by its first accept() it may have closed
 * it).
 */
__attribute__((constructor)) static void preload_load(void)
{
    struct stat st;

    if (fstat(2, &st) == 0) {
	preload_stderr_known = 1;
	preload_stderr_dev = st.st_dev;
	preload_stderr_ino = st.st_ino;
    }
    if (!preload_wake_key_init())
	preload_log("no random wake-up key: parked connections are handed over "
		    "with a log line each");
}

/*
 * preload_exit - a process that exits takes the connections set aside
 * in it along (no other process can be handed them): say so, where the
 * exit lets us (exit(), not _exit()). The helper may hold the lock.
 */
__attribute__((destructor)) static void preload_exit(void)
{
    int     n = 0;

    if (pthread_mutex_trylock(&preload_lock) != 0)
	return;
    for (int j = 0; j < preload_nlisteners; j++)
	n += preload_listeners[j]->nparked + preload_listeners[j]->nready;
    pthread_mutex_unlock(&preload_lock);
    if (n > 0)
	preload_log("process %ld exiting; %d connections waiting in it for their PROXY "
		    "header closed", (long) getpid(), n);
}

/*
 * preload_wait - a blocking listener's connection: its header is read as
 * it comes, for PRELOAD_INLINE_MS at most (a header follows its connect
 * within a round trip), and only while no other connection waits to be
 * accepted. Otherwise it is left incomplete, to be parked and watched to
 * its deadline by the helper: a server that calls accept() only when its
 * select() or poll() loop finds the socket readable (Python's
 * socketserver) waited for each stalled header in turn, PROXYV2_TIMEOUT
 * each, while every other client waited, on this socket and its others.
 */
#define PRELOAD_INLINE_MS	200

#define PRELOAD_NOW	0			/* preload_check()'s waits */
#define PRELOAD_SHORT	1
#define PRELOAD_WHOLE	2

static const char preload_interrupted[] = "interrupted by a signal";
static const char preload_no_header[] = "no whole PROXY header within PROXYV2_TIMEOUT";

/*
 * preload_restarts - would the kernel restart an accept() interrupted
 * now? poll() never restarts, and which signal came is not known: only
 * when every handler installed has SA_RESTART (or none is installed) do
 * we keep waiting, as accept() would. One without it (Python's, most
 * SIGTERM handlers) makes accept() fail with EINTR.
 */
static int preload_restarts(void)
{
    struct sigaction sa;

    for (int sig = 1; sig < NSIG; sig++)
	if (sigaction(sig, NULL, &sa) == 0 && !(sa.sa_flags & SA_RESTART)
	    && ((sa.sa_flags & SA_SIGINFO) || (sa.sa_handler != SIG_DFL
					       && sa.sa_handler != SIG_IGN)))
	    return (0);
    return (1);
}

static const char *preload_wait(int lfd, int fd, long long deadline_ms, int capped,
				        struct proxy_reader *reader, struct proxy_header *hdr)
{
    long long inline_end = preload_now_ms() + PRELOAD_INLINE_MS;
    const char *err;

    if (capped && inline_end < deadline_ms)
	deadline_ms = inline_end;
    while ((err = proxy_reader_step(reader, fd, hdr)) == proxy_header_incomplete) {
	struct pollfd pfd[2] = {{.fd = fd, .events = POLLIN}, {.fd = lfd, .events = POLLIN}};
	long long left = deadline_ms - preload_now_ms();
	int     n;

	if (left <= 0)
	    break;				/* set aside, watched to its deadline */
	/* A signal ends the wait: the daemon's accept() must return EINTR,
	   as without us, or a SIGTERM handler that relies on it never runs
	   while a balancer holds a connection without its header. */
	if ((n = poll(pfd, 2, left > INT_MAX ? INT_MAX : (int) left)) < 0) {
	    if (errno != EINTR)
		return ("poll error while waiting for the PROXY header");
	    if (!preload_restarts())
		return (preload_interrupted);
	}
	if (capped && n > 0 && pfd[0].revents == 0 && (pfd[1].revents & POLLIN))
	    break;				/* another client waits: park this one */
    }
    return (err);
}

/*
 * preload_check - trusted source? then its header, as wait says: what
 * has come (PRELOAD_NOW, to be parked), a blocking listener's short
 * wait (PRELOAD_SHORT), or all of it, PROXYV2_TIMEOUT at most
 * (PRELOAD_WHOLE: PROXYV2_WAIT = inline, or no helper thread)
 */
static const char *preload_check(int lfd, int fd, const union addr_sockaddr *peer, int wait,
			                 long long deadline_ms, struct proxy_reader *reader,
				         struct proxy_header *hdr)
{
    const char *err;

    if (!cidr_list_match_addr(preload_trusted, &peer->sa))
	return ("source not in PROXYV2_TRUSTED");
    proxy_reader_init(reader, PROXY_V2_DEFAULT_MAX);
    if (wait != PRELOAD_NOW) {
	err = preload_wait(lfd, fd, deadline_ms, wait == PRELOAD_SHORT, reader, hdr);
	return (err == proxy_header_incomplete && wait == PRELOAD_WHOLE ? preload_no_header : err);
    }
    return (proxy_reader_step(reader, fd, hdr));
}

/*
 * preload_client - the address to report, or an error for a header that
 * names no client (LOCAL, UNKNOWN, UNSPEC, UNIX: health checks, haproxy's
 * unix@ frontends). Reporting the balancer's own address instead would
 * hand the client whatever trust the daemon gives the balancer, and
 * accept() cannot say "unknown": such connections are closed (a layer-4
 * health check has succeeded by then). The address has the listening
 * socket's family, as the kernel would report it: IPv4-mapped clients
 * are IPv4 on an IPv4 listener, IPv4 clients ::ffff:a.b.c.d on an IPv6
 * one; an IPv6 client on an IPv4 listener has no such form (the daemon's
 * buffer holds a sockaddr_in: it would read the rest of the address from
 * whatever its memory held) and is closed. So is a header whose client
 * the balancer (peer) cannot have (proxy_header_vet(): 0.0.0.0, or a
 * loopback address from a balancer not on this host).
 */
const char *preload_client(struct proxy_header *hdr, int listener_family,
			           const union addr_sockaddr *peer, union addr_sockaddr *client)
{
    static _Thread_local char why[300];

    if (listener_family == AF_INET)
	proxy_header_unmap(hdr);
    if (proxy_header_vet(hdr, peer) != NULL) {	/* 0.0.0.0, a balancer's loopback */
	snprintf(why, sizeof(why), "no client address in the PROXY header (%s)", hdr->not_client);
	return (why);
    }
    if (!proxy_header_has_client(hdr))
	return ("no client address in the PROXY header (LOCAL, UNKNOWN, UNSPEC or UNIX)");
    if (listener_family == AF_INET && hdr->src.sa.sa_family != AF_INET)
	return ("IPv6 client on an IPv4 listening socket (accept() can only report IPv4 "
		"there; listen on IPv6 to serve it)");
    memset(client, 0, sizeof(*client));
    if (listener_family == AF_INET6 && hdr->src.sa.sa_family == AF_INET) {
	client->in6.sin6_family = AF_INET6;
	client->in6.sin6_port = hdr->src.in.sin_port;
	client->in6.sin6_addr.s6_addr[10] = client->in6.sin6_addr.s6_addr[11] = 0xff;
	memcpy(&client->in6.sin6_addr.s6_addr[12], &hdr->src.in.sin_addr, 4);
    } else
	*client = hdr->src;
    return (NULL);
}

static int preload_hand_over(int fd, int flags, const union addr_sockaddr *client,
			             const union addr_sockaddr *balancer,
			             struct sockaddr *addr, socklen_t *addrlen)
{
    socklen_t len = client->sa.sa_family == AF_INET6 ? sizeof(struct sockaddr_in6)
    : sizeof(struct sockaddr_in);

    if (flags & SOCK_NONBLOCK)
	fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
    else
	fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK);
    if (!(flags & SOCK_CLOEXEC))
	fcntl(fd, F_SETFD, 0);
    preload_remember(fd, client, balancer);
    if (addr && addrlen) {
	memcpy(addr, client, *addrlen < len ? *addrlen : len);
	*addrlen = len;
    }
    return (fd);
}

/*
 * preload_wait_unwatched - no helper thread to watch a connection set
 * aside: its header waited for here, the lock let go meanwhile
 */
static const char *preload_wait_unwatched(int lfd, int fd, long long deadline,
					          struct proxy_reader *reader,
					          struct proxy_header *hdr, int *wait)
{
    const char *err;

    pthread_mutex_unlock(&preload_lock);
    err = preload_wait(lfd, fd, deadline, 0, reader, hdr);
    pthread_mutex_lock(&preload_lock);
    *wait = PRELOAD_WHOLE;
    return (err == proxy_header_incomplete ? preload_no_header : err);
}

/*
 * preload_accept_managed - accept4() on a PROXYV2_PORTS listener; lock
 * held. A blocking listener's accept() that took a connection it cannot
 * return (refused, set aside, a sibling's wake-up) blocks for the next
 * one, as the daemon expects of a blocking accept(). An error instead
 * (ECONNABORTED, EAGAIN) would free a select() loop over several
 * blocking listening sockets, but kill the many daemons that take any
 * error from a blocking accept() as fatal: one connection from anyone
 * would stop them. Such loops should make their sockets non-blocking.
 * A signal while it waits for a header is the exception: accept() fails
 * with EINTR, as it would without us, and the connection is parked.
 */
static int preload_accept_managed(struct preload_listener *l, int lfd, struct sockaddr *addr,
				          socklen_t *addrlen, int flags)
{
    int     blocking = !(fcntl(lfd, F_GETFL) & O_NONBLOCK);
    int     wait;

    for (;;) {
	union addr_sockaddr peer, client;
	socklen_t plen = sizeof(peer);
	struct proxy_reader reader = {0};
	struct proxy_header hdr;
	char    text[ADDR_TEXT_MAX];
	const char *err;
	long long deadline;
	int     fd, wake = 0;

	if (l->nready > 0) {
	    struct preload_ready r = l->ready[--l->nready];

	    (void) real_getpeername(r.fd, &peer.sa, &plen);
	    return (preload_hand_over(r.fd, flags, &r.client, &peer, addr, addrlen));
	}
	/* one client per process (PROXYV2_WAIT = inline): nothing set
	   aside goes with it when it ends, or waits behind its session */
	wait = preload_inline ? PRELOAD_WHOLE : blocking ? PRELOAD_SHORT : PRELOAD_NOW;
	/* Blocking accept and header wait happen without the lock. */
	pthread_mutex_unlock(&preload_lock);
	fd = real_accept4(lfd, &peer.sa, &plen, SOCK_CLOEXEC | SOCK_NONBLOCK);
	deadline = preload_now_ms() + preload_timeout_ms;
	err = fd >= 0 && wait != PRELOAD_NOW ?
	    preload_check(lfd, fd, &peer, wait, deadline, &reader, &hdr) : NULL;
	pthread_mutex_lock(&preload_lock);
	if (fd < 0)
	    return (-1);
	if (wait == PRELOAD_NOW)
	    err = preload_check(lfd, fd, &peer, PRELOAD_NOW, deadline, &reader, &hdr);
	if (err == proxy_header_incomplete && !preload_helper_ok())
	    err = preload_wait_unwatched(lfd, fd, deadline, &reader, &hdr, &wait);
	if (err == proxy_header_incomplete) {
	    preload_park(l, fd, &peer, &reader, deadline);
	} else if (err == preload_interrupted && wait == PRELOAD_WHOLE && !preload_helper_started) {
	    preload_log("connection from %s closed: a signal came while accept() waited for "
			"its PROXY header, and no helper thread can watch it",
			addr_format(&peer.sa, text, sizeof(text)));
	    proxy_reader_free(&reader);
	    close(fd);
	    errno = EINTR;
	    return (-1);
	} else if (err == preload_interrupted) {
	    /* parked, not lost: a later accept() is handed it when the
	       header completes (preload_wait() read it as it came) */
	    preload_park(l, fd, &peer, &reader, deadline);
	    errno = EINTR;
	    return (-1);
	} else if ((wake = err == NULL ? preload_is_wake(l, &peer, &reader, &hdr)
		    : preload_peek_mark(l, &peer, fd)) != 0) {
	    proxy_reader_free(&reader);
	    close(fd);				/* a wake-up, ours or a sibling's */
	    /* ours, its connection handed over already: the next in the
	       queue (a loop that accepts until EAGAIN, edge-triggered,
	       gets no new event for a client queued behind it) */
	    if (l->nready > 0 || blocking || wake == PRELOAD_WAKE_OURS)
		continue;
	    /* a sibling's: back to the event loop, so that the next
	       wake-up in the queue wakes a process again (with
	       EPOLLEXCLUSIVE, the one whose connection is ready in time);
	       the sibling wakes again until its own process takes one */
	    errno = EAGAIN;
	    return (-1);
	} else {
	    proxy_reader_free(&reader);
	    if (err == NULL)
		err = preload_client(&hdr, l->self.sa.sa_family, &peer, &client);
	    if (err == NULL)
		return (preload_hand_over(fd, flags, &client, &peer, addr, addrlen));
	    preload_log("connection from %s closed: %s",
			addr_format(&peer.sa, text, sizeof(text)), err);
	    close(fd);
	}
    }
}

int     accept4(int lfd, struct sockaddr *addr, socklen_t *addrlen, int flags)
{
    struct preload_listener *l;
    int     fd, saved;

    pthread_once(&preload_once, preload_init);
    pthread_mutex_lock(&preload_lock);
    l = preload_nports ? preload_listener_for(lfd) : NULL;
    if (l == NULL) {
	pthread_mutex_unlock(&preload_lock);
	fd = real_accept4(lfd, addr, addrlen, flags);
	pthread_mutex_lock(&preload_lock);
	preload_forget(fd);			/* not ours any more */
	pthread_mutex_unlock(&preload_lock);
	return (fd);
    }
    if (l == &preload_no_room) {		/* closed, never served unchecked */
	pthread_mutex_unlock(&preload_lock);
	if ((fd = real_accept4(lfd, NULL, NULL, SOCK_CLOEXEC)) >= 0) {
	    preload_log("out of memory for a listening socket; connection closed");
	    close(fd);
	}
	errno = ECONNABORTED;
	return (-1);
    }
    fd = preload_accept_managed(l, lfd, addr, addrlen, flags);
    saved = errno;
    pthread_mutex_unlock(&preload_lock);
    errno = saved;
    return (fd);
}

int     accept(int lfd, struct sockaddr *addr, socklen_t *addrlen)
{
    return (accept4(lfd, addr, addrlen, 0));
}

int     getpeername(int fd, struct sockaddr *addr, socklen_t *addrlen)
{
    union addr_sockaddr real, local;
    socklen_t rlen = sizeof(real), llen = sizeof(local), len;
    const union addr_sockaddr *client;
    int     managed;

    pthread_once(&preload_once, preload_init);
    if (real_getpeername(fd, &real.sa, &rlen) < 0)
	return (-1);
    managed = (real.sa.sa_family == AF_INET || real.sa.sa_family == AF_INET6)
	&& getsockname(fd, &local.sa, &llen) == 0 && preload_port_listed(addr_port(&local.sa));
    pthread_mutex_lock(&preload_lock);
    client = managed ? preload_peer_of(fd, &real, &local) : NULL;
    if (client)
	real = *client;				/* still the same connection */
    pthread_mutex_unlock(&preload_lock);
    if (client == NULL && managed && cidr_list_match_addr(preload_trusted, &real.sa)) {
	char    text[ADDR_TEXT_MAX];

	/* not accepted here (inherited through exec): the peer is the balancer */
	preload_log("getpeername() on a connection from %s that this process did not accept: "
		    "ENOTCONN, not the balancer's address", addr_format(&real.sa, text, sizeof(text)));
	errno = ENOTCONN;
	return (-1);
    }
    len = real.sa.sa_family == AF_INET6 ? sizeof(struct sockaddr_in6)
	: real.sa.sa_family == AF_INET ? sizeof(struct sockaddr_in) : rlen;
    memcpy(addr, &real, *addrlen < len ? *addrlen : len);
    *addrlen = len;
    return (0);
}
