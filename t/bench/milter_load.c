/*
 * NAME
 *	milter_load 1
 * SUMMARY
 *	milter protocol load driver and one-message client
 * SYNOPSIS
 *	t/bench/milter_load -s SOCKET [-c conns] [-n messages] [-m per_conn]
 *		[-f from] [-l body_bytes] [-a auth_user] [-A client_addr]
 *		[-X header_bytes] [-w file]
 * DESCRIPTION
 *	milter_load speaks the Sendmail milter protocol (version 6) to a
 *	milter the way Postfix does: option negotiation honouring the
 *	milter's "no such step" and "no reply" flags, macros, CONNECT,
 *	HELO, then per message MAIL, RCPT, DATA, headers, EOH, body
 *	chunks and end-of-message, collecting header modifications.
 *
 *	-c connections run in parallel (one thread each, blocking
 *	sockets: the driver must not be the bottleneck of a milter that
 *	does RSA signing); each connection carries -m messages before it
 *	quits and reconnects.
 *
 *	It prints one line:
 *	messages=N seconds=S rate=R p50_ms=P p99_ms=Q signed=K tempfail=T
 *	rejected=R where latency is from MAIL to the final end-of-message
 *	reply and "signed" counts messages that got a DKIM-Signature.
 *
 *	-w FILE writes the last message as the MTA would deliver it after
 *	the milter's header changes (CRLF), so a test can verify it with
 *	a DKIM implementation nobody here wrote.
 *
 *	-X adds about that many bytes of X-Filler headers (1,000 bytes
 *	each; not written by -w), to drive a milter's header limits.
 *
 *	SOCKET is libmilter syntax: inet:PORT@HOST or unix:PATH.
 * DIAGNOSTICS
 *	Exit status 1 and a message on stderr on any connection or
 *	protocol error; 0 otherwise.
 */

#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

/* Protocol flags (libmilter's mfapi.h values; the driver must not need
 * the milter headers to build). */
#define P_NOCONNECT	0x1
#define P_NOHELO	0x2
#define P_NOMAIL	0x4
#define P_NORCPT	0x8
#define P_NOBODY	0x10
#define P_NOHDRS	0x20
#define P_NOEOH		0x40
#define P_NR_HDR	0x80
#define P_NODATA	0x200
#define P_SKIP		0x400
#define P_NR_CONN	0x1000
#define P_NR_HELO	0x2000
#define P_NR_MAIL	0x4000
#define P_NR_RCPT	0x8000
#define P_NR_DATA	0x10000
#define P_NR_EOH	0x40000
#define P_NR_BODY	0x80000
#define P_HDR_LEADSPC	0x100000
#define P_OFFERED	0x1FFFFF

#define BODY_CHUNK	65535
#define MAX_PACKET	(1024 * 1024)
#define MAX_HEADERS	64

struct options {
    const char *socket;
    int     conns;
    long    messages;
    int     per_conn;
    const char *from;
    long    body_bytes;
    const char *auth_user;
    const char *client_addr;
    const char *write_file;
    long    filler_bytes;
};

struct header {
    char   *name;
    char   *value;			/* with its leading space */
};

struct message {
    struct header headers[MAX_HEADERS];
    int     count;
    int     signed_;
};

struct worker {
    pthread_t thread;
    const struct options *opt;
    long    first;			/* message number of its first message */
    long    messages;
    double *latency_ms;
    long    signed_, tempfail, rejected;
    struct message last;
    int     last_valid;
};

static char *body_text;
static size_t body_len;

static void die(const char *fmt,...)
{
    va_list ap;

    va_start(ap, fmt);
    fprintf(stderr, "milter_load: ");
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\n");
    va_end(ap);
    exit(1);
}

static double now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

/* milter_load_connect - open the libmilter-syntax socket */

