#ifndef MXKIT_MILTER_H
#define MXKIT_MILTER_H

/* milter - the milter callbacks of milter-dkim (smfi.h, served by mengine(3)). */

#include "smfi.h"

extern struct smfiDesc milter_desc;

/* Set before mengine_run() when the socket is a UNIX-domain one: the MTA may
 * then send headers and body without waiting for our replies. */
extern int milter_local_socket;

/* milter_metrics(3): the Prometheus series */
enum milter_event {
    MILTER_SIGNED, MILTER_SIGN_FAILED, MILTER_BINDING, MILTER_FORGED, MILTER_EVENTS
};
struct timespec;

void    milter_metrics_init(void);
void    milter_metrics_count(enum milter_event);
void    milter_metrics_results(const char *);
void    milter_metrics_eom(const struct timespec *, const struct timespec *);

#endif
