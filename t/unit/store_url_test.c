/* store_url_test - unit tests for policyd-ratelimit/store_url.c */

#include "build_config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/un.h>
#include <unistd.h>

#include "store.h"
#include "tap.h"

#define SECRET "S3cr:t/p@ss"

/* refused - the error for text, and that it leaks none of the URL */

static void refused(const char *text, const char *want, const char *name)
{
    struct store_url url;
    const char *err = store_url_parse(text, &url);

    ok(err != NULL && strstr(err, want) != NULL, "%s: refused (%s)", name, err ? err : "OK");
    ok(err == NULL || (strstr(err, "S3cr") == NULL && strstr(err, "host.example") == NULL),
       "%s: the error quotes no part of the URL", name);
    ok(url.password[0] == 0 && url.host[0] == 0, "%s: nothing half-parsed is kept", name);
}

static void parsed(const char *text, const char *host, int port, int db, const char *user,
		           const char *password, const char *shown)
{
    struct store_url url;
    const char *err = store_url_parse(text, &url);

    ok(err == NULL, "%s parses%s%s", shown, err ? ": " : "", err ? err : "");
    is_str(url.host, host, "%s: host", shown);
    is_int(url.port, port, "%s: port", shown);
    is_int(url.db, db, "%s: db", shown);
    is_str(url.user, user, "%s: user", shown);
    is_str(url.password, password, "%s: password, byte for byte", shown);
    is_str(url.text, shown, "printable form masks the password");
    ok(strstr(url.text, "S3cr") == NULL, "%s: no secret in the printable form", shown);
}

/* write_file - a temporary file holding len bytes of data; its path */

static char *write_file(const char *data, size_t len)
{
    static char path[64];
    FILE   *fp;

    snprintf(path, sizeof(path), "/tmp/store_url_test.%d", (int) getpid());
    if ((fp = fopen(path, "w")) == NULL || fwrite(data, 1, len, fp) != len || fclose(fp) != 0)
	abort();				/* no TAP plan: the run fails */
    return (path);
}

/* password_file - a URL and a file's content: the outcome */

static void password_file(const char *text, const char *data, size_t len, const char *want,
			          const char *name)
{
    struct store_url url;
    const char *err = store_url_parse_file(text, &url);
    char   *path = write_file(data, len);

    if (err == NULL)
	err = store_url_password_file(&url, path);
    if (want[0] == '=') {
	ok(err == NULL, "%s: accepted%s%s", name, err ? ": " : "", err ? err : "");
	is_str(url.password, want + 1, "%s: the password, byte for byte", name);
	ok(strstr(url.text, path) && strstr(url.text, want + 1) == NULL,
	   "%s: printable form names the file, not the password (%s)", name, url.text);
    } else {
	ok(err && strstr(err, want), "%s: refused (%s)", name, err ? err : "OK");
	ok(err == NULL || strstr(err, "S3cr") == NULL, "%s: the error has no password", name);
    }
    unlink(path);
}