static int milter_load_connect(const char *spec)
{
    int     fd;

    if (strncmp(spec, "unix:", 5) == 0 || strncmp(spec, "local:", 6) == 0) {
	union {
	    struct sockaddr sa;
	    struct sockaddr_un un;
	}       addr = {.un = {.sun_family = AF_UNIX}};

	snprintf(addr.un.sun_path, sizeof(addr.un.sun_path), "%s", strchr(spec, ':') + 1);
	if ((fd = socket(AF_UNIX, SOCK_STREAM, 0)) < 0
	    || connect(fd, &addr.sa, sizeof(addr.un)) < 0)
	    die("connect %s: %s", spec, strerror(errno));
	return fd;
    }
    if (strncmp(spec, "inet:", 5) == 0 || strncmp(spec, "inet6:", 6) == 0) {
	char    port[16], host[256];
	struct addrinfo hints = {.ai_socktype = SOCK_STREAM}, *res;
	if (sscanf(strchr(spec, ':') + 1, "%15[0-9]@%255s", port, host) != 2)
	    die("bad socket %s: want inet:PORT@HOST", spec);
	if (getaddrinfo(host, port, &hints, &res) != 0)
	    die("cannot resolve %s", host);
	if ((fd = socket(res->ai_family, SOCK_STREAM, 0)) < 0
	    || connect(fd, res->ai_addr, res->ai_addrlen) < 0)
	    die("connect %s: %s", spec, strerror(errno));
	freeaddrinfo(res);
	/* No TCP_NODELAY here: Postfix sets none on its milter connections
	 * either, so a milter that stalls in Nagle shows in the figures. */
	return fd;
    }
    die("bad socket %s: want inet:PORT@HOST or unix:PATH", spec);
    return -1;
}

static void write_all(int fd, const void *buf, size_t len)
{
    const char *p = buf;

    while (len > 0) {
	ssize_t n = write(fd, p, len);

	if (n < 0 && errno == EINTR)
	    continue;
	if (n <= 0)
	    die("write: %s", n < 0 ? strerror(errno) : "short write");
	p += n;
	len -= n;
    }
}

static void read_all(int fd, void *buf, size_t len)
{
    char   *p = buf;

    while (len > 0) {
	ssize_t n = read(fd, p, len);

	if (n < 0 && errno == EINTR)
	    continue;
	if (n <= 0)
	    die("read: %s", n < 0 ? strerror(errno) : "milter closed the connection");
	p += n;
	len -= n;
    }
}

/* milter_load_send - one packet: length, command, data */

static void milter_load_send(int fd, char cmd, const void *data, size_t len)
{
    char    head[5];
    uint32_t n = htonl((uint32_t) len + 1);

    memcpy(head, &n, 4);
    head[4] = cmd;
    if (len == 0) {
	write_all(fd, head, 5);
	return;
    }
    /* One write per packet, as Postfix's buffered stream does. */
    char   *pkt = malloc(len + 5);

    if (pkt == 0)
	die("out of memory");
    memcpy(pkt, head, 5);
    memcpy(pkt + 5, data, len);
    write_all(fd, pkt, len + 5);
    free(pkt);
}

/* milter_load_recv - one packet; returns the command, data in buf */

static char milter_load_recv(int fd, char *buf, size_t *len)
{
    uint32_t n;
    char    cmd;

    read_all(fd, &n, 4);
    n = ntohl(n);
    if (n < 1 || n > MAX_PACKET)
	die("bad reply length %u", n);
    read_all(fd, &cmd, 1);
    *len = n - 1;
    read_all(fd, buf, *len);
    buf[*len] = 0;
    return cmd;
}

/* Strings joined with NUL separators, the milter argument format. */

struct args {
    char    buf[4096];
    size_t  len;
};

static void args_add(struct args *a, const char *s)
{
    size_t  n = strlen(s) + 1;

    if (a->len + n > sizeof(a->buf))
	die("argument list too long");
    memcpy(a->buf + a->len, s, n);
    a->len += n;
}

static void send_macros(int fd, char stage, const char *const *pairs)
{
    struct args a = {.len = 0};

    a.buf[a.len++] = stage;
    for (; *pairs; pairs++)
	args_add(&a, *pairs);
    milter_load_send(fd, 'D', a.buf, a.len);
}

/* message_apply - apply one header modification to the message copy */

