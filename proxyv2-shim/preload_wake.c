/*
 * NAME
 *	preload_wake 3
 * SUMMARY
 *	libproxyv2-preload: parked connections and wake-ups
 * SYNOPSIS
 *	#include "preload_int.h"
 *
 *	void	preload_park(listener, fd, &peer, &reader, deadline_ms)
 *	int	preload_is_wake(listener, &peer, &reader, &header)
 *	int	preload_peek_mark(listener, &peer, fd)
 *
 *	int	preload_wake_key_init()
 * DESCRIPTION
 *	A connection whose PROXY header is not complete is parked
 *	(preload_park(), lock held; a blocking listener's once another
 *	connection waits behind it): a helper thread,
 *	started with the first one, reads the parked connections as their
 *	bytes come, and when one is complete makes the daemon's listening
 *	socket readable with a wake-up connection that sends a mark, so
 *	that the daemon's accept() (preload.c) hands it over.
 *	preload_is_wake() and preload_peek_mark() tell such a wake-up
 *	(ours or a sibling process's) by its mark, which carries the
 *	key preload_wake_key_init() makes at load. The whole scheme is
 *	described in libproxyv2-preload(8) and preload.c.
 *
 *	At most PRELOAD_MAX_PENDING connections are parked, and as many
 *	ready, per listener: past that each one is closed and logged.
 */

#include "build_config.h"

#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <stdio.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <unistd.h>

#include "addr.h"
#include "proxy_header.h"
#include "preload_int.h"

/*
 * A wake-up connection sends this mark: a v2 LOCAL header with one NOOP
 * TLV of 28 bytes, "mxkitwak", the wake-up key and the sending process's
 * id. In a prefork server (processes sharing the listening socket)
 * another process may accept it: whichever process does knows it by the
 * mark and closes it without a word, while the process whose connection
 * is ready wakes again (preload_rewake()) until its accept() takes it. A
 * port list of our own wake-ups knew none of another process's: those
 * were parked, timed out and logged, and the client waited until its
 * process happened to accept again. The process id tells our own
 * wake-up (its connection was handed over already: accept() goes on
 * with the queue) from a sibling's (accept() returns EAGAIN).
 *
 * The key, random, made when the library is loaded, is what siblings
 * share (fork() copies it; exec() passes it on in PROXYV2_WAKE_KEY) and
 * other local processes do not know: a mark with "mxkitwak" and a pid
 * alone, sent by any of them from the listener's own address, made an
 * edge-triggered daemon's accept() return EAGAIN with a client queued.
 * A mark with another key is a client's LOCAL header: closed, logged.
 */
#define PRELOAD_MARK_LEN	47
#define PRELOAD_MARK_KEY	27		/* where the key goes */
#define PRELOAD_MARK_PID	(PRELOAD_MARK_KEY + PRELOAD_KEY_LEN)

static const unsigned char preload_wake_mark[PRELOAD_MARK_KEY] = {
    0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D, 0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A,
    0x20, 0x00, 0x00, 0x1F, 0x04, 0x00, 0x1C, 'm', 'x', 'k', 'i', 't', 'w', 'a', 'k',
};
static unsigned char preload_wake_key[PRELOAD_KEY_LEN];
static int preload_wake_keyed;		/* else no mark is ever recognized */

/*
 * preload_wake_key_init - the key: PROXYV2_WAKE_KEY's when an ancestor
 * set it (an exec()ed sibling), else a new one, put there for exec()ed
 * children. From the library's constructor: before the daemon's main(),
 * one thread, so setenv() is safe; 0 when no random key could be had.
 */
