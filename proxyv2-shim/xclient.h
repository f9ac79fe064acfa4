#ifndef MXKIT_XCLIENT_H
#define MXKIT_XCLIENT_H

/* xclient - the SMTP side of xclient mode. */

#include <stddef.h>

#include "proxy_header.h"

#define XCLIENT_REPLY_MAX 4096
#define XCLIENT_UNAVAILABLE "[UNAVAILABLE]"

struct xclient_reply {
    char    text[XCLIENT_REPLY_MAX + 1];
    size_t  len;
};

const char *xclient_reply_scan(const struct xclient_reply *reply, int *code);
int     xclient_offered(const struct xclient_reply *ehlo_reply);
const char *xclient_command(const struct proxy_header *hdr, const char *name,
			           const char *reverse_name, char *buf, size_t size);

#endif
