/*
 * NAME
 *	payload 3
 * SUMMARY
 *	the message.received JSON event, written as it is produced
 * SYNOPSIS
 *	#include "payload.h"
 *
 *	void	payload_writer_init(&writer, &out, start, &scratch)
 *	void	payload_begin(&writer, &msg, &envelope)
 *	void	payload_attachment_begin(&writer, filename, content_type)
 *	void	payload_attachment_data(&writer, data, len)
 *	void	payload_attachment_drop(&writer)
 *	void	payload_attachment_end(&writer, kept, size, sha256)
 *	void	payload_text_begin(&writer, html)
 *	void	payload_text_data(&writer, data, len)
 *	void	payload_text_end(&writer)
 *	int	payload_finish(&writer, size, &len)
 *
 *	char	*payload_build(&msg, &envelope, &len)
 *	char	*payload_utf8_clean(data, len, &len_out)	(payload_utf8.c)
 *	void	payload_bytes_append(&bytes, data, len, limit)
 *	struct payload_attachment *payload_attachment_add(&msg)
 *	void	payload_message_free(&msg)
 * DESCRIPTION
 *	The JSON body that is signed and posted (compact, keys in this
 *	order):
 *
 *	{"type":"message.received","timestamp":T,"data":{"id",
 *	"workspace","envelope":{"mail_from","rcpt_to"},"headers":{"from",
 *	"to","cc","subject","date","message_id"},"authentication_results",
 *	"authentication":{...},"attachments":[{"filename","content_type",
 *	"content_base64","size","sha256"}],"text","html","raw_message":
 *	null|{"content_base64","size","sha256"},"size"}}
 *
 *	"authentication" is msg.authentication as it is (authres.c made
 *	it), null without. payload_raw_begin() starts raw_message (after
 *	the attachments, text and html); its bytes go through
 *	payload_attachment_data(), _drop() and _end() as an attachment's.
 *
 *	The writer produces it while the message is parsed, so that the
 *	memory a delivery takes does not grow with the message: an
 *	attachment's bytes go out base64-encoded as they are decoded (its
 *	size and hash follow its content, being known only at its end);
 *	text and html, which may come before, between or after the
 *	attachments, go to the scratch sink as JSON strings and are copied
 *	after the attachments at the end (payload_spill_sink(): in memory
 *	up to a limit, then in a file). payload_attachment_drop() takes
 *	back the content of an attachment found to be over the size limit
 *	(its content_base64 is then null; the next bytes overwrite it, the
 *	final length excludes the rest). Writes go through a 64 KB buffer;
 *	the first failed write stops all writing and payload_finish()
 *	returns -1 with its errno (ENOSPC: the spool is full).
 *
 *	payload_build() writes a payload_message held in memory the same
 *	way (tests, fuzzing).
 *
 *	Absent headers and bodies are null. JSON strings must be UTF-8:
 *	whatever is not (an unknown charset, a broken sequence, a
 *	sequence cut by a block boundary and never completed) becomes
 *	U+FFFD (payload_utf8_clean() does the same on a whole string), so
 *	a hostile message still yields an event.
 * DIAGNOSTICS
 *	payload_finish(): -1 and errno when a write failed.
 */

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <stddef.h>
#include <string.h>
#include <unistd.h>

#include "payload.h"
#include "sign.h"
#include "wh_alloc.h"

static const char *const payload_header_names[PAYLOAD_HEADER_COUNT] = {
    "from", "to", "cc", "subject", "date", "message_id",
};

const char *payload_header_name(enum payload_header which)
{
    return (payload_header_names[which]);
}

/* payload_bytes_append - append up to limit bytes in total */

void    payload_bytes_append(struct payload_bytes *b, const void *data, size_t len,
			             size_t limit)
{
    if (b->len >= limit)
	return;
    if (len > limit - b->len)
	len = limit - b->len;
    b->data = wh_realloc(b->data, b->len + len + 1);
    memcpy(b->data + b->len, data, len);
    b->len += len;
    b->data[b->len] = 0;
}

struct payload_attachment *payload_attachment_add(struct payload_message *msg)
{
    struct payload_attachment *a;

