#ifndef MXKIT_MENGINE_H
#define MXKIT_MENGINE_H

/* mengine - milter protocol sockets: listen, one thread per session. */

#include "smfi.h"

int     mengine_open(const char *spec, const char **err);
int     mengine_run(int listen_fd, const struct smfiDesc *desc);
void    mengine_drain(long long drain_ms);
void    mengine_stop(void);

extern int mengine_timeout;		/* seconds without progress, per session */
extern int mengine_max_sessions;	/* sessions (and threads) at most */

#endif
