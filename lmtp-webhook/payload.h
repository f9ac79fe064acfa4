#ifndef LMTP_WEBHOOK_PAYLOAD_H
#define LMTP_WEBHOOK_PAYLOAD_H

/* payload.h - the message.received event, independent of Dovecot */

#include <stddef.h>
#include <sys/types.h>

struct payload_bytes {
    char   *data;
    size_t  len;
};

struct payload_attachment {
    char   *filename;			/* NULL if the part has none */
    char   *content_type;
    size_t  size;			/* decoded size */
    unsigned char sha256[32];
    struct payload_bytes content;	/* empty when over the limit */
    int     content_kept;
};

enum payload_header {
    PAYLOAD_FROM, PAYLOAD_TO, PAYLOAD_CC, PAYLOAD_SUBJECT, PAYLOAD_DATE,
    PAYLOAD_MESSAGE_ID, PAYLOAD_HEADER_COUNT,
};

/* the headers are kept (bounded); text, html and attachments only by
   payload_build(), the streaming writer takes them as they come */
struct payload_message {
    struct payload_bytes header[PAYLOAD_HEADER_COUNT];
    struct payload_bytes *auth_results;
    int     auth_count;
    char   *authentication;		/* JSON object (authres.c); NULL: null */
    struct payload_bytes text, html;
    struct payload_attachment *attachments;
    int     attachment_count;
    size_t  size;			/* of the whole message */
    const char *limit;			/* a parser's limit it reached (static) */
};

struct payload_envelope {
    const char *id, *workspace, *mail_from, *rcpt_to;
    long long timestamp;
};

/*
 * Where the writer puts bytes: pwrite()/pread() semantics (all or -1
 * with errno). payload_fd_sink() is a file descriptor.
 */
struct payload_sink {
    ssize_t (*pwrite) (void *ctx, const void *buf, size_t len, off_t off);
    ssize_t (*pread) (void *ctx, void *buf, size_t len, off_t off);
    void   *ctx;
};

/*
 * A sink in memory up to limit bytes, then in the file that open_file()
 * gives (called once, when the memory is full): scratch space that costs
 * no file for the usual small text and html.
 */
struct payload_spill {
    char   *mem;
    size_t  len, limit;
    int     fd;				/* -1 until spilled */
    int     (*open_file) (void *ctx);	/* -1 with errno */
    void   *ctx;
};

#define PAYLOAD_BUF_SIZE 65536

/* the event written as it is produced: memory independent of its size */
struct payload_writer {
    struct payload_sink out, scratch;	/* scratch: text and html */
    off_t   start, pos;			/* of the event in out, next byte */
    off_t   scratch_pos;
    off_t   text[2], html[2];		/* JSON strings in scratch; -1: null */
    off_t   content_start;		/* of the current attachment's base64 */
    int     in_string;			/* writing 1 text, 2 html (to scratch) */
    int     attachments;		/* written so far */
    unsigned char pend[4];		/* UTF-8 sequence cut by a block */
    size_t  pend_len;
    unsigned char b64[3];		/* base64 group cut by a block */
    size_t  b64_len;
    int     bodies_done;		/* text and html written */
    int     raw_done;			/* raw_message written */
    int     error;			/* errno of the first failed write */
    char    buf[PAYLOAD_BUF_SIZE];	/* for out (scratch is unbuffered: */
    size_t  used;			/* it is written in whole blocks) */
};

void    payload_fd_sink(struct payload_sink *sink, int *fd);
void    payload_spill_sink(struct payload_sink *sink, struct payload_spill *spill);
void    payload_spill_reset(struct payload_spill *spill);
void    payload_spill_free(struct payload_spill *spill);
void    payload_writer_init(struct payload_writer *w, const struct payload_sink *out,
			            off_t start, const struct payload_sink *scratch);
void    payload_writer_rewind(struct payload_writer *w);
void    payload_begin(struct payload_writer *w, const struct payload_message *msg,
		              const struct payload_envelope *env);
void    payload_attachment_begin(struct payload_writer *w, const char *filename,
				         const char *content_type);
void    payload_attachment_data(struct payload_writer *w, const void *data, size_t len);
void    payload_attachment_drop(struct payload_writer *w);
void    payload_attachment_end(struct payload_writer *w, int kept, size_t size,
			               const unsigned char sha256[32]);
void    payload_raw_begin(struct payload_writer *w);
void    payload_text_begin(struct payload_writer *w, int html);
void    payload_text_data(struct payload_writer *w, const void *data, size_t len);
void    payload_text_end(struct payload_writer *w);
int     payload_finish(struct payload_writer *w, size_t size, size_t *len_r);

const char *payload_header_name(enum payload_header which);
void    payload_bytes_append(struct payload_bytes *b, const void *data, size_t len,
			             size_t limit);
struct payload_attachment *payload_attachment_add(struct payload_message *msg);
char   *payload_build(const struct payload_message *msg,
		              const struct payload_envelope *env, size_t *len_r);
char   *payload_utf8_clean(const char *data, size_t len, size_t *len_r);
size_t  payload_utf8_len(const unsigned char *s, size_t left);
size_t  payload_utf8_bad(const unsigned char *s, size_t left);
int     payload_utf8_prefix(const unsigned char *s, size_t left);
void    payload_message_free(struct payload_message *msg);

#endif
