/*
 * NAME
 *	cidr_list 3
 * SUMMARY
 *	IPv4 and IPv6 network lists
 * SYNOPSIS
 *	#include "cidr_list.h"
 *
 *	struct cidr_list *cidr_list_create()
 *	const char *cidr_list_add(list, "10.0.0.0/8")
 *	const char *cidr_list_parse(list, "127.0.0.0/8, ::1", &bad_item)
 *	int	cidr_list_match_addr(list, sockaddr)
 *	int	cidr_list_match_str(list, "192.0.2.1")
 *	int	cidr_list_covers(list, AF_INET or AF_INET6)
 *	int	cidr_list_link_local(list)
 *	void	cidr_list_destroy(&list)
 * DESCRIPTION
 *	A list of networks ("addr/len", or a bare address for a single
 *	host). IPv4 lives in the IPv4-mapped part of the IPv6 space, so
 *	"::ffff:10.1.2.3" matches "10.0.0.0/8" as the kernel would see it.
 *
 *	Matching costs one binary search per distinct prefix length in
 *	the list: entries are kept sorted in one array per length.
 *
 *	cidr_list_covers() tells whether the list matches every address
 *	of a family, however it is written (a warning for a list of
 *	trusted peers that trusts anyone).
 *
 *	cidr_list_link_local() tells whether an entry lies within
 *	fe80::/10 or holds it (fe00::/8, 8000::/1; not a list that
 *	holds every IPv6 address, which cidr_list_covers() tells of):
 *	a link-local address is on every
 *	link at once, and a list holds no interface, so it names no
 *	single peer (a list of trusted peers refuses it).
 *
 *	Adding after matching is allowed; the arrays are re-sorted
 *	lazily on the first match after a change.
 * DIAGNOSTICS
 *	cidr_list_add() and cidr_list_parse() return NULL or a static
 *	error: bad address, bad prefix length, or host bits set beyond
 *	the prefix (a typo that would silently widen or narrow trust).
 */

#include "build_config.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "cidr_list.h"
#include "config.h"
#include "xalloc.h"

struct cidr_key {
    uint64_t hi;
    uint64_t lo;
};

struct cidr_bucket {
    struct cidr_key *keys;
    int     count;
    int     size;
};

struct cidr_list {
    struct cidr_bucket buckets[129];	/* by prefix length 0..128 */
    int     total;
    int     sorted;
};

struct cidr_list *cidr_list_create(void)
{
    return (xcalloc(1, sizeof(struct cidr_list)));
}

static struct cidr_key cidr_key_from_bytes(const unsigned char b[16])
{
    struct cidr_key key = {0, 0};

    for (int i = 0; i < 8; i++) {
	key.hi = (key.hi << 8) | b[i];
	key.lo = (key.lo << 8) | b[i + 8];
    }
    return (key);
}

static struct cidr_key cidr_key_mask(struct cidr_key key, int len)
{
    if (len <= 64) {
	key.lo = 0;
	key.hi = len == 0 ? 0 : key.hi & (~(uint64_t) 0 << (64 - len));
    } else if (len < 128) {
	key.lo &= ~(uint64_t) 0 << (128 - len);
    }
    return (key);
}

static int cidr_key_cmp(const void *a, const void *b)
{
    const struct cidr_key *x = a, *y = b;

    if (x->hi != y->hi)
	return (x->hi < y->hi ? -1 : 1);
    return (x->lo < y->lo ? -1 : x->lo > y->lo);
}

/* cidr_parse_address - text to 16 bytes; *bits = 32 or 128 */

static int cidr_parse_address(const char *text, unsigned char out[16], int *bits)
{
    struct in_addr v4;

    if (inet_pton(AF_INET, text, &v4) == 1) {
	memset(out, 0, 10);
	out[10] = out[11] = 0xff;
	memcpy(out + 12, &v4, 4);
	*bits = 32;
	return (1);
    }
    if (inet_pton(AF_INET6, text, out) == 1) {
	*bits = 128;
	return (1);
    }
    return (0);
}

