/*
 * NAME
 *	preload_peer 3
 * SUMMARY
 *	libproxyv2-preload: the clients of accepted sockets, for getpeername()
 * SYNOPSIS
 *	#include "preload_int.h"
 *
 *	void	preload_remember(fd, client, balancer)
 *	void	preload_forget(fd)
 *	const union addr_sockaddr *preload_peer_of(fd, real, local)
 * DESCRIPTION
 *	preload_remember() records the client of descriptor FD, just
 *	accepted from balancer; preload_forget() says that FD's number
 *	goes to another socket; preload_peer_of() is the client of FD's
 *	socket while it is the same connection (real peer REAL, local
 *	address LOCAL), under FD or any dup() of it, or NULL. All with
 *	preload_lock held. Split from preload.c (accept() and
 *	getpeername() themselves stay there) along this seam.
 */

#include "build_config.h"

#include <dirent.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>

#include "addr.h"

#include "preload_int.h"

/*
 * Client, balancer and local address of an accepted socket, known by the
 * socket (st_dev, st_ino), so that every descriptor of it finds it: one
 * per descriptor it was accepted or asked for on, and those whose number
 * went to another socket while the socket may still be open under a
 * dup() (preload_moved, pruned to the sockets still open when full).
 */
struct preload_peer {
    union addr_sockaddr client;
    union addr_sockaddr balancer;
    union addr_sockaddr local;
    dev_t   dev;
    ino_t   ino;
    unsigned long long seq;		/* the latest of one socket wins */
};

static struct preload_peer **preload_peers;		/* by descriptor; grows */
static int preload_npeers;
static struct preload_peer **preload_moved;	/* number reused; maybe dup()ed */
static int preload_nmoved, preload_moved_room;
static unsigned long long preload_seq;
/* preload_socket_id - the socket under FD, or 0 */

static int preload_socket_id(int fd, dev_t *dev, ino_t *ino)
{
    struct stat st;

    if (fd < 0 || fstat(fd, &st) < 0 || !S_ISSOCK(st.st_mode))
	return (0);
    *dev = st.st_dev;
    *ino = st.st_ino;
    return (1);
}

static int preload_by_ino(const void *a, const void *b)
{
    ino_t   x = (*(struct preload_peer * const *) a)->ino;
    ino_t   y = (*(struct preload_peer * const *) b)->ino;

    return (x < y ? -1 : x > y);
}

/*
 * preload_prune - keep the moved entries whose socket is still open
 * here, under whatever descriptor: one pass over /proc/self/fd, each
 * looked up among the entries sorted by inode. Lock held. Room for as
 * many more as there are descriptors, so that the pass, one fstat() a
 * descriptor, comes at most once per that many accept() calls.
 */
static void preload_prune(void)
{
    struct preload_peer key, *kp = &key, **hit, **grown;
    unsigned char *live = calloc(preload_nmoved ? preload_nmoved : 1, 1);
    DIR    *d = opendir("/proc/self/fd");
    struct dirent *de;
    int     n = 0, nfds = 0;

    qsort(preload_moved, preload_nmoved, sizeof(*preload_moved), preload_by_ino);
    while (live && d && (de = readdir(d)) != NULL) {
	if (de->d_name[0] == '.' || !preload_socket_id(atoi(de->d_name), &key.dev, &key.ino))
	    continue;
	nfds++;
	if ((hit = bsearch(&kp, preload_moved, preload_nmoved, sizeof(*hit), preload_by_ino)))
	    for (int i = hit - preload_moved; i >= 0 && preload_moved[i]->ino == key.ino; i--)
		live[i] |= preload_moved[i]->dev == key.dev;
	for (int i = hit ? hit - preload_moved + 1 : preload_nmoved; i < preload_nmoved
	     && preload_moved[i]->ino == key.ino; i++)
	    live[i] |= preload_moved[i]->dev == key.dev;
    }
    if (d)
	closedir(d);
    for (int i = 0; i < preload_nmoved; i++)	/* no /proc: all dropped */
	if (live && live[i])
	    preload_moved[n++] = preload_moved[i];
	else
	    free(preload_moved[i]);
    free(live);
    preload_nmoved = n;
    n = 2 * n + nfds + 64;
    if (n > preload_moved_room
	&& (grown = realloc(preload_moved, n * sizeof(*grown))) != NULL) {
	preload_moved = grown;
	preload_moved_room = n;
    }
}

