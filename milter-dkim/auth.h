#ifndef MXKIT_AUTH_H
#define MXKIT_AUTH_H

/* auth - SPF and DMARC next to DKIM verification: settings, verdict, A-R text. */

#include <opendkim/dkim.h>

#include "config.h"
#include "message.h"

struct auth_conf;

enum auth_verdict {
    AUTH_ACCEPT,
    AUTH_REJECT,			/* 550 5.7.1, reply set */
    AUTH_DEFER,				/* 451, reply set */
};

struct auth_session {			/* what the milter knows of the client */
    const char *client;			/* IP address, or NULL */
    const char *helo;
    const char *mail_from;		/* without <>; "" for the null sender */
};

void    auth_load(struct config *cfg, DKIM_LIB *lib, int verify, struct auth_conf **out);
void    auth_free(struct auth_conf **conf);
void    auth_begin(const struct auth_conf *conf, const struct message *msg);
void    auth_end(void);
enum auth_verdict auth_evaluate(const struct auth_conf *conf, DKIM *dkim, DKIM_STAT eom,
				        const struct message *msg,
				        const struct auth_session *session, char **results,
				        const char **code, const char **dsn, const char **reply);
void    auth_metrics_init(void);

#endif
