/*
 * NAME
 *	lmtp_peer 3
 * SUMMARY
 *	the LMTP client's own address, past XCLIENT
 * SYNOPSIS
 *	#include "lmtp_peer.h"
 *
 *	void	lmtp_peer_init(module)
 *	void	lmtp_peer_deinit()
 *
 *	const struct ip_addr *lmtp_peer_real(known)
 * DESCRIPTION
 *	Dovecot's LMTP offers XCLIENT to the clients in
 *	login_trusted_networks (Mailu: its whole Compose network), and
 *	XCLIENT ADDR= replaces the client address a delivery sees
 *	(mail_user's conn.remote_ip): a container that may not hand over
 *	trusted Authentication-Results claimed the MTA's address and its
 *	forged bill said dmarc=pass (helper-124). The address of the
 *	connection itself is the lmtp client's real_remote_ip.
 *
 *	lmtp_peer_init() chains lmtp's client-created hook (Dovecot loads
 *	protocol lmtp's mail_plugins before it creates each client, so the
 *	first client of a process is seen too) and wraps each client's
 *	local delivery. lmtp_peer_real() returns, during a delivery, the
 *	address the client connected from (family 0: a UNIX socket) and
 *	sets *known; outside one, or for a client created before the
 *	plugin was loaded (the plugin named in a userdb's mail_plugins
 *	only), NULL and *known = 0.
 *
 *	lmtp_peer_proxy_blind() says why, during a delivery through
 *	Dovecot's lmtp_proxy (session id "ID:P<n>"), the proxy's client is
 *	unknown: XCLIENT passed no ADDR and PORT, as for a client of the
 *	proxy's UNIX socket (helper-128: its stock socket is 0666, and
 *	any local account there was trusted as the proxy); NULL otherwise.
 *
 *	lmtp_peer_unix_uid() gives, during a delivery over a UNIX socket,
 *	the uid of the process that connected (SO_PEERCRED, read when the
 *	client was created): 0, or -1 when it is not known. Dovecot's stock
 *	lmtp socket is mode 0666: every local account may connect, so the
 *	socket's permissions alone cannot say the client is the MTA
 *	(helper-127). lmtp_peer_uid_listed() says whether a uid is root or
 *	one of users (names or numbers, separated by spaces or commas): 1,
 *	0, or -1 with *error_r for a user that does not exist (strict) or
 *	is ignored (not strict: the default's user may be absent).
 */

#include "lib.h"
#include "net.h"
#include "ipwd.h"
#include "module-context.h"
#include "lmtp-common.h"
#include "smtp-server-private.h"	/* the connection's fd (SO_PEERCRED) */

#include <errno.h>
#include <stdlib.h>

#include "mime.h"
#include "lmtp_peer.h"

struct lmtp_peer_client {
    union lmtp_module_context module_ctx;
    struct net_unix_cred cred;		/* a UNIX socket's peer */
    bool    cred_known;
};

#define LMTP_PEER_CONTEXT(obj) MODULE_CONTEXT_REQUIRE(obj, lmtp_peer_module)
static MODULE_CONTEXT_DEFINE_INIT(lmtp_peer_module, &lmtp_module_register);

static lmtp_client_created_func_t *lmtp_peer_next_hook;
static const struct client *lmtp_peer_delivering;	/* lmtp runs one at a time */

static int lmtp_peer_local_deliver(struct client *client, struct lmtp_recipient *lrcpt,
				           struct smtp_server_cmd_ctx *cmd,
				           struct smtp_server_transaction *trans,
				           struct lmtp_local_deliver_context *lldctx)
{
    struct lmtp_peer_client *pc = LMTP_PEER_CONTEXT(client);
    const struct client *outer = lmtp_peer_delivering;
    int     ret;

    lmtp_peer_delivering = client;
    ret = pc->module_ctx.super.local_deliver(client, lrcpt, cmd, trans, lldctx);
    lmtp_peer_delivering = outer;
    return (ret);
}