    msg->attachments = wh_realloc(msg->attachments,
			(msg->attachment_count + 1) * sizeof(*msg->attachments));
    a = &msg->attachments[msg->attachment_count++];
    memset(a, 0, sizeof(*a));
    return (a);
}

/* -- sinks ---------------------------------------------------------- */

static ssize_t payload_fd_pwrite(void *ctx, const void *buf, size_t len, off_t off)
{
    const char *p = buf;
    size_t  left = len;

    while (left > 0) {
	ssize_t n = pwrite(*(int *) ctx, p, left, off);

	if (n < 0 && errno == EINTR)
	    continue;
	if (n <= 0) {
	    if (n == 0)
		errno = EIO;
	    return (-1);
	}
	p += n;
	off += n;
	left -= (size_t) n;
    }
    return ((ssize_t) len);
}

static ssize_t payload_fd_pread(void *ctx, void *buf, size_t len, off_t off)
{
    ssize_t n;

    while ((n = pread(*(int *) ctx, buf, len, off)) < 0 && errno == EINTR)
	 /* void */ ;
    return (n);
}

void    payload_fd_sink(struct payload_sink *sink, int *fd)
{
    sink->pwrite = payload_fd_pwrite;
    sink->pread = payload_fd_pread;
    sink->ctx = fd;
}

static ssize_t payload_spill_pwrite(void *ctx, const void *buf, size_t len, off_t off)
{
    struct payload_spill *sp = ctx;
    size_t  end = (size_t) off + len;

    if (sp->fd < 0 && end > sp->limit) {	/* memory full: to the file */
	if ((sp->fd = sp->open_file(sp->ctx)) < 0
	    || payload_fd_pwrite(&sp->fd, sp->mem, sp->len, 0) < 0)
	    return (-1);
	free(sp->mem);
	sp->mem = NULL;
    }
    if (sp->fd >= 0)
	return (payload_fd_pwrite(&sp->fd, buf, len, off));
    if (sp->mem == NULL)
	sp->mem = wh_malloc(sp->limit);
    memcpy(sp->mem + off, buf, len);	/* the writer writes in order */
    if (end > sp->len)
	sp->len = end;
    return ((ssize_t) len);
}

static ssize_t payload_spill_pread(void *ctx, void *buf, size_t len, off_t off)
{
    struct payload_spill *sp = ctx;

    if (sp->fd >= 0)
	return (payload_fd_pread(&sp->fd, buf, len, off));
    if ((size_t) off >= sp->len)
	return (0);
    if (len > sp->len - (size_t) off)
	len = sp->len - (size_t) off;
    memcpy(buf, sp->mem + off, len);
    return ((ssize_t) len);
}

void    payload_spill_sink(struct payload_sink *sink, struct payload_spill *spill)
{
    sink->pwrite = payload_spill_pwrite;
    sink->pread = payload_spill_pread;
    sink->ctx = spill;
}

/*
 * payload_spill_reset - empty for the next message, keeping the memory: a
 * process that writes one event after another (an lmtp process) would
 * otherwise take the block from malloc and fault its pages in again per
 * event (glibc gives a large free block back to the system).
 */
void    payload_spill_reset(struct payload_spill *spill)
{
    spill->len = 0;
    if (spill->fd >= 0)
	(void) close(spill->fd);
    spill->fd = -1;
}

void    payload_spill_free(struct payload_spill *spill)
{
    free(spill->mem);
    spill->mem = NULL;
    if (spill->fd >= 0)
	(void) close(spill->fd);
    spill->fd = -1;
}

/* -- the writer's output --------------------------------------------- */

static void payload_flush(struct payload_writer *w)
{
    if (w->used > 0 && !w->error
	&& w->out.pwrite(w->out.ctx, w->buf, w->used, w->pos - (off_t) w->used) < 0)
	w->error = errno ? errno : EIO;
    w->used = 0;
}

static void payload_out(struct payload_writer *w, const void *data, size_t len)
{
    const char *p = data;

    while (len > 0 && !w->error) {
	size_t  n = sizeof(w->buf) - w->used;

	if (n > len)
	    n = len;
	memcpy(w->buf + w->used, p, n);
	w->used += n;
	w->pos += (off_t) n;
	p += n;
	len -= n;
	if (w->used == sizeof(w->buf))
	    payload_flush(w);
    }
}

