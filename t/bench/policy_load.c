/*
 * NAME
 *	policy_load 1
 * SUMMARY
 *	load generator for Postfix policy services
 * SYNOPSIS
 *	policy_load [-c connections] [-d seconds] [-w warmup_seconds]
 *		[-k keys] [-r requests_per_second] host port
 *	policy_load [options] /path/to/unix/socket
 * DESCRIPTION
 *	Opens persistent connections, as Postfix's smtpd processes do, and
 *	keeps one request in flight on each. Every connection replays
 *	SMTP transactions: 1-3 RCPT requests, DATA and END-OF-MESSAGE,
 *	each with a fresh instance, a SASL user and a client address drawn
 *	from "keys" distinct values (half the transactions unauthenticated),
 *	real-looking attributes (about 30 per request, as Postfix 3.7
 *	sends).
 *
 *	Without -r, each connection sends its next request as soon as the
 *	answer arrives (closed loop: measures capacity; latency is then
 *	mostly queueing, connections/throughput). With -r, the connections
 *	together offer that many requests per second on a fixed schedule
 *	(latency at a given load, as Postfix's smtpd processes see it);
 *	latency counts from the scheduled send time, so a server that falls
 *	behind is charged for the wait.
 *
 *	Each connection writes its request with one write() and reads the
 *	answer from a persistent read event (one read() per answer): with
 *	bufferevents every request also cost two epoll_ctl() calls and an
 *	ioctl(FIONREAD), and the generator shares the cores with the server
 *	it measures, so its own syscalls were taken from the server's share.
 *
 *	After the warm-up, prints one line:
 *	decisions=N seconds=S rate=R p50_us=A p90_us=B p99_us=C max_us=D
 *	dunno=N other=N errors=N
 * DIAGNOSTICS
 *	Exits 1 when it cannot connect or a connection closes.
 */

#include "build_config.h"

#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <arpa/inet.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <event2/event.h>

#define HIST_BUCKETS	200000		/* 1 us buckets up to 200 ms */

struct client {
    int     fd;
    struct event *read;			/* persistent */
    char    in[1024];			/* the answer so far */
    size_t  in_len;
    unsigned long long txn;		/* transaction counter */
    int     step;			/* 0..rcpts-1 RCPT, then DATA, EOM */
    int     rcpts;
    unsigned user;
    unsigned seed;
    double  sent_at;
    double  next_at;			/* paced mode: scheduled send time */
    struct event *pace;
};

static struct event_base *base;
static unsigned long long *histogram;
static unsigned long long decisions, dunno, other, errors, too_slow;
static int measuring, keys = 10000;
static double interval_us;		/* paced mode: per connection */
static double max_latency;

static double now_us(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (ts.tv_sec * 1e6 + ts.tv_nsec / 1e3);
}

static void send_request(struct client *c)
{
    char    out[2048];
    const char *state;
    int     len;
    ssize_t n = 0;
    char    user[32] = "";
    int     authenticated;

    if (c->step == 0) {
	c->rcpts = 1 + rand_r(&c->seed) % 3;
	c->user = rand_r(&c->seed) % keys;
    }
    if ((authenticated = c->user % 2 == 0) != 0)
	snprintf(user, sizeof(user), "svc-%u", c->user);
    state = c->step < c->rcpts ? "RCPT" : c->step == c->rcpts ? "DATA" : "END-OF-MESSAGE";
    len = snprintf(out, sizeof(out),
			"request=smtpd_access_policy\nprotocol_state=%s\nprotocol_name=ESMTP\n"
			"client_address=10.%u.%u.%u\nclient_name=host%u.example.net\n"
			"client_port=%u\nreverse_client_name=host%u.example.net\n"
			"server_address=192.0.2.25\nserver_port=587\n"
			"helo_name=host%u.example.net\nsender=svc%u@planapulse.ai\n"
			"recipient=rcpt%d@example.org\nrecipient_count=%d\n"
			"queue_id=%s\ninstance=%llx.%p\nsize=%u\netrn_domain=\nstress=\n"
			"sasl_method=%s\nsasl_username=%s\nsasl_sender=\n"
			"ccert_subject=\nccert_issuer=\nccert_fingerprint=\n"
			"ccert_pubkey_fingerprint=\nencryption_protocol=TLSv1.3\n"
			"encryption_cipher=TLS_AES_256_GCM_SHA384\nencryption_keysize=256\n"
			"policy_context=\ncompatibility_level=3.6\nmail_version=3.7.11\n\n",
			state, (c->user >> 16) & 255, (c->user >> 8) & 255, c->user & 255,
			c->user, 40000 + c->user % 20000, c->user, c->user, c->user,
			c->step, c->step < c->rcpts ? 0 : c->rcpts,
			c->step < c->rcpts ? "" : "4Xyz1234", c->txn, (void *) c,
			2000 + c->user % 50000, authenticated ? "plain" : "", user);
    /* one request in flight: the socket's buffer is empty, it all fits */
    if (len <= 0 || len >= (int) sizeof(out)
	|| (n = write(c->fd, out, len)) != len) {
	fprintf(stderr, "policy_load: write: %s\n", len > 0 && n < 0 ? strerror(errno)
		: "short write");
	exit(1);
    }
    c->sent_at = now_us();
    if (interval_us > 0 && c->next_at < c->sent_at)
	c->sent_at = c->next_at;		/* late: the wait counts */
}