static void lmtp_peer_client_created(struct client **clientp)
{
    struct client *client = *clientp;
    struct lmtp_peer_client *pc = p_new(client->pool, struct lmtp_peer_client, 1);

    pc->module_ctx.super = client->v;
    client->v.local_deliver = lmtp_peer_local_deliver;
    MODULE_CONTEXT_SET(client, lmtp_peer_module, pc);
    if (client->real_remote_ip.family == 0 && client->conn != NULL)
	pc->cred_known = net_getunixcred(client->conn->conn.fd_in, &pc->cred) == 0;
    if (lmtp_peer_next_hook != NULL)
	lmtp_peer_next_hook(clientp);
}

const struct ip_addr *lmtp_peer_real(int *known)
{
    *known = lmtp_peer_delivering != NULL;
    return (*known ? &lmtp_peer_delivering->real_remote_ip : NULL);
}

int     lmtp_peer_unix_uid(uid_t *uid_r)
{
    struct lmtp_peer_client *pc;

    if (lmtp_peer_delivering == NULL)
	return (-1);
    pc = LMTP_PEER_CONTEXT(lmtp_peer_delivering);
    if (!pc->cred_known)
	return (-1);
    *uid_r = pc->cred.uid;
    return (0);
}

const char *lmtp_peer_proxy_blind(const char *session_id)
{
    const struct client *c = lmtp_peer_delivering;
    const char *id = session_id, *up;

    if (c == NULL || id == NULL || *id == '\0')
	return (NULL);
    if ((up = mime_lmtp_suffix(id, 'R')) != NULL)
	id = up;
    if (mime_lmtp_suffix(id, 'P') == NULL)
	return (NULL);				/* not through Dovecot's lmtp_proxy */
    if (c->remote_port != c->real_remote_port
	|| !net_ip_compare(&c->remote_ip, &c->real_remote_ip))
	return (NULL);				/* XCLIENT ADDR/PORT: its client */
    return ("delivered through a Dovecot LMTP proxy that passed no client address "
	    "(its client came over a UNIX socket, whose user it cannot name)");
}

int     lmtp_peer_uid_listed(uid_t uid, const char *users, bool strict, const char **error_r)
{
    const char *const *list = t_strsplit_spaces(users, ", ");
    struct passwd pw;
    unsigned long num;
    char   *end;

    if (uid == 0)
	return (1);				/* root: could write the spool itself */
    for (; *list != NULL; list++) {
	if (**list >= '0' && **list <= '9') {
	    errno = 0;
	    num = strtoul(*list, &end, 10);
	    if (*end == '\0' && (errno != 0 || num != (unsigned long) (uid_t) num
				  || (uid_t) num == (uid_t) -1)) {
		*error_r = t_strdup_printf("lmtp_webhook_trusted_unix_users: %s is no uid",
					   *list);
		return (-1);
	    }
	    if (*end == '\0' && num == (unsigned long) uid)
		return (1);
	    if (*end == '\0')
		continue;
	}
	switch (i_getpwnam(*list, &pw)) {
	case 1:
	    if (pw.pw_uid == uid)
		return (1);
	    break;
	case 0:
	    if (!strict)
		break;
	    *error_r = t_strdup_printf("lmtp_webhook_trusted_unix_users: no such user: %s",
				       *list);
	    return (-1);
	default:
	    *error_r = t_strdup_printf("lmtp_webhook_trusted_unix_users: getpwnam(%s): %m",
				       *list);
	    return (-1);
	}
    }
    return (0);
}

void    lmtp_peer_init(struct module *module ATTR_UNUSED)
{
    lmtp_peer_next_hook = lmtp_client_created_hook_set(lmtp_peer_client_created);
}

void    lmtp_peer_deinit(void)
{
    (void) lmtp_client_created_hook_set(lmtp_peer_next_hook);
}
