/*
 * NAME
 *	proxy_load 1
 * SUMMARY
 *	throughput and connection-rate load for PROXY protocol proxies
 * SYNOPSIS
 *	t/bench/proxy_load -m stream|connect -t target_port -b backend_port
 *		[-H v2|v1|none] [-c connections] [-d seconds] [-w warmup]
 * DESCRIPTION
 *	One process plays both ends on 127.0.0.1: a client that connects
 *	to target_port (the proxy under test, or the backend itself for
 *	the no-proxy baseline) and a backend sink on backend_port.
 *
 *	Every client connection starts with a PROXY header (unless -H
 *	none) claiming a different client in 198.51.100.0/24 with a random
 *	port, so that a transparent proxy's spoofed connections never
 *	collide.
 *
 *	stream: -c connections each write 64 KB chunks as fast as the
 *	proxy takes them; the sink counts what arrives. Prints MB/s
 *	measured at the sink after the warm-up.
 *
 *	connect: -c connections in flight; each sends its header and one
 *	byte, the sink answers one byte and closes, the client counts the
 *	connection and opens the next (closing with a reset, so the
 *	client side leaves no TIME_WAIT). Prints connections per second.
 * DIAGNOSTICS
 *	Exit status 1 with a message when the target refuses or nothing
 *	was transferred.
 */

#define _GNU_SOURCE
#include "build_config.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "proxy_header.h"

#define CHUNK (64 * 1024)

static int opt_connect_mode, opt_conns = 50, opt_seconds = 10, opt_warmup = 2;
static int opt_target, opt_backend, opt_header = 2;
static atomic_llong sink_bytes, client_done;
static atomic_int stop;

static double now_s(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (ts.tv_sec + ts.tv_nsec / 1e9);
}

static void die(const char *what)
{
    fprintf(stderr, "proxy_load: %s: %s\n", what, strerror(errno));
    exit(1);
}

static int listen_on(int port)
{
    union addr_sockaddr sa = {.in = {.sin_family = AF_INET, .sin_port = htons(port)}};
    int     fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0), one = 1;

    sa.in.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (bind(fd, &sa.sa, sizeof(sa.in)) < 0 || listen(fd, 4096) < 0)
	die("sink listen");
    return (fd);
}

/* sink - the backend: count bytes; in connect mode answer and close */

static void *sink(void *unused)
{
    static char buf[256 * 1024];
    struct epoll_event ev, events[256];
    int     lfd = listen_on(opt_backend), ep = epoll_create1(0);

    ev.events = EPOLLIN;
    ev.data.fd = lfd;
    epoll_ctl(ep, EPOLL_CTL_ADD, lfd, &ev);
    while (!atomic_load(&stop)) {
	int     n = epoll_wait(ep, events, 256, 100);

	for (int i = 0; i < n; i++) {
	    int     fd = events[i].data.fd, c;
	    ssize_t got;

	    if (fd == lfd) {
		while ((c = accept4(lfd, NULL, NULL, SOCK_NONBLOCK)) >= 0) {
		    ev.events = EPOLLIN;
		    ev.data.fd = c;
		    epoll_ctl(ep, EPOLL_CTL_ADD, c, &ev);
		}
		continue;
	    }
	    while ((got = read(fd, buf, sizeof(buf))) > 0) {
		atomic_fetch_add(&sink_bytes, got);
		if (opt_connect_mode) {
		    if (write(fd, "y", 1) < 0) {
			/* the client is gone; nothing to count */
		    }
		    got = 0;
		    break;
		}
	    }
	    if (got == 0 || (got < 0 && errno != EAGAIN)) {
		epoll_ctl(ep, EPOLL_CTL_DEL, fd, NULL);
		close(fd);
	    }
	}
    }
    return (unused);
}

/* client_open - connect and send the header (and one byte in connect mode) */