static void message_apply(struct message *m, char cmd, const char *data, size_t len,
			          int leadspc)
{
    char   *copy;

    uint32_t index = 0;
    const char *name, *value;

    if (cmd == 'i' || cmd == 'm') {
	if (len < 4)
	    die("short header modification");
	memcpy(&index, data, 4);
	index = ntohl(index);
	data += 4;
    }
    name = data;
    value = name + strlen(name) + 1;
    if (value > data + len)
	die("malformed header modification");
    /* Without SMFIP_HDR_LEADSPC the milter's value has no leading space. */
    if (asprintf(&copy, "%s%s", leadspc ? "" : " ", value) < 0)
	die("out of memory");
    if (strcasecmp(name, "DKIM-Signature") == 0 && cmd != 'm')
	m->signed_ = 1;
    if (cmd == 'm') {				/* index-th occurrence, 1-based */
	for (int i = 0; i < m->count; i++)
	    if (strcasecmp(m->headers[i].name, name) == 0 && --index == 0) {
		free(m->headers[i].value);
		m->headers[i].value = copy;
		return;
	    }
	free(copy);
	return;
    }
    if (m->count == MAX_HEADERS)
	die("too many headers");
    if (cmd == 'h' || index > (uint32_t) m->count)
	index = m->count;
    memmove(m->headers + index + 1, m->headers + index,
	    (m->count - index) * sizeof(struct header));
    m->headers[index].name = strdup(name);
    m->headers[index].value = copy;
    m->count++;
}

static void message_free(struct message *m)
{
    for (int i = 0; i < m->count; i++) {
	free(m->headers[i].name);
	free(m->headers[i].value);
    }
    m->count = 0;
    m->signed_ = 0;
}

/* reply_wait - read replies to one step; return the final one */

static char reply_wait(int fd, struct message *m, int end_of_message, int leadspc)
{
    static __thread char buf[MAX_PACKET + 1];
    size_t  len;
    char    cmd;

    for (;;) {
	cmd = milter_load_recv(fd, buf, &len);
	switch (cmd) {
	case 'p':				/* progress */
	    continue;
	case 'h': case 'i': case 'm':
	    if (!end_of_message)
		die("header modification before end of message");
	    message_apply(m, cmd, buf, len, leadspc);
	    continue;
	case 'b': case '+': case '-': case 'e': case 'f': case 'q': case 'l':
	    continue;				/* body/envelope changes: ignored */
	case 'y':				/* reply code: 4xx or 5xx */
	    return buf[0] == '4' ? 't' : 'r';
	case 'c': case 'a': case 'r': case 't': case 'd': case 's':
	    return cmd;
	default:
	    die("unexpected reply '%c'", cmd);
	}
    }
}

struct session {
    int     fd;
    uint32_t proto;			/* the milter's protocol flags */
    struct worker *w;
};

/* step - send one step unless the milter opted out; wait if it replies */

static char step(struct session *s, char cmd, const void *data, size_t len,
		         uint32_t no_flag, uint32_t nr_flag)
{
    if (s->proto & no_flag)
	return 'c';
    milter_load_send(s->fd, cmd, data, len);
    if (s->proto & nr_flag)
	return 'c';
    return reply_wait(s->fd, 0, 0, 0);
}

static void session_open(struct session *s, const struct options *opt)
{
    char    buf[MAX_PACKET + 1];
    uint32_t neg[3] = {htonl(6), htonl(0x1FF), htonl(P_OFFERED)};
    size_t  len;
    struct args a = {.len = 0};
    uint16_t port = htons(41234);

    s->fd = milter_load_connect(opt->socket);
    milter_load_send(s->fd, 'O', neg, sizeof(neg));
    if (milter_load_recv(s->fd, buf, &len) != 'O' || len < 12)
	die("bad option negotiation reply");
    memcpy(&s->proto, buf + 8, 4);
    s->proto = ntohl(s->proto);

    send_macros(s->fd, 'C', (const char *[]) {
	"j", "mx.bench.test", "{daemon_name}", "smtpd", "_", "client.test",
	"{client_addr}", opt->client_addr, 0});
    args_add(&a, "client.test");
    a.buf[a.len++] = strchr(opt->client_addr, ':') ? '6' : '4';
    memcpy(a.buf + a.len, &port, 2);
    a.len += 2;
    args_add(&a, opt->client_addr);
    if (step(s, 'C', a.buf, a.len, P_NOCONNECT, P_NR_CONN) != 'c')
	die("milter refused the connection");
    if (step(s, 'H', "client.test", 12, P_NOHELO, P_NR_HELO) != 'c')
	die("milter refused HELO");
}

static void header_add(struct message *m, const char *name, const char *fmt,...)
{
    char    value[1024];
    va_list ap;

    va_start(ap, fmt);
    value[0] = ' ';
    vsnprintf(value + 1, sizeof(value) - 1, fmt, ap);
    va_end(ap);
    m->headers[m->count].name = strdup(name);
    m->headers[m->count].value = strdup(value);
    m->count++;
}