int     preload_wake_key_init(void)
{
    const char *env = getenv("PROXYV2_WAKE_KEY");
    char    hex[2 * PRELOAD_KEY_LEN + 1];
    unsigned int byte;

    if (env && strlen(env) == 2 * PRELOAD_KEY_LEN
	&& strspn(env, "0123456789abcdef") == 2 * PRELOAD_KEY_LEN) {
	for (int i = 0; i < PRELOAD_KEY_LEN; i++) {
	    sscanf(env + 2 * i, "%2x", &byte);
	    preload_wake_key[i] = (unsigned char) byte;
	}
	return (preload_wake_keyed = 1);
    }
    if (getrandom(preload_wake_key, sizeof(preload_wake_key), 0) != sizeof(preload_wake_key))
	return (0);
    preload_wake_keyed = 1;
    for (int i = 0; i < PRELOAD_KEY_LEN; i++)
	snprintf(hex + 2 * i, 3, "%02x", preload_wake_key[i]);
    (void) setenv("PROXYV2_WAKE_KEY", hex, 1);
    return (1);
}

/* preload_mark_make - this process's mark */

static void preload_mark_make(unsigned char out[PRELOAD_MARK_LEN])
{
    unsigned long pid = (unsigned long) getpid();

    memcpy(out, preload_wake_mark, sizeof(preload_wake_mark));
    memcpy(out + PRELOAD_MARK_KEY, preload_wake_key, sizeof(preload_wake_key));
    for (int i = 0; i < 4; i++)
	out[PRELOAD_MARK_PID + i] = (unsigned char) (pid >> (24 - 8 * i));
}

/* preload_mark_kind - PRELOAD_WAKE_OURS, _SIBLING or 0 (no mark, or forged) */

static int preload_mark_kind(const unsigned char *buf, size_t len)
{
    unsigned char mine[PRELOAD_MARK_LEN];
    unsigned char diff = 0;

    if (!preload_wake_keyed || len != PRELOAD_MARK_LEN
	|| memcmp(buf, preload_wake_mark, sizeof(preload_wake_mark)) != 0)
	return (0);
    preload_mark_make(mine);
    /* in constant time: how long a guess took tells nothing of the key */
    for (int i = PRELOAD_MARK_KEY; i < PRELOAD_MARK_PID; i++)
	diff |= buf[i] ^ mine[i];
    if (diff != 0)
	return (0);
    return (memcmp(buf, mine, sizeof(mine)) == 0 ? PRELOAD_WAKE_OURS : PRELOAD_WAKE_SIBLING);
}

/*
 * preload_wake_source - could PEER be a wake-up of listener L? Wake-ups
 * connect to l->self from this host, so the kernel gives them that
 * address as their source; the mark from anywhere else is a client's
 * (closed and logged: a forged one was closed in silence, and its
 * accept() returned EAGAIN with a client still queued).
 */
static int preload_wake_source(const struct preload_listener *l, const union addr_sockaddr *peer)
{
    if (peer->sa.sa_family != l->self.sa.sa_family)
	return (0);
    if (peer->sa.sa_family == AF_INET)
	return (peer->in.sin_addr.s_addr == l->self.in.sin_addr.s_addr);
    return (peer->sa.sa_family == AF_INET6
	    && IN6_ARE_ADDR_EQUAL(&peer->in6.sin6_addr, &l->self.in6.sin6_addr));
}

/* preload_is_wake - a wake-up connection's header: ours, a sibling's, or 0 */

int     preload_is_wake(const struct preload_listener *l, const union addr_sockaddr *peer,
			        const struct proxy_reader *reader, const struct proxy_header *hdr)
{
    return (reader->have >= hdr->length && preload_wake_source(l, peer)
	    ? preload_mark_kind(reader->buf, hdr->length) : 0);
}

/*
 * preload_peek_mark - the mark, already there, on a connection from a
 * source outside PROXYV2_TRUSTED (a wake-up comes from this host, which
 * the operator's list may leave out): closed without a log line then.
 * The same answers as preload_is_wake().
 */
int     preload_peek_mark(const struct preload_listener *l, const union addr_sockaddr *peer,
			          int fd)
{
    unsigned char buf[PRELOAD_MARK_LEN + 1];
    ssize_t n;

    if (!preload_wake_source(l, peer))
	return (0);
    n = recv(fd, buf, sizeof(buf), MSG_PEEK | MSG_DONTWAIT);
    return (n == PRELOAD_MARK_LEN ? preload_mark_kind(buf, (size_t) n) : 0);
}