static void on_pace(evutil_socket_t fd, short what, void *context)
{
    send_request(context);
}

/* schedule - the next request now (closed loop) or at its slot (paced) */

static void schedule(struct client *c)
{
    double  now, wait;
    struct timeval tv;

    if (interval_us <= 0) {
	send_request(c);
	return;
    }
    c->next_at += interval_us;
    now = now_us();
    if (c->next_at < now - 1e6)		/* hopelessly behind: rebase */
	c->next_at = now;
    if ((wait = c->next_at - now) <= 0) {
	send_request(c);
	return;
    }
    tv.tv_sec = (long) (wait / 1e6);
    tv.tv_usec = (long) wait % 1000000;
    evtimer_add(c->pace, &tv);
}

/* on_answer - one whole answer ("...\n\n") arrived */

static void on_answer(struct client *c, const char *reply)
{
    double  latency = now_us() - c->sent_at;

    if (measuring) {
	decisions++;
	if (strncmp(reply, "action=DUNNO", 12) == 0 || strncmp(reply, "action=dunno", 12) == 0)
	    dunno++;
	else if (strncmp(reply, "action=", 7) == 0)
	    other++;
	else
	    errors++;
	if (latency < 0)
	    latency = 0;
	if (latency >= HIST_BUCKETS)
	    too_slow++;
	else
	    histogram[(int) latency]++;
	if (latency > max_latency)
	    max_latency = latency;
    }
    if (++c->step > c->rcpts + 1) {
	c->step = 0;
	c->txn++;
    }
    schedule(c);
}

static void on_read(evutil_socket_t fd, short what, void *context)
{
    struct client *c = context;
    ssize_t n;
    char   *end;

    n = read(fd, c->in + c->in_len, sizeof(c->in) - 1 - c->in_len);
    if (n < 0 && (errno == EAGAIN || errno == EINTR))
	return;
    if (n <= 0) {
	fprintf(stderr, "policy_load: connection %s\n", n == 0 ? "closed by the server"
		: strerror(errno));
	exit(1);
    }
    c->in_len += n;
    c->in[c->in_len] = 0;
    /* one request in flight: at most one answer, nothing after it */
    if ((end = strstr(c->in, "\n\n")) == NULL) {
	if (c->in_len >= sizeof(c->in) - 1) {
	    fprintf(stderr, "policy_load: answer longer than %zu bytes\n", sizeof(c->in));
	    exit(1);
	}
	return;
    }
    if (end + 2 != c->in + c->in_len) {
	fprintf(stderr, "policy_load: data after the answer\n");
	exit(1);
    }
    c->in_len = 0;
    on_answer(c, c->in);
}

/* connect_to - a blocking connect (start-up only), then non-blocking */

static int connect_to(const struct sockaddr *sa, socklen_t len)
{
    int     fd;

    if ((fd = socket(sa->sa_family, SOCK_STREAM, 0)) < 0 || connect(fd, sa, len) < 0) {
	perror("policy_load: connect");
	exit(1);
    }
    fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
    return (fd);
}

static void on_phase(evutil_socket_t fd, short what, void *context)
{
    int    *phase = context;

    if ((*phase)++ == 0) {
	measuring = 1;
	return;
    }
    event_base_loopbreak(base);
}

