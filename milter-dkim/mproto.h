#ifndef MXKIT_MPROTO_H
#define MXKIT_MPROTO_H

/* mproto - milter protocol packets: framing, arguments, replies. */

#include <stddef.h>
#include <stdint.h>

/*
 * The largest packet data accepted. A body chunk is at most 65535 bytes
 * (Postfix's MILTER_CHUNK_SIZE), but a header goes in one packet however
 * long header_size_limit lets it be, and message.c refuses a header
 * section past 8 MB for good (552): up to that the MTA must get our
 * answer, past it the session ends (and the MTA applies
 * milter_default_action).
 */
#define MPROTO_DATA_MAX	(8 * 1024 * 1024 + 65536)

/* commands from the MTA */
#define MPROTO_ABORT	'A'
#define MPROTO_BODY	'B'
#define MPROTO_CONNECT	'C'
#define MPROTO_MACRO	'D'
#define MPROTO_BODYEOB	'E'
#define MPROTO_HELO	'H'
#define MPROTO_QUIT_NC	'K'
#define MPROTO_HEADER	'L'
#define MPROTO_MAIL	'M'
#define MPROTO_EOH	'N'
#define MPROTO_OPTNEG	'O'
#define MPROTO_QUIT	'Q'
#define MPROTO_RCPT	'R'
#define MPROTO_DATA	'T'
#define MPROTO_UNKNOWN	'U'

/* replies */
#define MPROTO_R_ACCEPT	'a'
#define MPROTO_R_CONTINUE 'c'
#define MPROTO_R_DISCARD 'd'
#define MPROTO_R_CHGHEADER 'm'
#define MPROTO_R_INSHEADER 'i'
#define MPROTO_R_REJECT	'r'
#define MPROTO_R_SKIP	's'
#define MPROTO_R_TEMPFAIL 't'
#define MPROTO_R_REPLYCODE 'y'

struct mproto_buf {
    char   *data;
    size_t  len;
    size_t  cap;
};

const char *mproto_frame(const char *buf, size_t have, int *cmd, char **data, size_t *len,
			         size_t *used);
char  **mproto_argv(char *data, size_t len, int *count);
int     mproto_get32(const char *data, size_t len, size_t off, uint32_t *value);
void    mproto_put(struct mproto_buf *out, int cmd, const char *data, size_t len);
void    mproto_put_edit(struct mproto_buf *out, int cmd, uint32_t index, const char *name,
			        const char *value);
void    mproto_reserve(struct mproto_buf *buf, size_t need);
void    mproto_buf_free(struct mproto_buf *buf);

#endif