/* preload_wake_ready - send the mark once connected (1); 0: still waiting, -1: gone */

static int preload_wake_ready(struct preload_wake_sock *w)
{
    struct pollfd pfd = {w->fd, w->pending ? POLLOUT : POLLIN, 0};
    unsigned char mark[PRELOAD_MARK_LEN];
    int     err = 0;
    socklen_t len = sizeof(err);

    if (poll(&pfd, 1, 0) == 0)
	return (0);				/* connecting, or not taken yet */
    if (!w->pending)
	return (-1);				/* taken and closed: end-of-file */
    preload_mark_make(mark);
    if (getsockopt(w->fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0 || err != 0
	|| send(w->fd, mark, sizeof(mark), MSG_DONTWAIT | MSG_NOSIGNAL) != (ssize_t) sizeof(mark))
	return (-1);
    w->pending = 0;
    return (1);				/* connected: it reached the socket */
}

/*
 * preload_wake - make the daemon's listening socket readable, unless a
 * wake-up is still waiting to be accepted: it wakes the next accept()
 * anyway, and more would only fill the listen queue of a daemon that
 * is not accepting. A wake-up taken and closed (by a sibling, or by
 * us) reads as end-of-file. When siblings took them all, twice as many
 * go next time (up to PRELOAD_WAKES, more would crowd clients out of
 * the listen queue): each process's accept() takes one, so ours soon
 * gets one too.
 */
static void preload_wake(struct preload_listener *l)
{
    int     s, count;

    for (int i = l->nwakes - 1; i >= 0; i--)
	switch (preload_wake_ready(&l->wakes[i])) {
	case -1:
	    close(l->wakes[i].fd);
	    l->wakes[i] = l->wakes[--l->nwakes];
	    break;
	case 1:
	    l->wake_reached = 1;
	    break;
	}
    if (l->nwakes > 0)
	return;
    count = l->lost >= 3 ? PRELOAD_WAKES : 1 << l->lost;
    l->lost++;
    /* non-blocking: a full listen queue drops the SYN, and a blocking
       connect() waited through its retransmits holding preload_lock,
       which the daemon's accept() needs: the daemon stopped for minutes */
    while (count-- > 0 && (s = socket(l->self.sa.sa_family,
				     SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0)) >= 0) {
	struct preload_wake_sock w = {s, 1};
	int     rc = connect(s, &l->self.sa, l->self_len);

	/* a [::] listener on a host with IPv6 off has no ::1: its
	   dual-stack socket takes ::ffff:127.0.0.1 (helper-130) */
	if (rc < 0 && (errno == EADDRNOTAVAIL || errno == ENETUNREACH)
	    && l->self.sa.sa_family == AF_INET6
	    && IN6_IS_ADDR_LOOPBACK(&l->self.in6.sin6_addr)) {
	    static const unsigned char mapped[16] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff,
	    127, 0, 0, 1};

	    memcpy(&l->self.in6.sin6_addr, mapped, sizeof(mapped));
	    rc = connect(s, &l->self.sa, l->self_len);
	}
	if ((rc == 0 || errno == EINPROGRESS) && (rc = preload_wake_ready(&w)) >= 0) {
	    l->wake_reached |= rc;
	    l->wakes[l->nwakes++] = w;
	}
	else
	    close(s);
    }
}

/*
 * preload_expire - ready connections the server did not accept within
 * PROXYV2_TIMEOUT while no wake-up reached the socket: closed and
 * reported (helper-130: a firewall dropping loopback connections to the
 * port, or no ::1 on a host with IPv6 off: the client hung, unsaid).
 */
