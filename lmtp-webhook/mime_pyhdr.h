#ifndef LMTP_WEBHOOK_MIME_PYHDR_H
#define LMTP_WEBHOOK_MIME_PYHDR_H

/* mime_pyhdr.h - where Python's email ends a header block */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* one header line, as Python's feedparser takes it (headerRE) */
enum mime_pyhdr_kind {
    MIME_PYHDR_HEADER,			/* "Name:", or white space first */
    MIME_PYHDR_FROM,			/* "From ": an envelope line */
    MIME_PYHDR_BAD,			/* no header line: the body begins */
};

/* reads a header block's bytes in order */
struct mime_pyhdr {
    uint64_t off;			/* of the next byte fed */
    uint64_t line_start;
    unsigned int lineno;		/* lines of the header before this one */
    size_t  pos;			/* of the next byte in its line */
    int     state;
    bool    from_match;		/* the line began as "From " so far */
    bool    from_pending;		/* the last line was "From ", not the first */
    uint64_t from_start;		/* and began here */
    bool    done;
};

/*
 * where the body begins when Python's differs from the header's blank
 * line: at body (a line Dovecot's parser reads as a header), and the
 * drop_len bytes at drop (the blank line after a last "From " line) are
 * no byte of it
 */
struct mime_pyhdr_end {
    bool    moved;
    uint64_t body;
    uint64_t drop;
    size_t  drop_len;
};

enum mime_pyhdr_kind mime_pyhdr_line(const unsigned char *line, size_t len);
void    mime_pyhdr_init(struct mime_pyhdr *h, uint64_t off);
size_t  mime_pyhdr_feed(struct mime_pyhdr *h, const unsigned char *data, size_t size,
			        struct mime_pyhdr_end *end);
void    mime_pyhdr_finish(struct mime_pyhdr *h, struct mime_pyhdr_end *end);

#endif
