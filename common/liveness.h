#ifndef MXKIT_LIVENESS_H
#define MXKIT_LIVENESS_H

/* liveness - are the daemon's loops still turning? (GET /healthz) */

#include <event2/event.h>

struct liveness;

struct liveness *liveness_watch(struct event_base *base, const char *name);
struct liveness *liveness_worker(struct event_base *base, int index);
struct liveness *liveness_add(const char *name);
void    liveness_beat(struct liveness *live);
void    liveness_unwatch(struct liveness **livep);
const char *liveness_check(void);

#endif
