#ifndef LMTP_PEER_H
#define LMTP_PEER_H

/* lmtp_peer - the LMTP client's own address, past XCLIENT */

struct module;
struct ip_addr;

#include <sys/types.h>
#include <stdbool.h>

void    lmtp_peer_init(struct module *module);
void    lmtp_peer_deinit(void);
const struct ip_addr *lmtp_peer_real(int *known);
int     lmtp_peer_unix_uid(uid_t *uid_r);
const char *lmtp_peer_proxy_blind(const char *session_id);
int     lmtp_peer_uid_listed(uid_t uid, const char *users, bool strict, const char **error_r);

#endif
