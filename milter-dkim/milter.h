#ifndef MXKIT_MILTER_H
#define MXKIT_MILTER_H

/* milter - libmilter callbacks of milter-dkim. */

#include <libmilter/mfapi.h>

extern struct smfiDesc milter_desc;

#endif