static double percentile(double p)
{
    unsigned long long want = (unsigned long long) (p * (decisions - errors)), seen = 0;

    for (int i = 0; i < HIST_BUCKETS; i++)
	if ((seen += histogram[i]) > want)
	    return (i);
    return (HIST_BUCKETS);
}

int     main(int argc, char **argv)
{
    int     conns = 200, seconds = 10, warmup = 2, ch, phase = 0;
    double  rate = 0;
    union {
	struct sockaddr sa;
	struct sockaddr_in in;
	struct sockaddr_un un;
    } addr;
    socklen_t addr_len;
    struct timeval tv;
    struct event *w, *d;
    double  started;

    while ((ch = getopt(argc, argv, "c:d:k:r:w:")) > 0) {
	switch (ch) {
	case 'c':
	    conns = atoi(optarg);
	    break;
	case 'd':
	    seconds = atoi(optarg);
	    break;
	case 'k':
	    keys = atoi(optarg);
	    break;
	case 'r':
	    rate = atof(optarg);
	    break;
	case 'w':
	    warmup = atoi(optarg);
	    break;
	default:
	    fprintf(stderr, "usage: policy_load [-c conns] [-d secs] [-w secs] [-k keys] "
		    "[-r rate] host port\n");
	    return (2);
	}
    }
    if (argc - optind != 2 - (optind < argc && argv[optind][0] == '/')
	|| conns <= 0 || keys <= 0) {
	fprintf(stderr, "usage: policy_load [-c conns] [-d secs] [-w secs] [-k keys] "
		"[-r rate] host port | /unix/socket\n");
	return (2);
    }
    histogram = calloc(HIST_BUCKETS, sizeof(*histogram));
    interval_us = rate > 0 ? conns * 1e6 / rate : 0;
    {
	struct event_config *ec = event_config_new();

	/* timerfd: epoll's millisecond timeouts would bunch paced sends */
	event_config_set_flag(ec, EVENT_BASE_FLAG_PRECISE_TIMER);
	base = event_base_new_with_config(ec);
	event_config_free(ec);
    }
    memset(&addr, 0, sizeof(addr));
    if (argv[optind][0] == '/') {
	if (strlen(argv[optind]) >= sizeof(addr.un.sun_path)) {
	    fprintf(stderr, "policy_load: socket path too long: %s\n", argv[optind]);
	    return (2);
	}
	addr.un.sun_family = AF_UNIX;
	strcpy(addr.un.sun_path, argv[optind]);
	addr_len = sizeof(addr.un);
    } else {
	addr.in.sin_family = AF_INET;
	addr.in.sin_port = htons(atoi(argv[optind + 1]));
	if (inet_pton(AF_INET, argv[optind], &addr.in.sin_addr) != 1) {
	    fprintf(stderr, "policy_load: bad IPv4 address %s\n", argv[optind]);
	    return (2);
	}
	addr_len = sizeof(addr.in);
    }
    for (int i = 0; i < conns; i++) {
	struct client *c = calloc(1, sizeof(*c));

	c->seed = 12345 + i;
	c->pace = evtimer_new(base, on_pace, c);
	c->next_at = now_us() + (interval_us > 0 ? interval_us * i / conns : 0);
	c->fd = connect_to(&addr.sa, addr_len);
	c->read = event_new(base, c->fd, EV_READ | EV_PERSIST, on_read, c);
	event_add(c->read, NULL);
	c->next_at -= interval_us;
	schedule(c);
    }
    w = evtimer_new(base, on_phase, &phase);
    d = evtimer_new(base, on_phase, &phase);
    tv.tv_sec = warmup, tv.tv_usec = 0;
    evtimer_add(w, &tv);
    tv.tv_sec = warmup + seconds;
    evtimer_add(d, &tv);
    event_base_dispatch(base);
    started = seconds;
    printf("decisions=%llu seconds=%.0f rate=%.0f p50_us=%.0f p90_us=%.0f p99_us=%.0f "
	   "max_us=%.0f dunno=%llu other=%llu errors=%llu\n", decisions, started,
	   decisions / started, percentile(0.50), percentile(0.90), percentile(0.99),
	   max_latency, dunno, other, errors);
    return (errors ? 1 : 0);
}