static int client_open(void)
{
    union addr_sockaddr sa = {.in = {.sin_family = AF_INET, .sin_port = htons(opt_target)}};
    struct proxy_header h;
    unsigned char hdr[256];
    size_t  n = 0;
    int     fd = socket(AF_INET, SOCK_STREAM, 0), one = 1;

    sa.in.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    if (connect(fd, &sa.sa, sizeof(sa.in)) < 0)
	die("connect to the target");
    memset(&h, 0, sizeof(h));
    h.family = AF_INET;
    h.src.in.sin_family = h.dst.in.sin_family = AF_INET;
    h.src.in.sin_addr.s_addr = htonl(0xC6336400 | (1 + rand() % 250));	/* 198.51.100.x */
    h.src.in.sin_port = htons(1024 + rand() % 64000);
    h.dst.in.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    h.dst.in.sin_port = htons(opt_target);
    if (opt_header == 2)
	n = proxy_build_v2(&h, 0, hdr, sizeof(hdr));
    else if (opt_header == 1)
	n = proxy_build_v1(&h, (char *) hdr, sizeof(hdr));
    if (opt_connect_mode)
	hdr[n++] = 'x';
    if (n && write(fd, hdr, n) != (ssize_t) n)
	die("header write");
    return (fd);
}

static void *client_stream(void *unused)
{
    static char chunk[CHUNK];
    int     ep = epoll_create1(0);
    struct epoll_event ev, events[256];

    for (int i = 0; i < opt_conns; i++) {
	int     fd = client_open();

	fcntl(fd, F_SETFL, O_NONBLOCK);
	ev.events = EPOLLOUT;
	ev.data.fd = fd;
	epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev);
    }
    while (!atomic_load(&stop)) {
	int     n = epoll_wait(ep, events, 256, 100);

	for (int i = 0; i < n; i++)
	    while (write(events[i].data.fd, chunk, sizeof(chunk)) > 0)
		 /* keep the pipe full */ ;
    }
    return (unused);
}

static void client_connect(void)
{
    struct linger reset = {1, 0};
    char    answer;

    /* One blocking loop per thread keeps -c connections in flight. */
    while (!atomic_load(&stop)) {
	int     fd = client_open();

	if (read(fd, &answer, 1) == 1)
	    atomic_fetch_add(&client_done, 1);
	setsockopt(fd, SOL_SOCKET, SO_LINGER, &reset, sizeof(reset));
	close(fd);
    }
}

static void *client_thread(void *unused)
{
    srand((unsigned) (time(NULL) ^ (long) pthread_self()));
    client_connect();
    return (unused);
}

int     main(int argc, char **argv)
{
    pthread_t sink_thread, *threads = NULL;
    long long bytes0, done0;
    double  t0;
    int     ch;

    while ((ch = getopt(argc, argv, "m:t:b:H:c:d:w:")) > 0) {
	switch (ch) {
	case 'm': opt_connect_mode = strcmp(optarg, "connect") == 0; break;
	case 't': opt_target = atoi(optarg); break;
	case 'b': opt_backend = atoi(optarg); break;
	case 'H': opt_header = strcmp(optarg, "v2") == 0 ? 2 : strcmp(optarg, "v1") == 0; break;
	case 'c': opt_conns = atoi(optarg); break;
	case 'd': opt_seconds = atoi(optarg); break;
	case 'w': opt_warmup = atoi(optarg); break;
	default:
	    fprintf(stderr, "usage: proxy_load -m stream|connect -t port -b port "
		    "[-H v2|v1|none] [-c conns] [-d seconds] [-w warmup]\n");
	    return (2);
	}
    }
    pthread_create(&sink_thread, NULL, sink, NULL);
    usleep(200000);
    if (opt_connect_mode) {
	threads = calloc(opt_conns, sizeof(*threads));
	for (int i = 0; i < opt_conns; i++)
	    pthread_create(&threads[i], NULL, client_thread, NULL);
    } else {
	pthread_t t;

	pthread_create(&t, NULL, client_stream, NULL);
	pthread_detach(t);
    }
    sleep(opt_warmup);
    bytes0 = atomic_load(&sink_bytes);
    done0 = atomic_load(&client_done);
    t0 = now_s();
    sleep(opt_seconds);
    double  secs = now_s() - t0;
    long long bytes = atomic_load(&sink_bytes) - bytes0, done = atomic_load(&client_done) - done0;

    atomic_store(&stop, 1);
    if (opt_connect_mode) {
	printf("mode=connect conns=%d seconds=%.2f conn_per_s=%.0f\n", opt_conns, secs, done / secs);
	if (done == 0)
	    return (1);
    } else {
	printf("mode=stream conns=%d seconds=%.2f MBps=%.1f\n", opt_conns, secs,
	       bytes / secs / 1e6);
	if (bytes == 0)
	    return (1);
    }
    fflush(stdout);
    _exit(0);					/* threads may sit in connect/read */
}
