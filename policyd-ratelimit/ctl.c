/*
 * NAME
 *	ctl 3
 * SUMMARY
 *	the control socket, served inside the daemon
 * SYNOPSIS
 *	#include "ctl.h"
 *
 *	struct ctl_server *ctl_start(srv)
 *	void	ctl_stop(&ctl)
 * DESCRIPTION
 *	control_socket is a UNIX socket, created before privileges are
 *	dropped: mode 0600 owned by the daemon's user (root, when it
 *	starts as root), or 0660 with group control_group. A stale
 *	socket file is replaced; one a running daemon answers on is not
 *	(fatal: "in use"). Each connection is also checked with the
 *	kernel's word for who is calling (SO_PEERCRED, SO_PEERGROUPS):
 *	root, the daemon's own user, or a member of control_group (as
 *	primary or supplementary group); anyone else is told so and
 *	closed, whatever the file's mode.
 *
 *	One request per connection (ctl_cmd.c), answered with "ok" and
 *	the result lines, or one "error: ..." line; then the daemon
 *	closes its side and discards whatever the client still sends.
 *	Everything is bounded: CTL_CONN_MAX connections at once (more
 *	are told so and closed; callers without the right are refused
 *	before they count), CTL_LINE_MAX bytes of request, CTL_TIMEOUT
 *	seconds from the connection to a complete request and again from
 *	the answer to its end (whole phases: a byte a second does not
 *	extend them), at most CTL_DRAIN_MAX bytes discarded.
 *
 *	The commands run on the daemon's store: Redis, or the memory
 *	store every connection of this daemon shares; reset and release
 *	also clear the local memory store that on_store_error = open
 *	counts in while Redis is unavailable.
 * DIAGNOSTICS
 *	"control: uid U: COMMAND KEY" per command; "control: refused uid
 *	U" for a caller without the right.
 */

#include "build_config.h"

#include <ctype.h>
#include <errno.h>
#include <grp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <event2/listener.h>

#include "conn.h"
#include "ctl.h"
#include "daemon.h"
#include "msg.h"
#include "quarantine.h"
#include "skeleton.h"
#include "xalloc.h"

#define CTL_CONN_MAX	8
#define CTL_TIMEOUT	5
#define CTL_DRAIN_MAX	(1024 * 1024)

struct ctl_server {
    struct server *srv;
    struct evconnlistener *listener;
    char   *path;
    gid_t   gid;
    int     have_group;
    int     conns;
    time_t  warned;			/* "too many", once a second */
};

struct ctl_conn {
    struct ctl_server *ctl;
    int     fd;
    uid_t   uid;
    struct event *read_ev;
    struct event *write_ev;
    char    in[CTL_LINE_MAX + 2];
    size_t  in_len;
    int     answered;			/* reading only to discard */
    long long drained;
    struct ctl_out out;
    size_t  sent;
    struct ctl_request req;
    struct policy_config *pc;		/* held while the command runs */
    struct store_admin adm;
    struct ctl_top *top;
    int     step;
    unsigned long long released;	/* quarantines that were locked */
    long long phase_end;		/* ms: end of the request, or answer */
};

/*
 * ctl_left - what remains of the phase's CTL_TIMEOUT: a whole phase, not
 * per read or write, so a client sending or reading a byte a second
 * cannot hold one of the few connections for hours.
 */
static struct timeval ctl_left(const struct ctl_conn *cc)
{
    long long ms = cc->phase_end - daemon_mono_ms();
    struct timeval tv;

    if (ms < 0)
	ms = 0;
    tv.tv_sec = ms / 1000;
    tv.tv_usec = (ms % 1000) * 1000;
    return (tv);
}

static void ctl_conn_free(struct ctl_conn *cc)
{
    event_free(cc->read_ev);
    event_free(cc->write_ev);
    close(cc->fd);
    ctl_request_free(&cc->req);
    store_admin_clear(&cc->adm);
    if (cc->top)
	ctl_top_finish(&cc->top, &cc->out);
    free(cc->out.text);
    policy_config_release(&cc->pc);
    cc->ctl->conns--;
    free(cc);
}

static void ctl_writable(evutil_socket_t fd, short what, void *context);

/* ctl_answer - send out (after "ok") or an error line, then drain */

static void ctl_answer(struct ctl_conn *cc, const char *error)
{
    struct ctl_out body = cc->out;
    struct timeval tv;

    memset(&cc->out, 0, sizeof(cc->out));
    if (error)
	ctl_printf(&cc->out, "error: %s\n", error);
    else
	ctl_printf(&cc->out, "ok\n%s", body.text ? body.text : "");
    free(body.text);
    cc->answered = 1;
    policy_config_release(&cc->pc);
    cc->phase_end = daemon_mono_ms() + CTL_TIMEOUT * 1000;
    tv = ctl_left(cc);
    event_add(cc->write_ev, &tv);
}

