#ifndef MXKIT_ADDR_H
#define MXKIT_ADDR_H

/* addr - listener and backend addresses. */

#include <sys/socket.h>
#include <sys/un.h>

#define ADDR_TEXT_MAX 160

/* addr_parse()'s error for a quoted value; store URLs say the same */
#define ADDR_QUOTED "the value is in quotes: write it without them (values are " \
	"taken as written, as in Postfix's main.cf)"

#include <netinet/in.h>

union addr_sockaddr {
    struct sockaddr sa;
    struct sockaddr_in in;
    struct sockaddr_in6 in6;
    struct sockaddr_un un;
    struct sockaddr_storage storage;
};

struct addr {
    union addr_sockaddr u;
    socklen_t salen;
    int     family;			/* AF_INET, AF_INET6, AF_UNIX */
};

const char *addr_parse(const char *spec, struct addr *addr);
const char *addr_format(const struct sockaddr *sa, char *buf, size_t len);
const char *addr_format_host(const struct sockaddr *sa, char *buf, size_t len);
int     addr_port(const struct sockaddr *sa);
int     addr_listen(const struct addr *addr, int backlog, int nonblock);
int     addr_listen_shared(const struct addr *addr, int backlog, int first);
int     addr_connect(const struct addr *addr, int nonblock);
const char *addr_unix_check(const char *path);
int     addr_unix_stale(const char *path);
long    addr_port_number(const char *text, size_t len);
int     addr_reaches(const struct addr *dest, const struct addr *listen);

#endif