/*
 * preload_forget - descriptor FD's number goes to another socket: its
 * entry is kept as moved (a dup() of its socket may ask for it later;
 * getpeername() there failed once the number was reused). Lock held.
 */
void    preload_forget(int fd)
{
    struct preload_peer *p;

    if (fd < 0 || fd >= preload_npeers || (p = preload_peers[fd]) == NULL)
	return;
    preload_peers[fd] = NULL;
    if (preload_nmoved >= preload_moved_room)
	preload_prune();
    if (preload_nmoved < preload_moved_room)
	preload_moved[preload_nmoved++] = p;
    else
	free(p);				/* no memory: getpeername() fails closed */
}

/* preload_slot_for - descriptor FD's entry, to be filled in; lock held */

static struct preload_peer *preload_slot_for(int fd)
{
    if (fd < 0)
	return (NULL);
    if (fd >= preload_npeers) {
	int     n = fd + 1024;
	struct preload_peer **grown = realloc(preload_peers, n * sizeof(*grown));

	if (grown == NULL)
	    return (NULL);			/* getpeername() then fails closed */
	memset(grown + preload_npeers, 0, (n - preload_npeers) * sizeof(*grown));
	preload_peers = grown;
	preload_npeers = n;
    }
    preload_forget(fd);
    return (preload_peers[fd] = calloc(1, sizeof(struct preload_peer)));
}

/* preload_remember - the client of accepted descriptor FD; lock held */

void    preload_remember(int fd, const union addr_sockaddr *client,
			         const union addr_sockaddr *balancer)
{
    struct preload_peer *p;
    socklen_t len = sizeof(p->local);
    dev_t   dev;
    ino_t   ino;

    if (!preload_socket_id(fd, &dev, &ino) || (p = preload_slot_for(fd)) == NULL)
	return;
    p->client = *client;
    p->balancer = *balancer;
    p->dev = dev;
    p->ino = ino;
    if (getsockname(fd, &p->local.sa, &len) < 0)
	memset(&p->local, 0, sizeof(p->local));
    p->seq = ++preload_seq;
}

/*
 * preload_same_peer - entry P is of socket DEV/INO, with real peer REAL
 * and local address LOCAL (an inode number long since reused is not)
 */
static int preload_same_peer(const struct preload_peer *p, dev_t dev, ino_t ino,
			             const union addr_sockaddr *real,
			             const union addr_sockaddr *local)
{
    return (p != NULL && p->dev == dev && p->ino == ino && preload_same_addr(&p->balancer, real)
	    && preload_same_addr(&p->local, local));
}

/*
 * preload_peer_find - the entry for the socket of FD (real peer REAL,
 * local address LOCAL); lock held. Its own descriptor's entry, or, for
 * a dup()ed descriptor, the latest entry of the same socket, which FD
 * then gets a copy of: found at once next time, and kept when the
 * descriptor it was accepted on is closed and its number reused.
 */
static struct preload_peer *preload_peer_find(int fd, const union addr_sockaddr *real,
					              const union addr_sockaddr *local)
{
    struct preload_peer *best = NULL, *p;
    dev_t   dev;
    ino_t   ino;

    if (!preload_socket_id(fd, &dev, &ino))
	return (NULL);
    if (fd < preload_npeers && preload_same_peer(preload_peers[fd], dev, ino, real, local))
	return (preload_peers[fd]);
    for (int i = 0; i < preload_npeers + preload_nmoved; i++) {
	p = i < preload_npeers ? preload_peers[i] : preload_moved[i - preload_npeers];
	if (preload_same_peer(p, dev, ino, real, local) && (best == NULL || p->seq > best->seq))
	    best = p;
    }
    if (best == NULL || (p = preload_slot_for(fd)) == NULL)
	return (best);
    *p = *best;
    return (p);
}

/* preload_peer_of - the client of FD's socket, or NULL (not accepted here); lock held */

const union addr_sockaddr *preload_peer_of(int fd, const union addr_sockaddr *real,
					           const union addr_sockaddr *local)
{
    struct preload_peer *p = preload_peer_find(fd, real, local);

    return (p ? &p->client : NULL);
}