const char *cidr_list_add(struct cidr_list *list, const char *cidr)
{
    char    addr_text[INET6_ADDRSTRLEN + 8];
    const char *slash = strchr(cidr, '/');
    unsigned char bytes[16];
    long long len_value;
    int     bits, len;
    struct cidr_key key, masked;
    struct cidr_bucket *bucket;
    size_t  addr_len = slash ? (size_t) (slash - cidr) : strlen(cidr);

    if (addr_len >= sizeof(addr_text))
	return ("bad network address");
    memcpy(addr_text, cidr, addr_len);
    addr_text[addr_len] = 0;
    if (!cidr_parse_address(addr_text, bytes, &bits))
	return ("bad network address");
    len = bits;
    if (slash) {
	if (config_parse_int(slash + 1, &len_value) != NULL || slash[1] == '-'
	    || len_value > bits || (slash[1] == '0' && slash[2] != 0))
	    return ("bad prefix length");
	len = (int) len_value;
    }
    if (bits == 32)
	len += 96;
    key = cidr_key_from_bytes(bytes);
    masked = cidr_key_mask(key, len);
    if (cidr_key_cmp(&key, &masked) != 0)
	return ("host bits set beyond the prefix length");
    bucket = list->buckets + len;
    if (bucket->count == bucket->size) {
	bucket->size = bucket->size ? bucket->size * 2 : 4;
	bucket->keys = xrealloc(bucket->keys, sizeof(*bucket->keys) * bucket->size);
    }
    bucket->keys[bucket->count++] = key;
    list->total++;
    list->sorted = 0;
    return (NULL);
}

const char *cidr_list_parse(struct cidr_list *list, const char *text, char **bad_item)
{
    int     count;
    char  **items = config_split_list(text, &count);
    const char *err = NULL;

    for (int i = 0; i < count && err == NULL; i++)
	if ((err = cidr_list_add(list, items[i])) != NULL && bad_item)
	    *bad_item = xstrdup(items[i]);
    config_list_free(&items);
    return (err);
}

static void cidr_list_sort(struct cidr_list *list)
{
    for (int len = 0; len <= 128; len++)
	if (list->buckets[len].count > 1)
	    qsort(list->buckets[len].keys, list->buckets[len].count,
		  sizeof(struct cidr_key), cidr_key_cmp);
    list->sorted = 1;
}

static int cidr_list_match_bytes(const struct cidr_list *list, const unsigned char b[16])
{
    struct cidr_key key = cidr_key_from_bytes(b);
    struct cidr_key masked;

    if (!list->sorted)
	cidr_list_sort((struct cidr_list *) list);
    for (int len = 128; len >= 0; len--) {
	const struct cidr_bucket *bucket = list->buckets + len;

	if (bucket->count == 0)
	    continue;
	masked = cidr_key_mask(key, len);
	if (bsearch(&masked, bucket->keys, bucket->count, sizeof(masked), cidr_key_cmp))
	    return (1);
    }
    return (0);
}

int     cidr_list_match_addr(const struct cidr_list *list, const struct sockaddr *sa)
{
    unsigned char bytes[16];

    if (sa->sa_family == AF_INET) {
	memset(bytes, 0, 10);
	bytes[10] = bytes[11] = 0xff;
	memcpy(bytes + 12, &((const struct sockaddr_in *) sa)->sin_addr, 4);
    } else if (sa->sa_family == AF_INET6) {
	memcpy(bytes, &((const struct sockaddr_in6 *) sa)->sin6_addr, 16);
    } else {
	return (0);
    }
    return (cidr_list_match_bytes(list, bytes));
}

int     cidr_list_match_str(const struct cidr_list *list, const char *address)
{
    unsigned char bytes[16];
    int     bits;

    return (cidr_parse_address(address, bytes, &bits) && cidr_list_match_bytes(list, bytes));
}

/* cidr_span - the first and last address of a network, in 128 bits */

struct cidr_span {
    struct cidr_key first;
    struct cidr_key last;
};

static int cidr_span_cmp(const void *a, const void *b)
{
    return (cidr_key_cmp(&((const struct cidr_span *) a)->first,
			 &((const struct cidr_span *) b)->first));
}