#define OUT(w, lit) payload_out((w), (lit), sizeof(lit) - 1)

static void payload_scratch(struct payload_writer *w, const void *data, size_t len)
{
    if (len == 0 || w->error)
	return;
    if (w->scratch.pwrite(w->scratch.ctx, data, len, w->scratch_pos) < 0)
	w->error = errno ? errno : EIO;
    w->scratch_pos += (off_t) len;
}

static void payload_emit(struct payload_writer *w, const void *data, size_t len)
{
    if (w->in_string)			/* text or html: to scratch */
	payload_scratch(w, data, len);
    else
	payload_out(w, data, len);
}

/*
 * payload_escape - len bytes of a JSON string's content: UTF-8 checked
 * (a sequence cut at the end is held for the next call, unless final),
 * escaped as JSON wants it.
 */
static void payload_escape(struct payload_writer *w, const unsigned char *s, size_t len,
			           int final)
{
    char    out[4096 + 16];
    size_t  o = 0, i = 0, n;
    unsigned char joined[8];

    /* a held sequence first, completed with the first bytes of s */
    while (w->pend_len > 0 && (len > 0 || final)) {
	size_t  take = len < 4 ? len : 4;

	memcpy(joined, w->pend, w->pend_len);
	memcpy(joined + w->pend_len, s, take);
	if (!final && payload_utf8_prefix(joined, w->pend_len + take)) {
	    memcpy(w->pend + w->pend_len, s, take);	/* still cut short */
	    w->pend_len += take;
	    return;
	}
	n = payload_utf8_len(joined, w->pend_len + take);
	if (n == 0) {				/* not valid: one U+FFFD, go on */
	    size_t  bad = payload_utf8_bad(joined, w->pend_len + take);

	    payload_emit(w, "\xEF\xBF\xBD", 3);
	    if (bad <= w->pend_len) {
		w->pend_len -= bad;
		memmove(w->pend, w->pend + bad, w->pend_len);
	    } else {
		s += bad - w->pend_len;
		len -= bad - w->pend_len;
		w->pend_len = 0;
	    }
	    continue;
	}
	if (n <= w->pend_len) {			/* cannot be: a prefix was held */
	    payload_emit(w, "\xEF\xBF\xBD", 3);
	    memmove(w->pend, w->pend + 1, --w->pend_len);
	    continue;
	}
	payload_emit(w, joined, n);
	s += n - w->pend_len;
	len -= n - w->pend_len;
	w->pend_len = 0;
    }
    while (i < len) {
	if (o > sizeof(out) - 16) {
	    payload_emit(w, out, o);
	    o = 0;
	}
	if (s[i] >= 0x80 && !final && payload_utf8_prefix(s + i, len - i)) {
	    memcpy(w->pend, s + i, len - i);
	    w->pend_len = len - i;
	    break;
	}
	if (s[i] >= 0x20 && s[i] < 0x80 && s[i] != '"' && s[i] != '\\') {
	    size_t  run = 1;		/* printable ASCII: as it is, in runs */

	    while (i + run < len && o + run < sizeof(out) - 16 && s[i + run] >= 0x20
		   && s[i + run] < 0x80 && s[i + run] != '"' && s[i + run] != '\\')
		run++;
	    memcpy(out + o, s + i, run);
	    o += run;
	    i += run;
	    continue;
	}
	if ((n = payload_utf8_len(s + i, len - i)) == 0) {
	    memcpy(out + o, "\xEF\xBF\xBD", 3);	/* U+FFFD */
	    o += 3;
	    i += payload_utf8_bad(s + i, len - i);
	} else if (n > 1) {
	    memcpy(out + o, s + i, n);
	    o += n;
	    i += n;
	} else if (s[i] == '"' || s[i] == '\\') {
	    out[o++] = '\\';
	    out[o++] = (char) s[i++];
	} else if (s[i] < 0x20) {
	    o += (size_t) snprintf(out + o, 7, "\\u%04x", s[i++]);
	} else {
	    out[o++] = (char) s[i++];
	}
    }
    payload_emit(w, out, o);
}

