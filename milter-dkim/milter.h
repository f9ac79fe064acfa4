#ifndef MXKIT_MILTER_H
#define MXKIT_MILTER_H

/* milter - the milter callbacks of milter-dkim (smfi.h, served by mengine(3)). */

#include "smfi.h"

extern struct smfiDesc milter_desc;

/* Set before mengine_run() when the socket is a UNIX-domain one: the MTA may
 * then send headers and body without waiting for our replies. */
extern int milter_local_socket;

void    milter_metrics_init(void);

#endif