static void password_files(void)
{
    struct store_url url;
    char    big[STORE_PASSWORD_MAX + 2], want[STORE_PASSWORD_MAX + 2];

    password_file("redis://127.0.0.1/2", SECRET "\n", strlen(SECRET) + 1, "=" SECRET,
		  "file with a line end");
    password_file("redis://mxkit:@127.0.0.1/2", SECRET "\r\n", strlen(SECRET) + 2,
		  "=" SECRET, "ACL user, file with CRLF");
    password_file("redis+unix:///run/r.sock", " sp ace ", 8, "= sp ace ",
		  "unix socket, spaces kept");
    password_file("redis://127.0.0.1/2", SECRET, strlen(SECRET), "=" SECRET, "no line end");
    password_file("redis://127.0.0.1/2", "\n", 1, "empty", "only a line end");
    password_file("redis://127.0.0.1/2", "", 0, "empty", "empty file");
    password_file("redis://127.0.0.1/2", SECRET "\nS3crsecond\n", strlen(SECRET) + 12,
		  "one line", "two lines");
    password_file("redis://127.0.0.1/2", "S3cr\0x", 6, "NUL", "NUL byte");
    memset(big, 'S', sizeof(big));
    want[0] = '=';
    memcpy(want + 1, big, STORE_PASSWORD_MAX);
    want[STORE_PASSWORD_MAX + 1] = 0;
    password_file("redis://127.0.0.1/2", big, STORE_PASSWORD_MAX, want, "longest password");
    password_file("redis://127.0.0.1/2", big, STORE_PASSWORD_MAX + 1, "longer than",
		  "one byte too long");
    password_file("redis://:" SECRET "@127.0.0.1/2", "x", 1, "give the password once",
		  "a password in the URL too");
    password_file("redis://:@127.0.0.1/2", "x", 1, "without a user", "\":@\" alone");
    password_file("memory", "x", 1, "memory", "memory store");
    ok(store_url_parse_file("redis://h/1", &url) == NULL
       && (store_url_password_file(&url, "/nonexistent/pw")) != NULL
       && strstr(store_url_password_file(&url, "/nonexistent/pw"), "cannot open /nonexistent"),
       "missing file: \"cannot open PATH: ...\"");
}

static void sentinels(void)
{
    struct store_url url;
    char    text[2000];
    size_t  len;

    ok(store_url_parse("redis-sentinel://s1.example:26380,[::1],192.0.2.3/my-master_1.x/2",
		       &url) == NULL, "redis-sentinel:// with three Sentinels");
    ok(url.sentinel && url.redis && url.nsentinels == 3 && url.db == 2
       && strcmp(url.master, "my-master_1.x") == 0 && url.host[0] == 0,
       "three Sentinels, master name, database; no master address yet");
    ok(strcmp(url.sentinels[0].host, "s1.example") == 0 && url.sentinels[0].port == 26380
       && strcmp(url.sentinels[1].host, "::1") == 0 && url.sentinels[1].port == 26379
       && strcmp(url.sentinels[2].host, "192.0.2.3") == 0 && url.sentinels[2].port == 26379,
       "each Sentinel's host and port (26379 by default)");
    is_str(url.text, "redis-sentinel://s1.example:26380,[::1]:26379,192.0.2.3:26379/"
	   "my-master_1.x/2", "redis-sentinel:// printable form");
    ok(store_url_parse("redis-sentinel://mxkit:" SECRET "@h:1/m", &url) == NULL
       && strcmp(url.password, SECRET) == 0 && strcmp(url.user, "mxkit") == 0,
       "redis-sentinel:// with the master's credentials");
    is_str(url.text, "redis-sentinel://mxkit:***@h:1/m/0", "their printable form masks them");
    ok(store_url_parse_file("redis-sentinel://h/m", &url) == NULL && url.sentinel,
       "redis-sentinel:// with a password file");
    refused("redis-sentinel://host.example", "MASTERNAME", "no master name");
    refused("redis-sentinel://host.example/", "MASTERNAME", "empty master name");
    refused("redis-sentinel://host.example/a b", "master name", "space in the master name");
    refused("redis-sentinel://host.example/m/16", "database", "DB 16");
    refused("redis-sentinel://host.example,,h2/m", "no host", "empty Sentinel in the list");
    refused("redis-sentinel://host.example,/m", "no host", "trailing comma");
    refused("redis-sentinel://host.example:0/m", "port", "port 0");
    refused("redis-sentinel://S3crpass@host.example/m", "credentials", "password without ':'");
    memcpy(text, "redis-sentinel://", 17);
    len = 17;
    for (int i = 0; i <= STORE_SENTINELS_MAX; i++)
	len += snprintf(text + len, sizeof(text) - len, "%shost.example:%d", i ? "," : "", 100 + i);
    snprintf(text + len, sizeof(text) - len, "/m");
    refused(text, "at most 16", "17 Sentinels");
    *strrchr(text, ',') = 0;			/* without the 17th */
    ok(store_url_parse(strcat(text, "/m"), &url) == NULL && url.nsentinels == 16
       && url.sentinels[15].port == 115, "16 Sentinels: all kept (%d)", url.nsentinels);
}