/* payload_string - a whole JSON string, or null */

static void payload_string(struct payload_writer *w, const char *data, size_t len,
			           int present)
{
    if (!present) {
	OUT(w, "null");
	return;
    }
    OUT(w, "\"");
    w->pend_len = 0;
    payload_escape(w, (const unsigned char *) (data ? data : ""), len, 1);
    OUT(w, "\"");
}

#define STR(w, s) payload_string((w), (s), (s) ? strlen(s) : 0, (s) != NULL)
#define BYTES(w, b) payload_string((w), (b)->data, (b)->len, (b)->data != NULL)

void    payload_writer_init(struct payload_writer *w, const struct payload_sink *out,
			            off_t start, const struct payload_sink *scratch)
{
    memset(w, 0, offsetof(struct payload_writer, buf));
    w->used = 0;			/* after buf: not in the memset */
    w->out = *out;
    w->scratch = *scratch;
    w->start = w->pos = start;
    w->text[0] = w->html[0] = -1;
}

/* payload_writer_rewind - the event written again from its start, to the same sinks */

void    payload_writer_rewind(struct payload_writer *w)
{
    struct payload_sink out = w->out, scratch = w->scratch;
    off_t   start = w->start;

    payload_writer_init(w, &out, start, &scratch);
}

void    payload_begin(struct payload_writer *w, const struct payload_message *msg,
		              const struct payload_envelope *env)
{
    char    num[32];

    OUT(w, "{\"type\":\"message.received\",\"timestamp\":");
    payload_out(w, num, (size_t) snprintf(num, sizeof(num), "%lld", env->timestamp));
    OUT(w, ",\"data\":{\"id\":");
    STR(w, env->id);
    OUT(w, ",\"workspace\":");
    STR(w, env->workspace);
    OUT(w, ",\"envelope\":{\"mail_from\":");
    STR(w, env->mail_from);
    OUT(w, ",\"rcpt_to\":");
    STR(w, env->rcpt_to);
    OUT(w, "},\"headers\":{");
    for (int i = 0; i < PAYLOAD_HEADER_COUNT; i++) {
	if (i > 0)
	    OUT(w, ",");
	STR(w, payload_header_names[i]);
	OUT(w, ":");
	BYTES(w, &msg->header[i]);
    }
    OUT(w, "},\"authentication_results\":[");
    for (int i = 0; i < msg->auth_count; i++) {
	if (i > 0)
	    OUT(w, ",");
	BYTES(w, &msg->auth_results[i]);
    }
    OUT(w, "],\"authentication\":");
    if (msg->authentication != NULL)
	payload_out(w, msg->authentication, strlen(msg->authentication));
    else
	OUT(w, "null");
    OUT(w, ",\"attachments\":[");
}

void    payload_attachment_begin(struct payload_writer *w, const char *filename,
				         const char *content_type)
{
    if (w->attachments++ > 0)
	OUT(w, ",");
    OUT(w, "{\"filename\":");
    STR(w, filename);
    OUT(w, ",\"content_type\":");
    payload_string(w, content_type, content_type ? strlen(content_type) : 0, 1);
    OUT(w, ",\"content_base64\":");
    w->content_start = w->pos;
    OUT(w, "\"");
    w->b64_len = 0;
}

static const char payload_b64[] =
"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

static size_t payload_b64_group(const unsigned char *in, size_t n, char *out)
{
    unsigned int v = (unsigned int) in[0] << 16 | (n > 1 ? (unsigned int) in[1] << 8 : 0)
	| (n > 2 ? in[2] : 0);

    out[0] = payload_b64[v >> 18 & 63];
    out[1] = payload_b64[v >> 12 & 63];
    out[2] = n > 1 ? payload_b64[v >> 6 & 63] : '=';
    out[3] = n > 2 ? payload_b64[v & 63] : '=';
    return (4);
}

/*
 * payload_attachment_data - base64 as the bytes come: a group cut by the
 * previous block is completed first, then whole groups straight from
 * data (the bulk of an event's bytes), the rest held for the next call.
 */
