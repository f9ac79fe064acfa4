/*
 * NAME
 *	mproto 3
 * SUMMARY
 *	milter protocol packets: framing, arguments, replies
 * SYNOPSIS
 *	#include "mproto.h"
 *
 *	const char *mproto_frame(buf, have, &cmd, &data, &len, &used)
 *
 *	char  **mproto_argv(data, len, &count)
 *
 *	int	mproto_get32(data, len, off, &value)
 *
 *	void	mproto_put(out, cmd, data, len)
 *
 *	void	mproto_put_edit(out, cmd, index, name, value)
 * DESCRIPTION
 *	A packet is a 32-bit length in network order, counting the command
 *	byte and the data, then the command byte, then the data.
 *
 *	mproto_frame() looks at the "have" bytes at "buf": with a whole
 *	packet there, it sets cmd, data (into buf), len and used (the bytes
 *	it takes) and returns NULL; with part of one, used is 0 and it
 *	returns NULL; a length of 0 or one past MPROTO_DATA_MAX returns an
 *	error text (the stream cannot be resynchronized: the session ends).
 *	It decides on the 4 length bytes alone, so a peer cannot make us
 *	buffer more than MPROTO_DATA_MAX + 5 bytes.
 *
 *	mproto_argv() splits data made of NUL-terminated strings into a
 *	NULL-terminated array (malloc'd, pointing into data); NULL when the
 *	data is empty or its last string is not terminated.
 *
 *	mproto_get32() reads the 32-bit network-order number at off; -1
 *	past the data.
 *
 *	mproto_put() appends one packet to out; mproto_put_edit() one
 *	header edit (index, name and value, each string NUL-terminated).
 */

#include "build_config.h"

#include <arpa/inet.h>
#include <stdlib.h>
#include <string.h>

#include "mproto.h"
#include "xalloc.h"

const char *mproto_frame(const char *buf, size_t have, int *cmd, char **data, size_t *len,
			         size_t *used)
{
    uint32_t n;

    *used = 0;
    if (have < 4)
	return (NULL);
    memcpy(&n, buf, 4);
    n = ntohl(n);
    if (n == 0)
	return ("milter packet of length 0");
    if (n - 1 > MPROTO_DATA_MAX)
	return ("milter packet longer than the limit");
    if (have - 4 < n)
	return (NULL);
    *cmd = (unsigned char) buf[4];
    *data = (char *) buf + 5;
    *len = n - 1;
    *used = 4 + (size_t) n;
    return (NULL);
}

char  **mproto_argv(char *data, size_t len, int *count)
{
    char  **argv;
    int     n = 0, i = 0;

    if (len == 0 || data[len - 1] != 0)
	return (NULL);
    for (size_t k = 0; k < len; k++)
	n += data[k] == 0;
    argv = xmalloc((n + 1) * sizeof(*argv));
    for (char *cp = data; cp < data + len; cp += strlen(cp) + 1)
	argv[i++] = cp;
    argv[i] = NULL;
    if (count)
	*count = i;
    return (argv);
}

int     mproto_get32(const char *data, size_t len, size_t off, uint32_t *value)
{
    if (len < 4 || off > len - 4)
	return (-1);
    memcpy(value, data + off, 4);
    *value = ntohl(*value);
    return (0);
}

void    mproto_reserve(struct mproto_buf *buf, size_t need)
{
    if (buf->cap - buf->len >= need)
	return;
    while (buf->cap - buf->len < need)
	buf->cap = buf->cap ? 2 * buf->cap : 4096;
    buf->data = xrealloc(buf->data, buf->cap);
}

static void mproto_put32(struct mproto_buf *out, uint32_t value)
{
    value = htonl(value);
    memcpy(out->data + out->len, &value, 4);
    out->len += 4;
}

void    mproto_put(struct mproto_buf *out, int cmd, const char *data, size_t len)
{
    mproto_reserve(out, 5 + len);
    mproto_put32(out, (uint32_t) len + 1);
    out->data[out->len++] = (char) cmd;
    if (len)
	memcpy(out->data + out->len, data, len);
    out->len += len;
}

void    mproto_put_edit(struct mproto_buf *out, int cmd, uint32_t index, const char *name,
			        const char *value)
{
    size_t  nlen = strlen(name) + 1, vlen = strlen(value) + 1;

    mproto_reserve(out, 9 + nlen + vlen);
    mproto_put32(out, (uint32_t) (5 + nlen + vlen));
    out->data[out->len++] = (char) cmd;
    mproto_put32(out, index);
    memcpy(out->data + out->len, name, nlen);
    out->len += nlen;
    memcpy(out->data + out->len, value, vlen);
    out->len += vlen;
}

void    mproto_buf_free(struct mproto_buf *buf)
{
    free(buf->data);
    buf->data = NULL;
    buf->len = buf->cap = 0;
}
