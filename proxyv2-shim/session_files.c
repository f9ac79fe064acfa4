/*
 * NAME
 *	session_files 3
 * SUMMARY
 *	proxyv2-shim: accepting only with descriptors for a whole session
 * SYNOPSIS
 *	#include "shim.h"
 *
 *	int	session_files_room(more)
 *	void	session_files_hold(server)
 *	void	session_files_park(listener, fd, sa, salen)
 *	void	session_files_unpark_all(server, why)
 * DESCRIPTION
 *	A session holds SHIM_FDS_PER_SESSION descriptors once relaying.
 *	session_files_room() says whether the open-files limit, as it is
 *	now, leaves them for the sessions open and "more" besides;
 *	session_files_hold() stops a worker's accepting until it does.
 *
 *	session_files_park() keeps a client accepted when there was no
 *	room after all (another worker took it between this worker's
 *	look and its accept): it waits, holding the one descriptor it
 *	already has, and its session starts once there is room, as a
 *	client in the backlog would. Before, it was closed: a reset for a
 *	client the shim could have served a moment later. The worker's
 *	listeners stay off while any client waits, so that one waits per
 *	worker and hold (or per accept(2) EMFILE pause, which skeleton(3)
 *	ends on its own); one that has sent nothing by header_timeout is
 *	closed, as an accepted client without its header is, while one
 *	whose bytes came waits on, as in the backlog.
 *	session_files_unpark_all() closes the waiting clients (a stop),
 *	logging them with "why".
 */

#include "build_config.h"

#include <dirent.h>
#include <errno.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <event2/event.h>
#include <event2/listener.h>

#include "daemon.h"
#include "shim.h"
#include "skeleton.h"
#include "xalloc.h"

struct shim_parked {
    struct shim_listener *lst;
    int     fd;
    union {
	struct sockaddr sa;
	struct sockaddr_storage storage;
    }       addr;
    int     salen;
    long long deadline_ms;		/* header_timeout from the accept */
    struct shim_parked *next;
};

static atomic_int session_parked_total;	/* in all workers: a descriptor each */

#define SESSION_HOLD_MS	100		/* out of descriptors: look again then */

/*
 * session_files_room - descriptors for the sessions open now and "more"
 * besides under the open-files limit as it is now (prlimit may lower it
 * under a running daemon, or another process of the same user take
 * files: the limit is per process, but the host's table is shared).
 */
static atomic_int session_fd_base;		/* the daemon's own; 0: not counted */

/*
 * session_fd_count - descriptors open in this process, counted once at
 * the first accept (listeners, loops, the metrics server: what the
 * daemon holds whatever the sessions); SHIM_FD_RESERVE without /proc.
 * Margin: resolvers open their sockets later.
 */
static int session_fd_count(void)
{
    DIR    *dir = opendir("/proc/self/fd");
    struct dirent *d;
    int     n = -1;				/* the directory's own */

    if (dir == NULL)
	return (SHIM_FD_RESERVE);
    while ((d = readdir(dir)) != NULL)
	if (d->d_name[0] != '.')
	    n++;
    closedir(dir);
    return (n + 8);
}

int     session_files_room(int more)
{
    static atomic_llong seen_limit;		/* at the last look */
    struct rlimit rl;
    int     base = atomic_load(&session_fd_base);

    if (getrlimit(RLIMIT_NOFILE, &rl) < 0 || rl.rlim_cur == RLIM_INFINITY)
	return (1);
    /* counted again whenever the limit went down since the last look:
       the daemon's own count grows after the first accept (resolvers,
       probes), and within the margin a lowered limit left one
       descriptor, not a session's six. Compared with the limit of the
       last count instead, a limit lowered, raised again and lowered to
       a little more kept a count made while sessions were only half
       open, too low: the next 5 clients were accepted and closed for
       want of pipes (CI of f883742) */
    if ((long long) rl.rlim_cur < atomic_exchange(&seen_limit, (long long) rl.rlim_cur)
	|| base == 0) {
	base = session_fd_count() - SHIM_FDS_PER_SESSION * session_open_count()
	    - atomic_load(&session_parked_total);
	atomic_store(&session_fd_base, base = base > 0 ? base : 1);
    }
    return (base + atomic_load(&session_parked_total) + (long long) SHIM_FDS_PER_SESSION
	    * (session_open_count() + more) <= (long long) rl.rlim_cur);
}

/* session_files_listeners - this worker's listeners on or off */

static void session_files_listeners(struct server *srv, int on)
{
    for (int i = 0; i < srv->nlisteners; i++)
	if (srv->listeners[i].evl)
	    (on ? evconnlistener_enable : evconnlistener_disable) (srv->listeners[i].evl);
}

/* session_files_take - the waiting client at *pp off the list */

static struct shim_parked *session_files_take(struct server *srv, struct shim_parked **pp)
{
    struct shim_parked *p = *pp;

    if ((*pp = p->next) == NULL)
	srv->parked_tail = pp;
    atomic_fetch_sub(&session_parked_total, 1);
    return (p);
}

