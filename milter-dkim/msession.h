#ifndef MXKIT_MSESSION_H
#define MXKIT_MSESSION_H

/* msession - one milter protocol session: state, callbacks, replies. */

#include <stdint.h>

#include "mproto.h"
#include "smfi.h"

#define MSESSION_MACROS	7		/* connect .. end of header */
#define MSESSION_MACRO_MAX 65536	/* bytes in one macro packet */

struct msession {
    const struct smfiDesc *desc;
    int     state;
    int     closed;			/* the close callback ran */
    int     started;			/* a message began (MAIL) on this connection */
    uint32_t version;			/* agreed with the MTA */
    unsigned long mta_aflags;		/* what the MTA offered */
    unsigned long mta_pflags;
    unsigned long aflags;		/* what we take */
    unsigned long pflags;		/* steps skipped, replies left out */
    unsigned long pflags2mta;		/* what the MTA is told */
    void   *priv;
    char   *reply;			/* smfi_setreply() */
    char   *mac_buf[MSESSION_MACROS];	/* a copy of each macro packet */
    char  **mac_argv[MSESSION_MACROS];	/* name, value, ..., NULL */
    char   *symlist[MSESSION_MACROS];	/* smfi_setsymlist(), by SMFIM_* */
    struct mproto_buf out;		/* replies not yet written */
    const char *error;			/* why the session ended */
};

#define MSESSION_MORE	0		/* read on */
#define MSESSION_END	1		/* the MTA said QUIT */
#define MSESSION_ERROR	(-1)		/* error says why */

void    msession_init(struct msession *s, const struct smfiDesc *desc);
int     msession_input(struct msession *s, char *buf, size_t have, size_t *used);
int     msession_packet(struct msession *s, int cmd, char *data, size_t len);
void    msession_free(struct msession *s);
int     msession_between(const struct msession *s);

#endif
