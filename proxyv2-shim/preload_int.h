#ifndef PROXYV2_SHIM_PRELOAD_INT_H
#define PROXYV2_SHIM_PRELOAD_INT_H

/*
 * preload_int.h - what preload.c (accept(), getpeername()) and
 * preload_wake.c (parked connections, the helper thread, wake-ups)
 * share. Nothing here is exported from the module: the link exports
 * accept, accept4 and getpeername only.
 */

#include <pthread.h>
#include <sys/socket.h>
#include <sys/types.h>

#include "addr.h"
#include "proxy_header.h"

#define PRELOAD_MAX_PENDING	1024
#define PRELOAD_WAKES		8	/* wake-ups at once, at most */

struct preload_parked {
    int     fd;
    union addr_sockaddr peer;
    struct proxy_reader reader;
    long long deadline_ms;
};

struct preload_ready {
    int     fd;
    union addr_sockaddr client;
    long long deadline_ms;		/* not accepted by then: closed */
    long long since_ms;			/* ready since */
};

struct preload_listener {
    int     fd;				/* 0: slot free; else the last used + 1 */
    dev_t   dev;			/* the socket itself, under any */
    ino_t   ino;			/* descriptor (dup(), dup2()) */
    union addr_sockaddr self;		/* where wake-up connections go */
    socklen_t self_len;
    struct preload_parked parked[PRELOAD_MAX_PENDING];
    int     nparked;
    struct preload_ready ready[PRELOAD_MAX_PENDING];
    int     nready;
    long long rewake_ms;		/* ready ones wait: wake again then */
    int     rewake_step;
    struct preload_wake_sock {
	int     fd;
	int     pending;		/* connecting: the mark not sent yet */
    }       wakes[PRELOAD_WAKES];	/* wake-ups not yet taken */
    int     nwakes;
    int     lost;			/* rounds of wake-ups siblings took */
    int     wake_said;			/* "cannot wake the server" said */
    int     wake_reached;		/* a wake-up connected since ready ones wait */
};


/* preload.c: settings, the listener table, the helper's wake-up pipe */
extern pthread_mutex_t preload_lock;
extern long long preload_timeout_ms;
extern struct preload_listener **preload_listeners;
extern int preload_nlisteners;
extern int preload_kick[2];
extern int preload_helper_started;
extern int preload_inline;		/* PROXYV2_WAIT = inline */

long long preload_now_ms(void);
void    preload_log(const char *fmt,...) __attribute__((format(printf, 1, 2)));
const char *preload_client(struct proxy_header *hdr, int listener_family,
			           const union addr_sockaddr *peer, union addr_sockaddr *client);

int     preload_same_addr(const union addr_sockaddr *a, const union addr_sockaddr *b);

/* preload_peer.c: the clients of accepted sockets; preload_lock held */
void    preload_remember(int fd, const union addr_sockaddr *client,
			         const union addr_sockaddr *balancer);
void    preload_forget(int fd);
const union addr_sockaddr *preload_peer_of(int fd, const union addr_sockaddr *real,
					           const union addr_sockaddr *local);

/* preload_wake.c */
int     preload_listener_alive(struct preload_listener *l);
void    preload_listener_gone(struct preload_listener *l);
#define PRELOAD_KEY_LEN		16	/* wake-up key, random */
int     preload_wake_key_init(void);
#define PRELOAD_WAKE_OURS	1	/* preload_is_wake(), preload_peek_mark() */
#define PRELOAD_WAKE_SIBLING	2

int     preload_is_wake(const struct preload_listener *l, const union addr_sockaddr *peer,
			        const struct proxy_reader *reader, const struct proxy_header *hdr);
int     preload_peek_mark(const struct preload_listener *l, const union addr_sockaddr *peer,
			          int fd);
int     preload_helper_ok(void);
void    preload_park(struct preload_listener *l, int fd, const union addr_sockaddr *peer,
		             struct proxy_reader *reader, long long deadline_ms);

#endif
