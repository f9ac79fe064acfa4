#ifndef LMTP_WEBHOOK_MIME_SPLIT_H
#define LMTP_WEBHOOK_MIME_SPLIT_H

/* mime_split.h - a multipart's parts, where Python's email finds them */

#include "mime_delim.h"

/* at most this many parts in one multipart: the last one holds the rest */
#define MIME_SPLIT_MAX_PARTS 10000

/* where the parts of one multipart's body lie */
struct mime_split {
    uint64_t start, end;		/* of the body */
    int     state;
    unsigned int parts;			/* given so far */
    bool    capped;			/* the last part holds the rest */
    struct mime_delim_line next;	/* the delimiter line the next part follows */
};

/* the next delimiter line at or after from, in the body; 1 found, 0 none,
   -1 a read error */
typedef int (*mime_split_find_fn) (void *ctx, uint64_t from, struct mime_delim_line *line);

enum mime_split_next {
    MIME_SPLIT_ERROR = -1,
    MIME_SPLIT_DONE = 0,
    MIME_SPLIT_PART = 1,		/* a part: [*start_r, +*size_r) */
    MIME_SPLIT_LEAF = 2,		/* not split: one leaf, [*start_r, +*size_r) */
};

void    mime_split_init(struct mime_split *s, uint64_t start, uint64_t size);
enum mime_split_next mime_split_next(struct mime_split *s, mime_split_find_fn find, void *ctx,
				             uint64_t *start_r, uint64_t *size_r);

#endif