static void preload_expire(struct preload_listener *l, long long now)
{
    char    text[ADDR_TEXT_MAX];

    /* a wake-up that connected reached the socket: the server is only
       slow to accept (a login process full, siblings on the accept
       lock), and its clients wait as before (helper-131) */
    if (l->wake_reached)
	return;
    for (int i = l->nready - 1; i >= 0; i--) {
	if (now < l->ready[i].deadline_ms)
	    continue;
	preload_log("connection from %s closed: the server did not accept it within "
		    "PROXYV2_TIMEOUT", addr_format(&l->ready[i].client.sa, text, sizeof(text)));
	close(l->ready[i].fd);
	memmove(l->ready + i, l->ready + i + 1, (size_t) (l->nready - i - 1) * sizeof(l->ready[0]));
	l->nready--;
    }
    if (l->nready > 0 && !l->wake_said && now - l->ready[0].since_ms >= 1000) {
	preload_log("the server has not accepted a connection ready for 1s: wake-up "
		    "connections to %s do not reach it (a firewall dropping loopback "
		    "connections to this port? IPv6 off for a [::] listener?); "
		    "PROXYV2_WAIT=inline needs none", addr_format(&l->self.sa, text, sizeof(text)));
	l->wake_said = 1;
    }
}

/* preload_rewake - ready connections not taken yet: wake again, backing off */

static long long preload_rewake(struct preload_listener *l, long long now, long long next)
{
    if (l->nready > 0)
	preload_expire(l, now);
    if (l->nready == 0) {
	while (l->nwakes > 0) {			/* taken, or they will be: let go */
	    (void) preload_wake_ready(&l->wakes[--l->nwakes]);	/* with the mark */
	    close(l->wakes[l->nwakes].fd);
	}
	l->lost = 0;
	l->wake_reached = 0;
	return (next);
    }
    if (!l->wake_reached && l->ready[0].deadline_ms < next)	/* the oldest */
	next = l->ready[0].deadline_ms;
    if (now >= l->rewake_ms) {
	preload_wake(l);
	l->rewake_step = l->rewake_step < 10 ? 10 : l->rewake_step >= 200 ? 200
	    : 2 * l->rewake_step;
	l->rewake_ms = now + l->rewake_step;
    }
    return (l->rewake_ms < next ? l->rewake_ms : next);
}

/* preload_advance - step every parked connection; lock held */

static void preload_advance(struct preload_listener *l, long long now)
{
    int     woke = 0;

    for (int i = l->nparked - 1; i >= 0; i--) {
	struct preload_parked *p = &l->parked[i];
	struct proxy_header hdr;
	const char *err = proxy_reader_step(&p->reader, p->fd, &hdr);
	char    text[ADDR_TEXT_MAX];
	union addr_sockaddr client;

	if (err == proxy_header_incomplete && now < p->deadline_ms)
	    continue;
	if (err == NULL && preload_is_wake(l, &p->peer, &p->reader, &hdr)) {
	    close(p->fd);			/* a wake-up: nothing to say */
	} else if (err == NULL
		   && (err = preload_client(&hdr, l->self.sa.sa_family, &p->peer, &client)) == NULL
		   && l->nready < PRELOAD_MAX_PENDING) {
	    l->ready[l->nready].fd = p->fd;
	    /* PROXYV2_TIMEOUT counts from the connection, as for the header;
	       a header that came at the last moment gets 100 ms to be taken */
	    l->ready[l->nready].deadline_ms = p->deadline_ms > now + 100 ? p->deadline_ms
		: now + 100;
	    l->ready[l->nready].since_ms = now;
	    l->ready[l->nready++].client = client;
	    woke = 1;
	} else {
	    preload_log("connection from %s closed: %s",
			addr_format(&p->peer.sa, text, sizeof(text)),
			err == proxy_header_incomplete ? "timeout waiting for the PROXY header"
			: err ? err : "too many connections ready");
	    close(p->fd);
	}
	proxy_reader_free(&p->reader);
	l->parked[i] = l->parked[--l->nparked];
    }
    if (woke) {					/* at once, then preload_rewake() */
	l->rewake_step = 0;
	l->rewake_ms = now;
	(void) preload_rewake(l, now, now);
    }
}

/* preload_helper - watch parked connections of non-blocking listeners */