static void ctl_writable(evutil_socket_t fd, short what, void *context)
{
    struct ctl_conn *cc = context;
    struct timeval tv = ctl_left(cc);
    ssize_t n;

    if (what & EV_TIMEOUT) {
	msg_warn("control: uid %d did not read its answer; closing", (int) cc->uid);
	ctl_conn_free(cc);
	return;
    }
    while (cc->sent < cc->out.len) {
	n = send(fd, cc->out.text + cc->sent, cc->out.len - cc->sent, MSG_NOSIGNAL);
	if (n < 0 && (errno == EAGAIN || errno == EINTR)) {
	    event_add(cc->write_ev, &tv);
	    return;
	}
	if (n <= 0) {
	    ctl_conn_free(cc);
	    return;
	}
	cc->sent += n;
    }
    (void) shutdown(fd, SHUT_WR);		/* then read to EOF: no RST */
    event_add(cc->read_ev, &tv);
}

static void ctl_done(struct store_admin *adm);
static void ctl_release_step(struct ctl_conn *cc, int step);

/* ctl_call - one store call of the command's current step */

static void ctl_call(struct ctl_conn *cc, struct store *store, int op, int what)
{
    store_admin_clear(&cc->adm);
    cc->adm.op = op;
    cc->adm.context = cc;
    cc->adm.done = ctl_done;
    if (op != STORE_ADMIN_SCAN)
	ctl_keys(&cc->pc->limits, cc->req.value, what, &cc->adm);
    if (op != STORE_ADMIN_SCAN && cc->adm.count == 0) {
	cc->adm.now = 0;
	ctl_done(&cc->adm);
	return;
    }
    store->admin(store, &cc->adm);
}

static void ctl_top_batch(struct store_admin *adm)
{
    struct ctl_conn *cc = adm->context;

    ctl_top_add(cc->top, &cc->pc->limits, adm);
}

/*
 * ctl_done - a store call ended: the next step, or the answer. Steps:
 * reset: DEL on the local store (when it is not the store), DEL; release:
 * GET the locks, DEL locally, DEL; show: GET; top: SCAN.
 */
static void ctl_done(struct store_admin *adm)
{
    struct ctl_conn *cc = adm->context;
    struct server *srv = cc->ctl->srv;
    struct store *store = srv->store;
    char    why[300];
    int     step = cc->step++;

    if (adm->error) {
	snprintf(why, sizeof(why), "store %s unavailable: %s%s", store->kind,
		 store->error[0] ? store->error : "unknown", cc->req.verb == CTL_RELEASE
		 ? " (released in this node's local store only)" : cc->req.verb == CTL_RESET
		 ? " (reset in this node's local store only)" : "");
	ctl_answer(cc, why);
	return;
    }
    switch (cc->req.verb) {
    case CTL_SHOW:
	ctl_show(&cc->pc->limits, &cc->req, adm, &cc->out);
	ctl_answer(cc, NULL);
	return;
    case CTL_TOP:
	ctl_top_finish(&cc->top, &cc->out);
	ctl_answer(cc, NULL);
	return;
    case CTL_RESET:
	if (step == 0 && store != srv->local) {
	    ctl_call(cc, store, STORE_ADMIN_DEL, CTL_KEYS_RATES);
	    return;
	}
	ctl_printf(&cc->out, "reset keys=%lld\n", adm->deleted);
	ctl_answer(cc, NULL);
	return;
    case CTL_RELEASE:
	ctl_release_step(cc, step);
	return;
    }
}

/*
 * ctl_release_step - the local store first (a lock set there while
 * Redis was unavailable), then the store: GET the locks (to say which
 * were released), DEL locks and strikes.
 */
static void ctl_release_step(struct ctl_conn *cc, int step)
{
    struct server *srv = cc->ctl->srv;
    int     both = CTL_KEYS_LOCKS | CTL_KEYS_STRIKES;

    if (step == 0 || step == 2) {
	for (int i = 0; i < cc->adm.count && i < QUARANTINE_MAX; i++)
	    if (cc->adm.values[i])
		cc->released |= 1ULL << i;
    }
    if (step == 0)
	ctl_call(cc, srv->local, STORE_ADMIN_DEL, both);
    else if (step == 1 && srv->store != srv->local)
	ctl_call(cc, srv->store, STORE_ADMIN_GET, CTL_KEYS_LOCKS);
    else if (step == 2)
	ctl_call(cc, srv->store, STORE_ADMIN_DEL, both);
    else {
	ctl_release_report(&cc->pc->limits, cc->released, &cc->out);
	ctl_answer(cc, NULL);
    }
}

