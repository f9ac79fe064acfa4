#ifndef LMTP_PEER_H
#define LMTP_PEER_H

/* lmtp_peer - the LMTP client's own address, past XCLIENT */

struct module;
struct ip_addr;

void    lmtp_peer_init(struct module *module);
void    lmtp_peer_deinit(void);
const struct ip_addr *lmtp_peer_real(int *known);

#endif
