#ifndef MXKIT_SMFI_H
#define MXKIT_SMFI_H

/*
 * smfi - the part of libmilter's programming interface that milter.c
 * uses, served by msession(3) and mengine(3) instead of libmilter. The
 * names, types and numbers are the milter protocol's (version 6, as
 * Postfix's milter8 and Sendmail speak it), so the callbacks read as
 * they did on libmilter.
 */

#include <stddef.h>
#include <sys/socket.h>

typedef int sfsistat;
typedef struct msession SMFICTX;
typedef struct sockaddr _SOCK_ADDR;

#define MI_SUCCESS	0
#define MI_FAILURE	(-1)

/* callback results */
#define SMFIS_CONTINUE	0
#define SMFIS_REJECT	1
#define SMFIS_DISCARD	2
#define SMFIS_ACCEPT	3
#define SMFIS_TEMPFAIL	4
#define SMFIS_NOREPLY	7
#define SMFIS_SKIP	8
#define SMFIS_ALL_OPTS	10

#define SMFI_VERSION	0x01000001	/* what libmilter 8.14+ reports */

/* actions the milter may take at end of message */
#define SMFIF_ADDHDRS	0x00000001L
#define SMFIF_CHGBODY	0x00000002L
#define SMFIF_ADDRCPT	0x00000004L
#define SMFIF_DELRCPT	0x00000008L
#define SMFIF_CHGHDRS	0x00000010L
#define SMFIF_QUARANTINE 0x00000020L
#define SMFIF_CHGFROM	0x00000040L
#define SMFIF_ADDRCPT_PAR 0x00000080L
#define SMFIF_SETSYMLIST 0x00000100L

/* protocol steps not sent (NO*), and steps sent without a reply (NR_*) */
#define SMFIP_NOCONNECT	0x00000001L
#define SMFIP_NOHELO	0x00000002L
#define SMFIP_NOMAIL	0x00000004L
#define SMFIP_NORCPT	0x00000008L
#define SMFIP_NOBODY	0x00000010L
#define SMFIP_NOHDRS	0x00000020L
#define SMFIP_NOEOH	0x00000040L
#define SMFIP_NR_HDR	0x00000080L
#define SMFIP_NOHREPL	SMFIP_NR_HDR
#define SMFIP_NOUNKNOWN	0x00000100L
#define SMFIP_NODATA	0x00000200L
#define SMFIP_SKIP	0x00000400L
#define SMFIP_RCPT_REJ	0x00000800L
#define SMFIP_NR_CONN	0x00001000L
#define SMFIP_NR_HELO	0x00002000L
#define SMFIP_NR_MAIL	0x00004000L
#define SMFIP_NR_RCPT	0x00008000L
#define SMFIP_NR_DATA	0x00010000L
#define SMFIP_NR_UNKN	0x00020000L
#define SMFIP_NR_EOH	0x00040000L
#define SMFIP_NR_BODY	0x00080000L
#define SMFIP_HDR_LEADSPC 0x00100000L

struct smfiDesc {
    char   *xxfi_name;
    int     xxfi_version;
    unsigned long xxfi_flags;
    sfsistat (*xxfi_connect) (SMFICTX *, char *, _SOCK_ADDR *);
    sfsistat (*xxfi_helo) (SMFICTX *, char *);
    sfsistat (*xxfi_envfrom) (SMFICTX *, char **);
    sfsistat (*xxfi_envrcpt) (SMFICTX *, char **);
    sfsistat (*xxfi_header) (SMFICTX *, char *, char *);
    sfsistat (*xxfi_eoh) (SMFICTX *);
    sfsistat (*xxfi_body) (SMFICTX *, unsigned char *, size_t);
    sfsistat (*xxfi_eom) (SMFICTX *);
    sfsistat (*xxfi_abort) (SMFICTX *);
    sfsistat (*xxfi_close) (SMFICTX *);
    sfsistat (*xxfi_unknown) (SMFICTX *, const char *);
    sfsistat (*xxfi_data) (SMFICTX *);
    sfsistat (*xxfi_negotiate) (SMFICTX *, unsigned long, unsigned long, unsigned long,
				        unsigned long, unsigned long *, unsigned long *,
				        unsigned long *, unsigned long *);
};

extern int smfi_setreply(SMFICTX *, char *, char *, char *);
extern int smfi_setpriv(SMFICTX *, void *);
extern void *smfi_getpriv(SMFICTX *);
extern char *smfi_getsymval(SMFICTX *, char *);
extern int smfi_insheader(SMFICTX *, int, char *, char *);
extern int smfi_chgheader(SMFICTX *, char *, int, char *);

/* smfi_setsymlist(): the macros the MTA sends at a stage (negotiate only) */
#define SMFIM_CONNECT	0
#define SMFIM_HELO	1
#define SMFIM_ENVFROM	2
#define SMFIM_ENVRCPT	3
#define SMFIM_DATA	4
#define SMFIM_EOM	5
#define SMFIM_EOH	6
extern int smfi_setsymlist(SMFICTX *, int, char *);

/*
 * Not libmilter's: the protocol flags negotiated on this milter
 * connection. A milter keeps what its negotiate callback chose in its
 * private data, which the close callback frees at QUIT_NC; the next
 * SMTP connection on the same milter connection reads them here.
 */
extern unsigned long smfi_getpflags(SMFICTX *);

#endif
