/*
 * NAME
 *	proxy_reader 3
 * SUMMARY
 *	read a PROXY header from a socket, not a byte further
 * SYNOPSIS
 *	#include "proxy_header.h"
 *
 *	void	proxy_reader_init(&reader, v2_max)
 *	void	proxy_reader_free(&reader)
 *	const char *proxy_reader_step(&reader, fd, &hdr)
 *	const char *proxy_reader_read(fd, timeout_ms, v2_max, &hdr)
 * DESCRIPTION
 *	The bytes after the header belong to the daemon behind us (an
 *	SMTP client may pipeline its EHLO right behind the header), so
 *	the reader consumes only bytes known to be part of the header:
 *	the first 15 (no header is shorter), then for v2 exactly the
 *	length the fixed part announces, for v1 a MSG_PEEK up to the LF
 *	and an exact read of that many bytes.
 *
 *	proxy_reader_step() is for event loops: it reads what is there
 *	without blocking (MSG_DONTWAIT) and parses after every read, so
 *	garbage is refused at its first byte. proxy_reader_read() waits
 *	with poll() up to timeout_ms in total.
 * DIAGNOSTICS
 *	NULL with hdr filled in; proxy_header_incomplete (step only: wait
 *	until readable and call again); or a static error: the parser's,
 *	"connection closed before the PROXY header was complete",
 *	"timeout waiting for the PROXY header", or a read error.
 */

#include "build_config.h"

#include <errno.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

#include "proxy_header.h"
#include "xalloc.h"

#define PROXY_MIN_HEADER 15		/* "PROXY UNKNOWN\r\n" */

void    proxy_reader_init(struct proxy_reader *reader, size_t v2_max)
{
    reader->have = 0;
    reader->v2_max = v2_max > PROXY_HEADER_BUF ? PROXY_HEADER_BUF : v2_max;
    /* Only what the limit allows: a thousand slow clients cost little. */
    reader->size = reader->v2_max < PROXY_V1_MAX ? PROXY_V1_MAX : reader->v2_max;
    reader->buf = xmalloc(reader->size);
}

void    proxy_reader_free(struct proxy_reader *reader)
{
    free(reader->buf);
    reader->buf = NULL;
}

/* proxy_reader_safe - how many more bytes are surely header bytes */

static ssize_t proxy_reader_safe(struct proxy_reader *r, int fd)
{
    unsigned char peek[PROXY_V1_MAX];
    ssize_t n;

    if (r->have < PROXY_MIN_HEADER)
	return (PROXY_MIN_HEADER - r->have);
    if (r->buf[0] != 'P') {			/* v2: the fixed part, then len */
	if (r->have < PROXY_V2_FIXED)
	    return (PROXY_V2_FIXED - r->have);
	return ((ssize_t) (PROXY_V2_FIXED + ((size_t) r->buf[14] << 8 | r->buf[15])) - r->have);
    }
    if (r->have >= PROXY_V1_MAX)
	return (0);
    n = recv(fd, peek, PROXY_V1_MAX - r->have, MSG_PEEK | MSG_DONTWAIT);
    if (n <= 0)
	return (n);
    unsigned char *lf = memchr(peek, '\n', n);

    return (lf ? lf + 1 - peek : n);
}

const char *proxy_reader_step(struct proxy_reader *r, int fd, struct proxy_header *hdr)
{
    const char *err;

    for (;;) {
	ssize_t want = proxy_reader_safe(r, fd), got;

	if (want > (ssize_t) (r->size - r->have))
	    want = (ssize_t) (r->size - r->have);
	if (want > 0)
	    got = recv(fd, r->buf + r->have, (size_t) want, MSG_DONTWAIT);
	else
	    got = want;
	if (got == 0)
	    return ("connection closed before the PROXY header was complete");
	if (got < 0) {
	    if (errno == EAGAIN || errno == EWOULDBLOCK)
		return (proxy_header_incomplete);
	    if (errno == EINTR)
		continue;
	    return ("read error before the PROXY header was complete");
	}
	r->have += (size_t) got;
	err = proxy_header_parse(r->buf, r->have, r->v2_max, hdr);
	if (err != proxy_header_incomplete)
	    return (err);
	/* A v2 header longer than the buffer is refused by the parser. */
    }
}

static long proxy_reader_ms_since(const struct timespec *t0)
{
    struct timespec now;

    clock_gettime(CLOCK_MONOTONIC, &now);
    return ((now.tv_sec - t0->tv_sec) * 1000 + (now.tv_nsec - t0->tv_nsec) / 1000000);
}

const char *proxy_reader_read(int fd, int timeout_ms, size_t v2_max, struct proxy_header *hdr)
{
    struct proxy_reader r;
    struct timespec t0;
    const char *err;

    proxy_reader_init(&r, v2_max);
    clock_gettime(CLOCK_MONOTONIC, &t0);
    while ((err = proxy_reader_step(&r, fd, hdr)) == proxy_header_incomplete) {
	struct pollfd pfd = {.fd = fd, .events = POLLIN};
	long    left = timeout_ms - proxy_reader_ms_since(&t0);
	int     n;

	if (left <= 0 || (n = poll(&pfd, 1, (int) left)) == 0) {
	    err = "timeout waiting for the PROXY header";
	    break;
	}
	if (n < 0 && errno != EINTR) {
	    err = "poll error while waiting for the PROXY header";
	    break;
	}
    }
    proxy_reader_free(&r);
    return (err);
}