static void message_build(struct message *m, const struct options *opt, long number)
{
    char    date[64];
    time_t  t = time(0);

    strftime(date, sizeof(date), "%a, %d %b %Y %H:%M:%S +0000", gmtime(&t));
    header_add(m, "From", "Bench <%s>", opt->from);
    header_add(m, "To", "bench@example.net");
    header_add(m, "Subject", "milter_load message %ld", number);
    header_add(m, "Date", "%s", date);
    header_add(m, "Message-ID", "<%ld.%ld@bench.test>", number, (long) t);
}

/* send_filler - X-Filler headers of 1,000 bytes up to about bytes */

static char send_filler(struct session *s, long bytes, int leadspc)
{
    char    buf[1100];
    size_t  len;
    char    r;

    memcpy(buf, "X-Filler", 9);
    len = 9;
    if (leadspc)
	buf[len++] = ' ';
    memset(buf + len, 'f', 990);
    len += 990;
    buf[len++] = 0;
    for (long sent = 0; sent < bytes; sent += 1000)
	if ((r = step(s, 'L', buf, len, P_NOHDRS, P_NR_HDR)) != 'c')
	    return r;
    return 'c';
}

/* send_message - one transaction; returns the final reply */

static char send_message(struct session *s, struct message *m, long number)
{
    const struct options *opt = s->w->opt;
    char    queue_id[32], mail[512], buf[2048];
    int     leadspc = (s->proto & P_HDR_LEADSPC) != 0;
    char    r;

    snprintf(queue_id, sizeof(queue_id), "B%010lX", number);
    snprintf(mail, sizeof(mail), "<%s>", opt->from);
    send_macros(s->fd, 'M', (const char *[]) {
	"i", queue_id, "{mail_addr}", opt->from,
	opt->auth_user ? "{auth_authen}" : 0, opt->auth_user, 0});
    if ((r = step(s, 'M', mail, strlen(mail) + 1, P_NOMAIL, P_NR_MAIL)) != 'c')
	return r;
    send_macros(s->fd, 'R', (const char *[]) {"{rcpt_addr}", "bench@example.net", 0});
    if ((r = step(s, 'R', "<bench@example.net>", 20, P_NORCPT, P_NR_RCPT)) != 'c')
	return r;
    if ((r = step(s, 'T', 0, 0, P_NODATA, P_NR_DATA)) != 'c')
	return r;
    message_build(m, opt, number);
    for (int i = 0; i < m->count; i++) {
	const char *value = m->headers[i].value + (leadspc ? 0 : 1);
	size_t  nlen = strlen(m->headers[i].name) + 1, vlen = strlen(value) + 1;

	memcpy(buf, m->headers[i].name, nlen);
	memcpy(buf + nlen, value, vlen);
	if ((r = step(s, 'L', buf, nlen + vlen, P_NOHDRS, P_NR_HDR)) != 'c')
	    return r;
    }
    if ((r = send_filler(s, opt->filler_bytes, leadspc)) != 'c')
	return r;
    if ((r = step(s, 'N', 0, 0, P_NOEOH, P_NR_EOH)) != 'c')
	return r;
    for (size_t off = 0; off < body_len; off += BODY_CHUNK) {
	size_t  n = body_len - off < BODY_CHUNK ? body_len - off : BODY_CHUNK;

	r = step(s, 'B', body_text + off, n, P_NOBODY, P_NR_BODY);
	if (r == 's')
	    break;
	if (r != 'c')
	    return r;
    }
    milter_load_send(s->fd, 'E', 0, 0);
    return reply_wait(s->fd, m, 1, leadspc);
}

static void *worker_run(void *arg)
{
    struct worker *w = arg;
    struct session s = {.w = w};
    struct message m = {.count = 0};
    long    done = 0;

    while (done < w->messages) {
	session_open(&s, w->opt);
	for (int i = 0; i < w->opt->per_conn && done < w->messages; i++, done++) {
	    double  t0 = now_ms();
	    char    r;

	    message_free(&m);
	    r = send_message(&s, &m, w->first + done);
	    w->latency_ms[done] = now_ms() - t0;
	    if (r == 't')
		w->tempfail++;
	    else if (r == 'r' || r == 'y' || r == 'd')
		w->rejected++;
	    if (r != 'a' && r != 'c')		/* transaction over early */
		milter_load_send(s.fd, 'A', 0, 0);
	    w->signed_ += m.signed_;
	}
	milter_load_send(s.fd, 'Q', 0, 0);
	close(s.fd);
    }
    w->last = m;
    w->last_valid = done > 0;
    return 0;
}