/* ctl_printable - a key for the log: at most 100 bytes, no controls */

static void ctl_printable(const char *in, char *out, size_t len)
{
    size_t  i;

    for (i = 0; in && in[i] && i + 1 < len; i++)
	out[i] = isprint((unsigned char) in[i]) ? in[i] : '?';
    out[i] = 0;
}

static void ctl_run(struct ctl_conn *cc, size_t len)
{
    static const char *const verbs[] = {"show", "reset", "top", "release"};
    struct server *srv = cc->ctl->srv;
    const char *err;
    char    key[101];

    if ((err = ctl_request_parse(cc->in, len, &cc->req)) != NULL) {
	ctl_answer(cc, err);
	return;
    }
    if (cc->req.verb == CTL_TOP)
	snprintf(key, sizeof(key), "%d", cc->req.top);
    else
	ctl_printable(cc->req.value, key, sizeof(key));
    msg_info("control: uid %d: %s %s", (int) cc->uid, verbs[cc->req.verb], key);
    cc->pc = srv->pc;
    cc->pc->refcount++;
    if (cc->req.verb == CTL_RELEASE && cc->pc->limits.quarantine_count == 0) {
	ctl_answer(cc, "no quarantine is configured");
    } else if (cc->req.verb == CTL_SHOW) {
	ctl_call(cc, srv->store, STORE_ADMIN_GET, CTL_KEYS_ALL);
    } else if (cc->req.verb == CTL_RESET) {
	ctl_call(cc, srv->local, STORE_ADMIN_DEL, CTL_KEYS_RATES);
    } else if (cc->req.verb == CTL_RELEASE) {
	ctl_call(cc, srv->local, STORE_ADMIN_GET, CTL_KEYS_LOCKS);
    } else {
	cc->top = ctl_top_create(cc->req.top);
	cc->adm.match = "mxrl:*";
	cc->adm.batch = ctl_top_batch;
	ctl_call(cc, srv->store, STORE_ADMIN_SCAN, 0);
    }
}

static void ctl_readable(evutil_socket_t fd, short what, void *context)
{
    struct ctl_conn *cc = context;
    char    sink[16384], *nl;
    ssize_t n;

    if (what & EV_TIMEOUT) {
	if (!cc->answered)
	    msg_warn("control: uid %d sent no complete request in %ds; closing",
		     (int) cc->uid, CTL_TIMEOUT);
	ctl_conn_free(cc);
	return;
    }
    if (cc->answered) {			/* discard until EOF */
	n = read(fd, sink, sizeof(sink));
	if (n < 0 && (errno == EAGAIN || errno == EINTR))
	    return;
	if (n <= 0 || (cc->drained += n) > CTL_DRAIN_MAX)
	    ctl_conn_free(cc);
	return;
    }
    n = read(fd, cc->in + cc->in_len, sizeof(cc->in) - 1 - cc->in_len);
    if (n < 0 && (errno == EAGAIN || errno == EINTR))
	return;
    if (n <= 0) {
	ctl_conn_free(cc);
	return;
    }
    cc->in_len += n;
    event_del(cc->read_ev);
    if ((nl = memchr(cc->in, '\n', cc->in_len)) != NULL && (size_t) (nl - cc->in) + 1 < cc->in_len)
	ctl_answer(cc, "one request per connection (bytes after its line end)");
    else if (nl != NULL)
	ctl_run(cc, nl - cc->in);
    else if (cc->in_len >= sizeof(cc->in) - 1)
	ctl_answer(cc, "request longer than the longest key a request can carry");
    else {
	struct timeval tv = ctl_left(cc);

	event_add(cc->read_ev, &tv);
    }
}

/* ctl_allowed - root, our own user, or a member of control_group */

static int ctl_allowed(const struct ctl_server *ctl, int fd, uid_t *uid)
{
    struct ucred cred;
    socklen_t len = sizeof(cred);
    gid_t   groups[256];

    *uid = (uid_t) -1;
    if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) < 0)
	return (0);
    *uid = cred.uid;
    if (cred.uid == 0 || cred.uid == geteuid())
	return (1);
    if (!ctl->have_group)
	return (0);
    if (cred.gid == ctl->gid)
	return (1);
    len = sizeof(groups);
    if (getsockopt(fd, SOL_SOCKET, SO_PEERGROUPS, groups, &len) < 0)
	return (0);				/* more than 256: not proven */
    for (size_t i = 0; i < len / sizeof(gid_t); i++)
	if (groups[i] == ctl->gid)
	    return (1);
    return (0);
}

static void ctl_refuse(int fd, const char *text)
{
    (void) send(fd, text, strlen(text), MSG_NOSIGNAL | MSG_DONTWAIT);
    close(fd);
}