static void *preload_helper(void *unused)
{
    struct pollfd *pfd = NULL;
    size_t  room = 0;
    char    drain[64];

    for (;;) {
	long long now = preload_now_ms(), next = now + 1000;
	size_t  n = 1, need = 1;

	pthread_mutex_lock(&preload_lock);
	for (int j = 0; j < preload_nlisteners; j++)
	    need += preload_listeners[j]->nparked;
	if (need > room) {
	    struct pollfd *grown = realloc(pfd, need * sizeof(*pfd));

	    if (grown != NULL) {
		pfd = grown;
		room = need;
	    }
	}
	if (pfd != NULL) {
	    pfd[0].fd = preload_kick[0];
	    pfd[0].events = POLLIN;
	}
	for (int j = 0; j < preload_nlisteners; j++)
	    for (int i = 0; i < preload_listeners[j]->nparked; i++) {
		struct preload_parked *p = &preload_listeners[j]->parked[i];

		if (n < room) {			/* else woken by the deadline */
		    pfd[n].fd = p->fd;
		    pfd[n++].events = POLLIN;
		}
		if (p->deadline_ms < next)
		    next = p->deadline_ms;
	    }
	for (int j = 0; j < preload_nlisteners; j++)
	    next = preload_rewake(preload_listeners[j], now, next);
	pthread_mutex_unlock(&preload_lock);
	if (pfd != NULL)
	    (void) poll(pfd, (nfds_t) n, next > now ? (int) (next - now) : 0);
	else
	    (void) poll(NULL, 0, 10);
	while (read(preload_kick[0], drain, sizeof(drain)) > 0)
	     /* void */ ;
	pthread_mutex_lock(&preload_lock);
	now = preload_now_ms();
	for (int j = 0; j < preload_nlisteners; j++) {
	    struct preload_listener *l = preload_listeners[j];

	    if (l->fd != 0 && l->nparked + l->nready > 0 && !preload_listener_alive(l))
		preload_listener_gone(l);
	    else if (l->nparked)
		preload_advance(l, now);
	}
	pthread_mutex_unlock(&preload_lock);
    }
    return (unused);
}

/*
 * preload_helper_ok - the helper thread runs, started now if need be;
 * lock held. A process that may start none (Dovecot's login processes
 * run under RLIMIT_NPROC = 1: pthread_create() fails with EAGAIN) has
 * no one to watch a parked connection: accept() then waits for the
 * header itself (preload.c), and says so once.
 */
int     preload_helper_ok(void)
{
    static int said;
    pthread_attr_t attr;
    pthread_t thread;
    int     err;

    if (!preload_helper_started && preload_kick[0] >= 0) {
	pthread_attr_init(&attr);
	pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
	err = pthread_create(&thread, &attr, preload_helper, NULL);
	pthread_attr_destroy(&attr);
	preload_helper_started = err == 0;
	if (err && !said++)
	    preload_log("cannot start the helper thread (%s; RLIMIT_NPROC?): accept() waits "
			"for a header that comes in pieces, PROXYV2_TIMEOUT at most",
			strerror(err));
    }
    return (preload_helper_started);
}

/* preload_kick_helper - start the helper, or interrupt its poll(); lock held */

static void preload_kick_helper(void)
{
    (void) preload_helper_ok();
    if (write(preload_kick[1], "x", 1) < 0) {
	/* a full pipe: the helper is awake anyway */
    }
}

/* preload_park - a non-blocking listener's connection, header unfinished */

void    preload_park(struct preload_listener *l, int fd, const union addr_sockaddr *peer,
		             struct proxy_reader *reader, long long deadline_ms)
{
    struct preload_parked *p;

    if (l->nparked >= PRELOAD_MAX_PENDING) {
	preload_log("too many connections waiting for their PROXY header; closing one");
	proxy_reader_free(reader);
	close(fd);
	return;
    }
    p = &l->parked[l->nparked++];
    p->fd = fd;
    p->peer = *peer;
    p->reader = *reader;
    p->deadline_ms = deadline_ms;
    preload_kick_helper();
}