static void body_build(long bytes)
{
    static const char line[] = "The quick brown fox jumps over the lazy dog; "
    "0123456789 abcdefghijklmnopqrstu\r\n";
    size_t  n = sizeof(line) - 1;

    body_len = bytes < (long) n ? n : (size_t) bytes / n * n;
    if ((body_text = malloc(body_len)) == 0)
	die("out of memory");
    for (size_t off = 0; off < body_len; off += n)
	memcpy(body_text + off, line, n);
}

static void write_message(const char *path, const struct message *m)
{
    FILE   *fp = fopen(path, "wb");

    if (fp == 0)
	die("%s: %s", path, strerror(errno));
    for (int i = 0; i < m->count; i++)
	fprintf(fp, "%s:%s\r\n", m->headers[i].name, m->headers[i].value);
    fprintf(fp, "\r\n");
    fwrite(body_text, 1, body_len, fp);
    if (fclose(fp) != 0)
	die("%s: %s", path, strerror(errno));
}

static int cmp_double(const void *a, const void *b)
{
    double  x = *(const double *) a, y = *(const double *) b;

    return x < y ? -1 : x > y;
}

static void usage(void)
{
    die("usage: milter_load -s SOCKET [-c conns] [-n messages] [-m per_conn] "
	"[-f from] [-l body_bytes] [-a auth_user] [-A client_addr] [-X header_bytes] "
	"[-w file]");
}

int     main(int argc, char **argv)
{
    struct options opt = {.conns = 8, .messages = 1000, .per_conn = 100,
	.from = "noreply@planapulse.ai", .body_bytes = 2048,
    .client_addr = "127.0.0.1"};
    int     ch;

    while ((ch = getopt(argc, argv, "s:c:n:m:f:l:a:A:w:X:")) > 0) {
	switch (ch) {
	case 's': opt.socket = optarg; break;
	case 'c': opt.conns = atoi(optarg); break;
	case 'n': opt.messages = atol(optarg); break;
	case 'm': opt.per_conn = atoi(optarg); break;
	case 'f': opt.from = optarg; break;
	case 'l': opt.body_bytes = atol(optarg); break;
	case 'a': opt.auth_user = optarg; break;
	case 'A': opt.client_addr = optarg; break;
	case 'w': opt.write_file = optarg; break;
	case 'X': opt.filler_bytes = atol(optarg); break;
	default: usage();
	}
    }
    if (opt.socket == 0 || opt.conns < 1 || opt.messages < 1 || opt.per_conn < 1)
	usage();
    if (opt.conns > opt.messages)
	opt.conns = (int) opt.messages;
    body_build(opt.body_bytes);

    struct worker *w = calloc(opt.conns, sizeof(*w));
    double *lat = calloc(opt.messages, sizeof(double));
    double  t0 = now_ms(), seconds;
    long    first = 0, signed_ = 0, tempfail = 0, rejected = 0;

    if (w == 0 || lat == 0)
	die("out of memory");
    for (int i = 0; i < opt.conns; i++) {
	w[i].opt = &opt;
	w[i].first = first;
	w[i].messages = opt.messages / opt.conns + (i < opt.messages % opt.conns);
	w[i].latency_ms = lat + first;
	first += w[i].messages;
	if (pthread_create(&w[i].thread, 0, worker_run, w + i) != 0)
	    die("pthread_create failed");
    }
    for (int i = 0; i < opt.conns; i++) {
	pthread_join(w[i].thread, 0);
	signed_ += w[i].signed_;
	tempfail += w[i].tempfail;
	rejected += w[i].rejected;
    }
    seconds = (now_ms() - t0) / 1e3;
    if (opt.write_file && w[opt.conns - 1].last_valid)
	write_message(opt.write_file, &w[opt.conns - 1].last);
    qsort(lat, opt.messages, sizeof(double), cmp_double);
    printf("messages=%ld seconds=%.3f rate=%.1f p50_ms=%.3f p99_ms=%.3f "
	   "signed=%ld tempfail=%ld rejected=%ld\n", opt.messages, seconds,
	   opt.messages / seconds, lat[opt.messages / 2],
	   lat[(long) (opt.messages * 0.99)], signed_, tempfail, rejected);
    for (int i = 0; i < opt.conns; i++)
	message_free(&w[i].last);
    free(w);
    free(lat);
    free(body_text);
    return 0;
}
