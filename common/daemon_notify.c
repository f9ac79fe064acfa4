/*
 * NAME
 *	daemon_notify 3
 * SUMMARY
 *	tell the service manager the daemon's state (systemd's sd_notify)
 * SYNOPSIS
 *	#include "daemon.h"
 *
 *	int	daemon_notify(state)
 * DESCRIPTION
 *	daemon_notify() sends state ("READY=1", "STOPPING=1",
 *	"RELOADING=1") as one datagram to the AF_UNIX socket named by
 *	$NOTIFY_SOCKET (a path, or "@name" in the abstract namespace),
 *	which systemd sets for a Type=notify unit: "systemctl start"
 *	then returns once the daemon serves, not once it was forked. No
 *	$NOTIFY_SOCKET (not under systemd), nothing is sent.
 *
 *	The protocol is one datagram, documented by systemd as stable and
 *	meant to be spoken without libsystemd; speaking it here keeps the
 *	daemons buildable where there is no libsystemd (Alpine, musl).
 * DIAGNOSTICS
 *	0 when sent or not asked for; -1 with a warning (once per cause)
 *	when $NOTIFY_SOCKET is unusable (not a socket path, no such socket,
 *	not a datagram socket, its queue full: the datagram is never waited
 *	for, so a service manager that does not read cannot stop the
 *	daemon from serving, nor from stopping): the daemon serves on, and
 *	systemd times the start out and says why in its own log.
 */

#include "build_config.h"

#include <errno.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "daemon.h"
#include "msg.h"

int     daemon_notify(const char *state)
{
    static int warned;
    const char *path = getenv("NOTIFY_SOCKET");
    union {
	struct sockaddr sa;
	struct sockaddr_un un;
    }       addr;
    size_t  len;
    int     fd, rc = 0;

    if (path == NULL || *path == 0)
	return (0);
    len = strlen(path);
    if ((path[0] != '/' && path[0] != '@') || len >= sizeof(addr.un.sun_path)) {
	if (!warned++)
	    msg_warn("NOTIFY_SOCKET \"%.100s%s\": %s: the service manager is not told %s",
		     path, len > 100 ? "..." : "", len >= sizeof(addr.un.sun_path) ?
		     "longer than a UNIX socket path can be" : "not a UNIX socket path "
		     "(neither /path nor @name)", state);
	return (-1);
    }
    memset(&addr, 0, sizeof(addr));
    addr.un.sun_family = AF_UNIX;
    memcpy(addr.un.sun_path, path, len);
    if (path[0] == '@')
	addr.un.sun_path[0] = 0;		/* the abstract namespace */
    if ((fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0)) < 0
	|| sendto(fd, state, strlen(state), MSG_NOSIGNAL | MSG_DONTWAIT, &addr.sa,
		  (socklen_t) (offsetof(struct sockaddr_un, sun_path) + len)) < 0) {
	if (!warned++)
	    msg_warn("NOTIFY_SOCKET %s: %m: the service manager is not told %s", path, state);
	rc = -1;
    }
    if (fd >= 0)
	close(fd);
    return (rc);
}
