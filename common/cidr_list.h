#ifndef MXKIT_CIDR_LIST_H
#define MXKIT_CIDR_LIST_H

/* cidr_list - IPv4/IPv6 network lists with fast matching. */

#include <sys/socket.h>

struct cidr_list;

struct cidr_list *cidr_list_create(void);
const char *cidr_list_add(struct cidr_list *list, const char *cidr);
const char *cidr_list_parse(struct cidr_list *list, const char *text, char **bad_item);
int     cidr_list_match_addr(const struct cidr_list *list, const struct sockaddr *sa);
int     cidr_list_match_str(const struct cidr_list *list, const char *address);
int     cidr_list_covers(const struct cidr_list *list, int family);
int     cidr_list_link_local(const struct cidr_list *list);
int     cidr_list_count(const struct cidr_list *list);
void    cidr_list_destroy(struct cidr_list **list);

#endif
