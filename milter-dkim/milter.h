#ifndef MXKIT_MILTER_H
#define MXKIT_MILTER_H

/* milter - libmilter callbacks of milter-dkim. */

#include <libmilter/mfapi.h>

extern struct smfiDesc milter_desc;

/* Set before smfi_main when the socket is a UNIX-domain one: the MTA may
 * then send headers and body without waiting for our replies. */
extern int milter_local_socket;

void    milter_metrics_init(void);

#endif
