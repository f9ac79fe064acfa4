#ifndef LMTP_TRUST_H
#define LMTP_TRUST_H

/* lmtp_trust - may this LMTP client's mail carry trusted Authentication-Results? */

struct mail_user;

/* the LMTP clients whose mail passed the MTA's milter, when unset */
#define LMTP_TRUST_NETWORKS "127.0.0.0/8 ::1"

int     lmtp_trust_client(struct mail_user *user, const char *networks, const char **why,
			          const char **error_r);

#endif