static void session_files_close(struct server *srv, struct shim_parked *p, const char *why)
{
    char    peer[ADDR_TEXT_MAX], listen[ADDR_TEXT_MAX];

    session_log_reject(srv, "listener=%s: connection from %s closed: %s",
		       addr_format(&p->lst->listen.u.sa, listen, sizeof(listen)),
		       addr_format(&p->addr.sa, peer, sizeof(peer)), why);
    close(p->fd);
    free(p);
}

/*
 * session_files_sweep - close the waiting clients past header_timeout
 * that sent nothing, or whose peer went away; one whose bytes came (a
 * balancer sends its header at once) waits on for room, as it would in
 * the backlog: closing it would be the reset that waiting avoids. The
 * list holds one client per worker and hold, so its walk is short.
 */
static void session_files_sweep(struct server *srv)
{
    struct shim_parked **pp = &srv->parked, *p;
    ssize_t n = -1;
    char    c;

    while ((p = *pp) != NULL) {
	if (daemon_mono_ms() < p->deadline_ms
	    || (n = recv(p->fd, &c, 1, MSG_PEEK | MSG_DONTWAIT)) > 0) {
	    pp = &p->next;
	    continue;
	}
	session_files_close(srv, session_files_take(srv, pp), n == 0 ? "closed by the client while it waited for descriptors"
			    : errno != EAGAIN && errno != EWOULDBLOCK
			    ? "reset by the client while it waited for descriptors"
			    : "no PROXY header within header_timeout while it waited for descriptors");
    }
}

/*
 * session_files_unpark - start the sessions of the clients that wait,
 * oldest first, while there is room. Each may wait again (another
 * worker took the room first): at most as many tries as were waiting.
 */
static void session_files_unpark(struct server *srv)
{
    struct shim_parked *p;
    int     waiting = 0;

    session_files_sweep(srv);
    for (p = srv->parked; p; p = p->next)
	waiting++;
    while (srv->parked && waiting-- > 0 && session_files_room(1)) {
	p = session_files_take(srv, &srv->parked);
	session_accept(NULL, p->fd, &p->addr.sa, p->salen, p->lst);
	free(p);
    }
}

static void session_files_check(evutil_socket_t fd, short what, void *context)
{
    struct server *srv = context;
    struct timeval pause = {0, SESSION_HOLD_MS * 1000};

    if (srv->draining)
	return;					/* stopping: listeners stay off */
    session_files_unpark(srv);
    if (srv->parked || !session_files_room(1)) {
	session_files_listeners(srv, 0);	/* whoever turned them on */
	evtimer_add(srv->files_hold, &pause);
	return;
    }
    session_files_listeners(srv, 1);
}

void    session_files_park(struct shim_listener *lst, int fd, const struct sockaddr *sa,
			           int salen)
{
    struct server *srv = lst->srv;
    struct shim_parked *p = xcalloc(1, sizeof(*p));
    int     timeout = lst->header_timeout_ms ? lst->header_timeout_ms : srv->header_timeout_ms;

    p->lst = lst;
    p->fd = fd;
    p->salen = salen < 0 ? 0 : (size_t) salen < sizeof(p->addr) ? salen : (int) sizeof(p->addr);
    memcpy(&p->addr, sa, (size_t) p->salen);
    p->deadline_ms = daemon_mono_ms() + timeout;
    if (srv->parked_tail == NULL)
	srv->parked_tail = &srv->parked;
    *srv->parked_tail = p;
    srv->parked_tail = &p->next;
    atomic_fetch_add(&session_parked_total, 1);
    session_files_hold(srv);
}

void    session_files_unpark_all(struct server *srv, const char *why)
{
    while (srv->parked != NULL)
	session_files_close(srv, session_files_take(srv, &srv->parked), why);
    srv->parked_tail = &srv->parked;
}

/*
 * session_files_hold - no descriptors for one more session: this worker
 * stops accepting until there are (looked at every SESSION_HOLD_MS), so
 * the clients behind wait in the backlog. Before, an accept that got
 * the last free descriptor took the client and then closed it for want
 * of the five more its session needs, and so for nearly every client
 * behind it. The warning is skeleton(3)'s, at most one in 10 s.
 */
void    session_files_hold(struct server *srv)
{
    struct timeval pause = {0, SESSION_HOLD_MS * 1000};

    if (srv->files_hold == NULL)
	srv->files_hold = evtimer_new(srv->base, session_files_check, srv);
    if (srv->files_hold == NULL)
	return;
    /* off even when the timer runs already: skeleton(3)'s end of an
       accept(2) EMFILE pause, or the check, may have turned one on */
    session_files_listeners(srv, 0);
    if (evtimer_pending(srv->files_hold, NULL))
	return;
    evtimer_add(srv->files_hold, &pause);
    if (srv->nlisteners > 0 && srv->listeners[0].evl)
	skeleton_accept_failed(evconnlistener_get_fd(srv->listeners[0].evl), EMFILE);
}

