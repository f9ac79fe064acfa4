#ifndef LMTP_WEBHOOK_DECODE_H
#define LMTP_WEBHOOK_DECODE_H

/* decode.h - Content-Transfer-Encoding decoding, bytes in, bytes out */

#include <stddef.h>

enum decode_cte {
    DECODE_IDENTITY,			/* 7bit, 8bit, binary, unknown */
    DECODE_BASE64,
    DECODE_QP,
};

struct decode_state {
    enum decode_cte cte;
    int     state;			/* quoted-printable: where in "=XY" */
    unsigned char held;			/* QP: the first hex digit */
    int     quad_pos, pads, done;	/* base64 */
    unsigned int left;			/* base64: bits of the quantum */
};

/* the most decode_more() writes for len input bytes */
#define DECODE_OUT_MAX(len) ((len) + 2)

enum decode_cte decode_cte_parse(const char *token);
void    decode_init(struct decode_state *st, enum decode_cte cte);
size_t  decode_more(struct decode_state *st, const unsigned char *in, size_t len,
		            unsigned char *out);
size_t  decode_finish(struct decode_state *st, unsigned char *out);
size_t  decode_crlf(int *last_cr, const unsigned char *in, size_t len, unsigned char *out);

/* the most decode_crlf() writes for len input bytes */
#define DECODE_CRLF_MAX(len) (2 * (len))

#endif