/*
 * unix_paths - a path must fit sun_path (107 bytes): hiredis cut a
 * longer one to 107 bytes and connected, and sent AUTH, to whatever
 * listened at the shorter path.
 */
static void unix_paths(void)
{
    struct sockaddr_un sun;
    struct store_url url;
    char    path[300], text[400];
    size_t  max = sizeof(sun.sun_path) - 1;
    const size_t lens[] = {max - 1, max, max + 1, max + 42, 255};

    for (size_t i = 0, len; i < sizeof(lens) / sizeof(lens[0]); i++) {
	len = lens[i];
	memset(path, 'r', len);
	path[0] = '/';
	path[len] = 0;
	snprintf(text, sizeof(text), "redis+unix://%s?db=1", path);
	if (len <= max)
	    ok(store_url_parse(text, &url) == NULL && strcmp(url.path, path) == 0,
	       "redis+unix:// path of %zu bytes: taken whole", len);
	else
	    refused(text, "longer than 107 bytes", "redis+unix:// path past sun_path");
    }
}

int     main(void)
{
    struct store_url url;
    char    text[600];

    ok(store_url_parse("memory", &url) == NULL && !url.redis, "memory");
    parsed("redis://127.0.0.1", "127.0.0.1", 6379, 0, "", "", "redis://127.0.0.1:6379/0");
    parsed("redis://host.example:6380/15", "host.example", 6380, 15, "", "",
	   "redis://host.example:6380/15");
    parsed("redis://h:1/", "h", 1, 0, "", "", "redis://h:1/0");
    /* numbers that are no dotted quad: readers disagree (helper-122: the
       daemon read 0177 as decimal, inet_aton() as octal, and the check
       against its own sockets missed 127.000.000.001) */
    refused("redis://127.000.000.001:6379", "no IPv4 address as a.b.c.d", "leading zeros");
    refused("redis://0177.0.0.1", "no IPv4 address as a.b.c.d", "an octal-looking part");
    refused("redis://127.1/0", "no IPv4 address as a.b.c.d", "two parts");
    refused("redis://2130706433", "no IPv4 address as a.b.c.d", "one number");
    refused("redis://0x7f.1", "no IPv4 address as a.b.c.d", "hex");
    refused("redis://redis.0x7f", "no IPv4 address as a.b.c.d", "a hex last label");
    refused("redis://10.0.0.1.", "no IPv4 address as a.b.c.d", "a dotted quad and a dot");
    parsed("redis://10.0.20.5:6379", "10.0.20.5", 6379, 0, "", "", "redis://10.0.20.5:6379/0");
    parsed("redis://redis-0.redis.svc:6379", "redis-0.redis.svc", 6379, 0, "", "",
	   "redis://redis-0.redis.svc:6379/0");
    parsed("redis://123.example", "123.example", 6379, 0, "", "", "redis://123.example:6379/0");
    parsed("redis://cafe", "cafe", 6379, 0, "", "", "redis://cafe:6379/0");
    parsed("redis://0xcafe-1", "0xcafe-1", 6379, 0, "", "", "redis://0xcafe-1:6379/0");
    parsed("redis://:" SECRET "@host.example:65535/3", "host.example", 65535, 3, "", SECRET,
	   "redis://:***@host.example:65535/3");
    parsed("redis://mxkit:" SECRET "@[::1]:7000/2", "::1", 7000, 2, "mxkit", SECRET,
	   "redis://mxkit:***@[::1]:7000/2");
    ok(store_url_parse("redis+unix:///run/redis/redis.sock?db=7", &url) == NULL
       && strcmp(url.path, "/run/redis/redis.sock") == 0 && url.db == 7,
       "redis+unix:// with ?db=");
    is_str(url.text, "redis+unix:///run/redis/redis.sock?db=7", "redis+unix:// printable form");

    refused("redis://:" SECRET "@host.example:abc/0", "port", "non-numeric port");
    refused("redis://:" SECRET "@host.example:0/0", "port", "port 0");
    refused("redis://:" SECRET "@host.example:65536/0", "port", "port 65536");
    refused("redis://:" SECRET "@host.example:/0", "port", "empty port");
    refused("redis://:" SECRET "@host.example:6379999999/0", "port", "huge port");
    refused("redis://:" SECRET "@host.example/16", "database", "DB 16");
    refused("redis://:" SECRET "@host.example/99", "database", "DB 99");
    refused("redis://:" SECRET "@host.example/abc", "database", "DB abc");
    refused("redis://:" SECRET "@host.example/-1", "database", "DB -1");
    refused("redis://:" SECRET "@host.example/1?x=y", "database", "DB with a query");
    refused("redis://S3crpass@host.example/0", "credentials", "password without ':'");
    refused("redis://:@host.example/0", "empty", "empty password");
    refused("redis://:S3crpass/0", "host", "'@' missing: password would be the host");
    refused("redis://:" SECRET "@/0", "host", "empty host");
    refused("redis://:" SECRET "@[::1/0", "IPv6", "unclosed IPv6 bracket");
    refused("redis://:" SECRET "@host.example x/0", "host", "space in host");
    refused("redis://:" SECRET "@host..example/0", "host name", "empty label");
    refused("redis://:" SECRET "@.host.example/0", "host name", "leading dot");
    refused("redis://:" SECRET "@h\xc3\xa9.example/0", "host name", "8-bit host (IDN not encoded)");
    refused("redis://:" SECRET "@[host.example]/0", "host name", "a name in brackets");
    refused("redis://:" SECRET "@ho$t.example/0", "host name", "'$' in host");
    refused("redis://:" SECRET "@aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa/0",
	    "host name", "64-byte label");
    parsed("redis://aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa.x/0",
	   "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa.x", 6379, 0, "", "",
	   "redis://aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa.x:6379/0");
    parsed("redis://Redis_1.svc.cluster.local.:7000/0", "Redis_1.svc.cluster.local.", 7000, 0,
	   "", "", "redis://Redis_1.svc.cluster.local.:7000/0");
    parsed("redis://redis/2", "redis", 6379, 2, "", "", "redis://redis:6379/2");
    parsed("redis://[fe80::1%eth0]:7000/0", "fe80::1%eth0", 7000, 0, "", "",
	   "redis://[fe80::1%eth0]:7000/0");
    for (int len = 250; len <= 256; len++) {	/* a name of 253 bytes (254 with the dot) */
	char    name[300], url[400], shown[400];

	for (int i = 0; i < len; i++)
	    name[i] = i % 2 ? '.' : 'a';
	name[len] = 0;
	snprintf(url, sizeof(url), "redis://%s/0", name);
	snprintf(shown, sizeof(shown), "redis://%s:6379/0", name);
	if (len <= 254 && !(len == 254 && name[253] != '.'))
	    parsed(url, name, 6379, 0, "", "", shown);
	else
	    refused(url, "host", "a name past 253 bytes");
    }
    refused("postgres://:" SECRET "@host.example/0", "store must be", "unknown scheme");
    refused("Redis://:" SECRET "@host.example/0", "store must be", "scheme is case-sensitive");
    refused("", "store must be", "empty value");
    refused("\"redis://:" SECRET "@host.example/0\"", "in quotes", "a quoted URL");
    refused("\"memory\"", "in quotes", "a quoted memory");
    refused("redis+unix://relative.sock", "absolute", "relative socket path");
    refused("redis+unix:///run/r.sock?db=16", "database", "unix DB 16");
    unix_paths();
    refused("redis+unix:///run/r.sock?pw=" SECRET, "db=", "unix unknown query");
    memset(text, 'p', sizeof(text) - 1);
    text[sizeof(text) - 1] = 0;
    memcpy(text, "redis://:", 9);
    memcpy(text + sizeof(text) - 20, "@host.example:1/0", 18);
    refused(text, "too long", "password longer than the buffer");
    password_files();
    sentinels();
    return (tap_done());
}