void    payload_attachment_data(struct payload_writer *w, const void *data, size_t len)
{
    const unsigned char *p = data;
    char    out[4096];
    size_t  o = 0;

    while (len > 0 && w->b64_len > 0) {
	w->b64[w->b64_len++] = *p++;
	len--;
	if (w->b64_len == 3) {
	    o += payload_b64_group(w->b64, 3, out + o);
	    w->b64_len = 0;
	}
    }
    while (len >= 3) {
	unsigned int v = (unsigned int) p[0] << 16 | (unsigned int) p[1] << 8 | p[2];

	if (o == sizeof(out)) {
	    payload_out(w, out, o);
	    o = 0;
	}
	out[o] = payload_b64[v >> 18];
	out[o + 1] = payload_b64[v >> 12 & 63];
	out[o + 2] = payload_b64[v >> 6 & 63];
	out[o + 3] = payload_b64[v & 63];
	o += 4;
	p += 3;
	len -= 3;
    }
    if (len > 0) {			/* the group was completed above */
	memcpy(w->b64, p, len);
	w->b64_len = len;
    }
    payload_out(w, out, o);
}

void    payload_attachment_drop(struct payload_writer *w)
{
    payload_flush(w);
    w->pos = w->content_start;		/* what follows overwrites it */
    OUT(w, "null");
    w->content_start = -1;
}

void    payload_attachment_end(struct payload_writer *w, int kept, size_t size,
			               const unsigned char sha256[32])
{
    char    text[128], *t = text;

    if (kept && w->content_start >= 0) {
	char    tail[4];

	if (w->b64_len > 0)
	    payload_out(w, tail, payload_b64_group(w->b64, w->b64_len, tail));
	OUT(w, "\"");
    } else if (w->content_start >= 0) {
	payload_attachment_drop(w);
    }
    t += snprintf(t, 64, ",\"size\":%zu,\"sha256\":\"", size);
    for (int i = 0; i < 32; i++) {		/* not snprintf: 32 calls an event */
	*t++ = "0123456789abcdef"[sha256[i] >> 4];
	*t++ = "0123456789abcdef"[sha256[i] & 15];
    }
    payload_out(w, text, (size_t) (t - text));
    OUT(w, "\"}");
}

void    payload_text_begin(struct payload_writer *w, int html)
{
    w->in_string = html ? 2 : 1;
    w->pend_len = 0;
    (html ? w->html : w->text)[0] = w->scratch_pos;
    payload_scratch(w, "\"", 1);
}

void    payload_text_data(struct payload_writer *w, const void *data, size_t len)
{
    payload_escape(w, data, len, 0);
}

void    payload_text_end(struct payload_writer *w)
{
    payload_escape(w, (const unsigned char *) "", 0, 1);
    payload_scratch(w, "\"", 1);
    (w->in_string == 2 ? w->html : w->text)[1] = w->scratch_pos;
    w->in_string = 0;
}

/* payload_copy - a JSON string from scratch into the event, or null */

static void payload_copy(struct payload_writer *w, const off_t range[2])
{
    char    chunk[16384];
    off_t   at = range[0];

    if (range[0] < 0 || range[1] <= range[0]) {
	OUT(w, "null");
	return;
    }
    while (at < range[1] && !w->error) {
	size_t  want = (size_t) (range[1] - at) < sizeof(chunk) ? (size_t) (range[1] - at)
	    : sizeof(chunk);
	ssize_t n = w->scratch.pread(w->scratch.ctx, chunk, want, at);

	if (n <= 0) {
	    w->error = n < 0 ? errno : EIO;
	    break;
	}
	payload_out(w, chunk, (size_t) n);
	at += n;
    }
}

/* payload_bodies - the attachments end; text and html follow them */

static void payload_bodies(struct payload_writer *w)
{
    if (w->bodies_done++)
	return;
    OUT(w, "],\"text\":");
    payload_copy(w, w->text);
    OUT(w, ",\"html\":");
    payload_copy(w, w->html);
}

void    payload_raw_begin(struct payload_writer *w)
{
    payload_bodies(w);
    w->raw_done = 1;
    OUT(w, ",\"raw_message\":{\"content_base64\":");
    w->content_start = w->pos;
    OUT(w, "\"");
    w->b64_len = 0;
}