static void ctl_accept(struct evconnlistener *listener, evutil_socket_t fd,
		               struct sockaddr *sa, int salen, void *context)
{
    struct ctl_server *ctl = context;
    struct ctl_conn *cc;
    struct timeval tv;
    uid_t   uid;

    if (!ctl_allowed(ctl, fd, &uid)) {
	msg_warn("control: refused uid %d (root or control_group only)", (int) uid);
	ctl_refuse(fd, "error: permission denied\n");
	return;
    }
    if (ctl->conns >= CTL_CONN_MAX) {
	if (time(NULL) != ctl->warned)		/* one line a second at most */
	    msg_warn("control: %d connections open; refusing uid %d", CTL_CONN_MAX,
		     (int) uid);
	ctl->warned = time(NULL);
	ctl_refuse(fd, "error: too many control connections; try again\n");
	return;
    }
    evutil_make_socket_nonblocking(fd);
    cc = xcalloc(1, sizeof(*cc));
    cc->ctl = ctl;
    cc->fd = fd;
    cc->uid = uid;
    ctl->conns++;
    cc->phase_end = daemon_mono_ms() + CTL_TIMEOUT * 1000;
    tv = ctl_left(cc);
    cc->read_ev = event_new(ctl->srv->base, fd, EV_READ | EV_PERSIST, ctl_readable, cc);
    cc->write_ev = event_new(ctl->srv->base, fd, EV_WRITE, ctl_writable, cc);
    event_add(cc->read_ev, &tv);
}

/* ctl_bind - the socket, replacing a stale one but not a live one */

static int ctl_bind(const char *path, mode_t mode, gid_t gid)
{
    union {
	struct sockaddr sa;
	struct sockaddr_un un;
    } u;
    int     fd, probe;
    struct stat st;

    memset(&u, 0, sizeof(u));
    u.un.sun_family = AF_UNIX;
    snprintf(u.un.sun_path, sizeof(u.un.sun_path), "%s", path);
    if ((probe = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0)) < 0)
	msg_fatal("control_socket %s: socket: %m", path);
    if (connect(probe, &u.sa, sizeof(u.un)) == 0)
	msg_fatal("control_socket %s is in use by a running daemon", path);
    close(probe);
    if (lstat(path, &st) == 0 && !S_ISSOCK(st.st_mode))
	msg_fatal("control_socket %s exists and is not a socket; not removing it", path);
    if (unlink(path) < 0 && errno != ENOENT)
	msg_fatal("control_socket %s: cannot remove the old file: %m", path);
    if ((fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0)) < 0)
	msg_fatal("control_socket %s: socket: %m", path);
    if (bind(fd, &u.sa, sizeof(u.un)) < 0)
	msg_fatal("control_socket %s: bind: %m", path);
    if (chown(path, geteuid(), gid) < 0 || chmod(path, mode) < 0)
	msg_fatal("control_socket %s: cannot give it group %d and mode %o: %m (run as root, "
		  "or as a member of control_group)", path, (int) gid, (unsigned) mode);
    if (listen(fd, 64) < 0)
	msg_fatal("control_socket %s: listen: %m", path);
    return (fd);
}

struct ctl_server *ctl_start(struct server *srv)
{
    const char *path = config_get_str(srv->pc->cfg, "control_socket");
    const char *group = config_get_str(srv->pc->cfg, "control_group");
    struct ctl_server *ctl;
    struct group *gr;
    int     fd;

    if (path == NULL)
	return (NULL);
    ctl = xcalloc(1, sizeof(*ctl));
    ctl->srv = srv;
    ctl->path = xstrdup(path);
    if (group && (gr = getgrnam(group)) == NULL)
	msg_fatal("control_group: unknown group \"%s\"", group);
    if (group) {
	ctl->gid = gr->gr_gid;
	ctl->have_group = 1;
    }
    fd = ctl_bind(path, group ? 0660 : 0600, group ? ctl->gid : getegid());
    if ((ctl->listener = evconnlistener_new(srv->base, ctl_accept, ctl, LEV_OPT_CLOSE_ON_FREE,
					    0, fd)) == NULL)
	msg_fatal("control_socket %s: cannot watch the socket", path);
    skeleton_listener_guard(ctl->listener);
    msg_info("control socket %s (root%s%s)", path, group ? " and group " : " only",
	     group ? group : "");
    return (ctl);
}

void    ctl_stop(struct ctl_server **ctlp)
{
    struct ctl_server *ctl = *ctlp;

    if (ctl == NULL)
	return;
    evconnlistener_free(ctl->listener);
    (void) unlink(ctl->path);			/* may fail without root: harmless */
    free(ctl->path);
    free(ctl);
    *ctlp = NULL;
}
