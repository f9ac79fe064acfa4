/*
 * NAME
 *	lmtp_trust 3
 * SUMMARY
 *	may this LMTP client's mail carry trusted Authentication-Results?
 * SYNOPSIS
 *	#include "lmtp_trust.h"
 *
 *	int	lmtp_trust_client(user, networks, &why, &error_r)
 * DESCRIPTION
 *	lmtp_trust_client() judges the client of the delivery in progress
 *	by lmtp_webhook_trusted_networks (networks: the setting, or
 *	LMTP_TRUST_NETWORKS when unset) and, over a UNIX socket, by
 *	lmtp_webhook_trusted_unix_users (lmtp_peer(3) gives the address
 *	and the uid). Only the MTA whose milter-dkim removed every forged
 *	Authentication-Results header may hand over trusted ones.
 * DIAGNOSTICS
 *	1 trusted; 0 not, with *why saying which check failed; -1 with
 *	*error_r for a setting that is no list of networks or names a user
 *	that does not exist. The strings are on Dovecot's data stack.
 */

#include "lib.h"
#include "net.h"
#include "str.h"
#include "mail-user.h"

#include "lmtp_peer.h"
#include "lmtp_trust.h"

/*
 * lmtp_trust_network - one lmtp_webhook_trusted_networks entry, or -1 with
 * *error_r: no network, or one with host bits set (127.0.0.1/24, and
 * 127.0.0.1/0, which is every address, were taken as such: helper-124).
 */
static int lmtp_trust_network(const char *text, struct ip_addr *net, unsigned int *bits,
			           const char **error_r)
{
    const unsigned char *b;
    unsigned int len;

    if (net_parse_range(text, net, bits) < 0) {
	*error_r = t_strdup_printf("lmtp_webhook_trusted_networks: %s is no network "
				   "(an address or address/bits)", text);
	return (-1);
    }
    b = net->family == AF_INET ? (const unsigned char *) &net->u.ip4
	: (const unsigned char *) &net->u.ip6;
    len = net->family == AF_INET ? 4 : 16;
    for (unsigned int i = *bits; i < 8 * len; i++)
	if ((b[i / 8] >> (7 - i % 8)) & 1) {
	    *error_r = t_strdup_printf("lmtp_webhook_trusted_networks: %s has host bits set "
				       "(the network of /%u is wider than the address)",
				       text, *bits);
	    return (-1);
	}
    return (0);
}

/* lmtp_trust_in_networks - is ip (not family 0: a UNIX socket) listed? */

static bool lmtp_trust_in_networks(const struct ip_addr *ip, const struct ip_addr *nets,
				        const unsigned int *bits, unsigned int count)
{
    if (ip == NULL || ip->family == 0)
	return (TRUE);				/* lmtp_trust_unix() */
    for (unsigned int i = 0; i < count; i++)
	if (net_is_in_network(ip, nets + i, bits[i]))
	    return (TRUE);
    return (FALSE);
}

/*
 * lmtp_trust_unix - a UNIX socket's client: root or one of
 * lmtp_webhook_trusted_unix_users (default postfix, which need not
 * exist). Dovecot's stock lmtp socket is mode 0666 (helper-127: any local
 * account's forged bill said dmarc=pass).
 */
static int lmtp_trust_unix(struct mail_user *user, const char **why,
				        const char **error_r)
{
    const char *users = mail_user_plugin_getenv(user, "lmtp_webhook_trusted_unix_users");
    uid_t   uid;
    int     ret;

    if (lmtp_peer_unix_uid(&uid) < 0) {
	*why = "the UNIX socket's peer is unknown";
	return (0);
    }
    if ((ret = lmtp_peer_uid_listed(uid, users ? users : "postfix", users != NULL,
				    error_r)) == 0)
	*why = t_strdup_printf("LMTP client over a UNIX socket, uid %ld, is not in "
			       "lmtp_webhook_trusted_unix_users", (long) uid);
    return (ret);
}

/*
 * lmtp_trust_client - may this LMTP client's mail carry trusted
 * Authentication-Results? 1 yes, 0 no, -1 with *error_r for a value that
 * is no list of networks. The MTA whose milter-dkim removed every forged
 * one is trusted; a client that reaches lmtp past it (helper-123: Mailu's
 * lmtp listens on the container network, port 2525, and an event said
 * dmarc=pass for a forged bill) is not. A UNIX socket (no address) is:
 * its file permissions decide who connects. Both the address the
 * delivery names (XCLIENT ADDR= sets it) and the connection's own
 * (lmtp_peer(3)) must be listed: XCLIENT let a client claim the MTA's
 * address (helper-124). *why says which one was not.
 */
int     lmtp_trust_client(struct mail_user *user, const char *networks,
				          const char **why, const char **error_r)
{
    const char *const *list = t_strsplit_spaces(networks, ", ");
    unsigned int count = str_array_length(list), *bits = t_new(unsigned int, count + 1);
    struct ip_addr *nets = t_new(struct ip_addr, count + 1);
    const struct ip_addr *real;
    int     known;

    if (count == 0) {
	*error_r = "lmtp_webhook_trusted_networks: empty: list the MTA's networks, or "
	    "leave it out for 127.0.0.0/8 ::1";
	return (-1);
    }
    for (unsigned int i = 0; i < count; i++)
	if (lmtp_trust_network(list[i], nets + i, bits + i, error_r) < 0)
	    return (-1);
    real = lmtp_peer_real(&known);
    *why = NULL;
    if (!lmtp_trust_in_networks(user->conn.remote_ip, nets, bits, count))
	*why = t_strdup_printf("LMTP client %s is not in lmtp_webhook_trusted_networks",
			       net_ip2addr(user->conn.remote_ip));
    else if (!known)
	*why = "the LMTP connection's own address is unknown (lmtp_webhook is not in "
	    "protocol lmtp's mail_plugins)";
    else if (!lmtp_trust_in_networks(real, nets, bits, count))
	*why = t_strdup_printf("LMTP connection from %s (XCLIENT ADDR=%s) is not in "
			       "lmtp_webhook_trusted_networks", net_ip2addr(real),
			       net_ip2addr(user->conn.remote_ip));
    else if (real->family == 0)
	return (lmtp_trust_unix(user, why, error_r));
    return (*why == NULL);
}