int     payload_finish(struct payload_writer *w, size_t size, size_t *len_r)
{
    char    num[64];

    payload_bodies(w);
    if (!w->raw_done)
	OUT(w, ",\"raw_message\":null");
    payload_out(w, num, (size_t) snprintf(num, sizeof(num), ",\"size\":%zu}}", size));
    payload_flush(w);
    *len_r = (size_t) (w->pos - w->start);
    if (w->error) {
	errno = w->error;
	return (-1);
    }
    return (0);
}

/* -- in memory: payload_build() -------------------------------------- */

struct payload_mem {
    char   *data;
    size_t  len, cap;
};

static ssize_t payload_mem_pwrite(void *ctx, const void *buf, size_t len, off_t off)
{
    struct payload_mem *m = ctx;
    size_t  end = (size_t) off + len;

    if (end + 1 > m->cap) {
	m->cap = (end + 1) * 2;
	m->data = wh_realloc(m->data, m->cap);
    }
    if ((size_t) off > m->len)
	memset(m->data + m->len, 0, (size_t) off - m->len);
    memcpy(m->data + off, buf, len);
    if (end > m->len)
	m->len = end;
    return ((ssize_t) len);
}

static ssize_t payload_mem_pread(void *ctx, void *buf, size_t len, off_t off)
{
    struct payload_mem *m = ctx;

    if ((size_t) off >= m->len)
	return (0);
    if (len > m->len - (size_t) off)
	len = m->len - (size_t) off;
    memcpy(buf, m->data + off, len);
    return ((ssize_t) len);
}

static void payload_build_text(struct payload_writer *w, const struct payload_bytes *b,
			               int html)
{
    if (b->data == NULL)
	return;
    payload_text_begin(w, html);
    payload_text_data(w, b->data, b->len);
    payload_text_end(w);
}

char   *payload_build(const struct payload_message *msg,
		              const struct payload_envelope *env, size_t *len_r)
{
    struct payload_mem out = {0, 0, 0}, scratch = {0, 0, 0};
    struct payload_sink out_sink = {payload_mem_pwrite, payload_mem_pread, &out};
    struct payload_sink scratch_sink = {payload_mem_pwrite, payload_mem_pread, &scratch};
    struct payload_writer *w = wh_malloc(sizeof(*w));
    size_t  len = 0;

    payload_writer_init(w, &out_sink, 0, &scratch_sink);
    payload_build_text(w, &msg->text, 0);
    payload_build_text(w, &msg->html, 1);
    payload_begin(w, msg, env);
    for (int i = 0; i < msg->attachment_count; i++) {
	const struct payload_attachment *a = &msg->attachments[i];

	payload_attachment_begin(w, a->filename, a->content_type);
	if (a->content_kept)
	    payload_attachment_data(w, a->content.data, a->content.len);
	payload_attachment_end(w, a->content_kept, a->size, a->sha256);
    }
    if (payload_finish(w, msg->size, &len) < 0)
	abort();				/* memory: only out of memory */
    free(w);
    free(scratch.data);
    if (out.data == NULL)
	out.data = wh_malloc(1);
    out.data[len] = 0;
    *len_r = len;
    return (out.data);
}

static void payload_bytes_free(struct payload_bytes *b)
{
    free(b->data);
    b->data = NULL;
    b->len = 0;
}

void    payload_message_free(struct payload_message *msg)
{
    for (int i = 0; i < PAYLOAD_HEADER_COUNT; i++)
	payload_bytes_free(&msg->header[i]);
    for (int i = 0; i < msg->auth_count; i++)
	payload_bytes_free(&msg->auth_results[i]);
    free(msg->auth_results);
    free(msg->authentication);
    payload_bytes_free(&msg->text);
    payload_bytes_free(&msg->html);
    for (int i = 0; i < msg->attachment_count; i++) {
	free(msg->attachments[i].filename);
	free(msg->attachments[i].content_type);
	payload_bytes_free(&msg->attachments[i].content);
    }
    free(msg->attachments);
    memset(msg, 0, sizeof(*msg));
}