static struct cidr_key cidr_key_last(struct cidr_key key, int len)
{
    struct cidr_key host = cidr_key_mask((struct cidr_key) {~(uint64_t) 0, ~(uint64_t) 0}, len);

    key.hi |= ~host.hi;
    key.lo |= ~host.lo;
    return (key);
}

/* cidr_list_spans - every network clipped to [lo, hi]; the count */

static int cidr_list_spans(const struct cidr_list *list, struct cidr_key lo,
			           struct cidr_key hi, struct cidr_span *out)
{
    int     n = 0;

    for (int len = 0; len <= 128; len++)
	for (int i = 0; i < list->buckets[len].count; i++) {
	    struct cidr_span sp = {list->buckets[len].keys[i],
	    cidr_key_last(list->buckets[len].keys[i], len)};

	    if (cidr_key_cmp(&sp.last, &lo) < 0 || cidr_key_cmp(&sp.first, &hi) > 0)
		continue;
	    if (cidr_key_cmp(&sp.first, &lo) < 0)
		sp.first = lo;
	    if (cidr_key_cmp(&sp.last, &hi) > 0)
		sp.last = hi;
	    out[n++] = sp;
	}
    return (n);
}

/*
 * cidr_list_covers - does the list match every address of the family
 * (AF_INET: all of IPv4; AF_INET6: all of IPv6)? Not only "/0" does:
 * ::ffff:0:0/96 is every IPv4 address, and so are 0.0.0.0/1 and
 * 128.0.0.0/1 together.
 */
int     cidr_list_covers(const struct cidr_list *list, int family)
{
    struct cidr_key lo = {0, family == AF_INET ? 0xffff00000000ULL : 0};
    struct cidr_key hi = {0, family == AF_INET ? 0xffffffffffffULL : ~(uint64_t) 0};
    struct cidr_span *spans;
    struct cidr_key next = lo;
    int     n, covered = 0;

    if (family == AF_INET6)
	hi.hi = ~(uint64_t) 0;
    spans = xmalloc(sizeof(*spans) * (list->total + 1));
    n = cidr_list_spans(list, lo, hi, spans);
    qsort(spans, n, sizeof(*spans), cidr_span_cmp);
    for (int i = 0; i < n && !covered; i++) {
	if (cidr_key_cmp(&spans[i].first, &next) > 0)
	    break;				/* a gap before it */
	if (cidr_key_cmp(&spans[i].last, &next) < 0)
	    continue;				/* inside what is covered */
	if (cidr_key_cmp(&spans[i].last, &hi) == 0)
	    covered = 1;
	next = spans[i].last;			/* the address after it */
	if (++next.lo == 0)
	    next.hi++;
    }
    free(spans);
    return (covered);
}

int     cidr_list_count(const struct cidr_list *list)
{
    return (list->total);
}

void    cidr_list_destroy(struct cidr_list **listp)
{
    if (*listp == NULL)
	return;
    for (int len = 0; len <= 128; len++)
	free((*listp)->buckets[len].keys);
    free(*listp);
    *listp = NULL;
}

int     cidr_list_link_local(const struct cidr_list *list)
{
    struct cidr_key fe80 = {0xfe80ULL << 48, 0}, wide;

    if (cidr_list_covers(list, AF_INET6))	/* anyone: warned of, not this */
	return (0);
    for (int len = 10; len <= 128; len++)
	for (int i = 0; i < list->buckets[len].count; i++)
	    if (list->buckets[len].keys[i].hi >> 54 == 0x3fa)	/* fe80::/10 */
		return (1);
    /* a wider network holding fe80::/10 (fe00::/8, 8000::/1): the same
       peers; ::/0 trusts every address, which is warned of instead */
    for (int len = 1; len < 10; len++) {
	wide = cidr_key_mask(fe80, len);
	for (int i = 0; i < list->buckets[len].count; i++)
	    if (list->buckets[len].keys[i].hi == wide.hi)
		return (1);
    }
    return (0);
}
