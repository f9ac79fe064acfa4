#ifndef LMTP_WEBHOOK_MIME_DELIM_H
#define LMTP_WEBHOOK_MIME_DELIM_H

/* mime_delim.h - a multipart's delimiter lines and parts, as Python's email reads them */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* a delimiter line: [start, end), end after its line end (if any) */
struct mime_delim_line {
    uint64_t start, end;
    bool    close;			/* "--boundary--" */
};

/* finds delimiter lines in bytes fed in order */
struct mime_delim {
    const char *sep;			/* "--" boundary */
    size_t  sep_len;
    uint64_t off;			/* of the next byte fed */
    uint64_t line_start;
    int     state;
    size_t  matched;			/* bytes of sep matched */
    bool    close;
};

void    mime_delim_init(struct mime_delim *d, const char *sep, size_t sep_len, uint64_t off);
size_t  mime_delim_feed(struct mime_delim *d, const unsigned char *data, size_t size,
			        struct mime_delim_line *line, bool *found);
bool    mime_delim_finish(struct mime_delim *d, struct mime_delim_line *line);

#endif
