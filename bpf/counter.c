//go:build ignore

/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* Copyright peerwatch authors */
/*
 * peerwatch counter: counts every packet once, per remote key, into per-CPU
 * maps, and never changes or drops traffic (XDP_DROP only when configured for
 * a pure mirror port).
 *
 * A remote key is the remote address masked to its counting granularity: the
 * configured length (/24, /48 by default), or inside /24s and /48s that the
 * loaded prefix tables divide, the cell of those tables that holds the
 * address. Userspace resolves keys to table prefixes when it drains, which is
 * exact because no key straddles two prefixes of any table.
 */
#include "bpf_api.h"
#include "types.h"
#include "config.h"
#include "maps.h"
#include "parse.h"

char __license[] SEC("license") = "Dual BSD/GPL";

/* Never read: they put these enums into BTF so that bpf2go generates them for Go. */
volatile const enum direction unused_direction;
volatile const enum proto_class unused_proto_class;
volatile const enum global_counter unused_global_counter;
volatile const enum state_bits unused_state_bits;
volatile const enum v4_layout unused_v4_layout;
volatile const enum v6_layout unused_v6_layout;
volatile const enum local32_state unused_local32_state;
volatile const enum cache_layout unused_cache_layout;

enum decision {
	DECIDED = 0,
	BOTH_LOCAL,
	NEITHER_LOCAL,
};

static __always_inline void add_global(__u32 epoch, __u32 counter)
{
	__u32 idx = epoch * GLOBAL_MAX + counter;
	__u64 *v = bpf_map_lookup_elem(&globals, &idx);
	if (v)
		*v += 1;
}

static __always_inline void add_global_n(__u32 epoch, __u32 counter, __u64 n)
{
	__u32 idx = epoch * GLOBAL_MAX + counter;
	__u64 *v = bpf_map_lookup_elem(&globals, &idx);
	if (v)
		*v += n;
}

static __always_inline __u32 mask32(__u32 len)
{
	return len >= 32 ? ~0U : (len == 0 ? 0 : ~0U << (32 - len));
}

static __always_inline __u64 mask64(__u32 len)
{
	return len >= 64 ? ~0ULL : (len == 0 ? 0 : ~0ULL << (64 - len));
}

/* What the tables say of one IPv4 address. */
struct v4_view {
	struct split24 *split; /* the /24's split entry, if it is split */
	__u8 local;
};

static __always_inline void lookup_v4(__u32 set, __u32 addr, struct v4_view *v)
{
	__u32 net = addr >> 8;
	__u32 idx = set * V4_BLOCK_WORDS + (net >> 6);
	__u64 bit = 1ULL << (net & 63);

	v->split = 0;
	v->local = 0;
	struct v4_block *b = bpf_map_lookup_elem(&v4_blocks, &idx);
	if (!b)
		return;
	if (b->split & bit) {
		__u32 rank = b->split_base + __builtin_popcountll(b->split & (bit - 1));
		struct split24 *s = bpf_map_lookup_elem(&v4_split, &rank);
		if (s) {
			__u32 host = addr & 0xFF;
			v->split = s;
			v->local = (s->local[host >> 6] >> (host & 63)) & 1;
			return;
		}
	}
	v->local = (b->local & bit) != 0;
}

static __always_inline int decide_v4(__u32 set, struct packet *pkt, struct remote_key *key,
				     __u32 *dir)
{
	struct v4_view src, dst;
	lookup_v4(set, pkt->src4, &src);
	lookup_v4(set, pkt->dst4, &dst);
	if (src.local && dst.local)
		return BOTH_LOCAL;
	if (!src.local && !dst.local)
		return NEITHER_LOCAL;

	__u32 remote = src.local ? pkt->dst4 : pkt->src4;
	struct split24 *split = src.local ? dst.split : src.split;
	*dir = src.local ? DIR_OUT : DIR_IN;

	__u32 masked;
	if (split)
		masked = (remote & 0xFFFFFF00) | split->cell[remote & 0xFF];
	else
		masked = remote & mask32(peerwatch_config.v4_key_len);

	key->addr[0] = 0;
	key->addr[1] = 0;
	key->addr[2] = bpf_htonl(0x0000FFFF);
	key->addr[3] = bpf_htonl(masked);
	return DECIDED;
}

/* What the tables say of one IPv6 address. */
struct v6_view {
	__u8 local;
	__u8 maybe_split; /* its /32's filter bucket has split /48s */
};

static __always_inline void lookup_v6(__u32 set, const __u64 addr[2], struct v6_view *v)
{
	__u32 net32 = bpf_ntohl(*(__u32 *)addr);
	__u32 h = (net32 * V6_FILTER_MULT) >> (32 - V6_FILTER_BITS);
	__u32 idx = set * V6_FILTER_WORDS + (h >> 6);
	__u64 bit = 1ULL << (h & 63);

	v->local = 0;
	v->maybe_split = 0;
	struct v6_filter_word *w = bpf_map_lookup_elem(&v6_filter, &idx);
	if (!w)
		return;
	v->maybe_split = (w->split & bit) != 0;
	if (!(w->local & bit))
		return;

	__u32 state = w->local_state;
	if (!state || w->local_net != net32) {
		struct v6_net32_key k = {.set = set, .net = net32};
		__u8 *st = bpf_map_lookup_elem(&v6_local32, &k);
		if (!st)
			return;
		state = *st;
	}
	if (state == LOCAL32_ALL) {
		v->local = 1;
	} else if (state == LOCAL32_PARTIAL) {
		struct v6_local_key lk = {.prefixlen = 32 + 128, .set = set};
		__builtin_memcpy(lk.addr, addr, sizeof(lk.addr));
		v->local = bpf_map_lookup_elem(&v6_local_trie, &lk) != 0;
	}
}

static __always_inline int decide_v6(__u32 set, struct packet *pkt, struct remote_key *key,
				     __u32 *dir)
{
	struct v6_view src, dst;
	lookup_v6(set, pkt->src6, &src);
	lookup_v6(set, pkt->dst6, &dst);
	if (src.local && dst.local)
		return BOTH_LOCAL;
	if (!src.local && !dst.local)
		return NEITHER_LOCAL;

	const __u64 *remote = src.local ? pkt->dst6 : pkt->src6;
	__u8 maybe_split = src.local ? dst.maybe_split : src.maybe_split;
	*dir = src.local ? DIR_OUT : DIR_IN;

	__u64 hi = bpf_ntohll(remote[0]);
	__u64 lo = bpf_ntohll(remote[1]);
	__u32 depth = peerwatch_config.v6_key_len;
	if (maybe_split) {
		struct split48_key k = {.set = set, .net = hi & mask64(48)};
		__u8 *d = bpf_map_lookup_elem(&v6_split, &k);
		if (d)
			depth = *d;
	}
	if (depth <= 64) {
		hi &= mask64(depth);
		lo = 0;
	} else {
		lo &= mask64(depth - 64);
	}
	__u64 out[2] = {bpf_htonll(hi), bpf_htonll(lo)};
	__builtin_memcpy(key->addr, out, sizeof(out));
	return DECIDED;
}

static __always_inline __u32 cache_slot(const struct remote_key *k)
{
	__u32 h = (k->addr[0] ^ k->addr[1] ^ k->addr[2] ^ k->addr[3]) * CACHE_MULT;
	return h >> (32 - CACHE_BITS);
}

static __always_inline int same_key(const struct remote_key *a, const struct remote_key *b)
{
	return a->addr[0] == b->addr[0] && a->addr[1] == b->addr[1] && a->addr[2] == b->addr[2] &&
	       a->addr[3] == b->addr[3];
}

/*
 * evict moves a cache slot's counters into the epoch's counter map. When the
 * map is full (-E2BIG), the slot's packets are counted as overflow instead.
 */
static __always_inline void evict(__u32 epoch, struct cache_entry *e)
{
	__u64 packets = e->counters.packets[DIR_IN] + e->counters.packets[DIR_OUT];
	void *counters_map = bpf_map_lookup_elem(&counters, &epoch);
	if (!counters_map) {
		add_global_n(epoch, GLOBAL_OVERFLOW, packets);
		return;
	}
	struct remote_counters *c = bpf_map_lookup_elem(counters_map, &e->key);
	if (!c) {
		long err = bpf_map_update_elem(counters_map, &e->key, &e->counters, BPF_NOEXIST);
		if (!err)
			return;
		if (err != -EEXIST) {
			add_global_n(epoch, GLOBAL_OVERFLOW, packets);
			return;
		}
		c = bpf_map_lookup_elem(counters_map, &e->key);
		if (!c) {
			add_global_n(epoch, GLOBAL_OVERFLOW, packets);
			return;
		}
	}
#pragma unroll
	for (int i = 0; i < DIR_MAX; i++) {
		c->packets[i] += e->counters.packets[i];
		c->bytes[i] += e->counters.bytes[i];
	}
#pragma unroll
	for (int i = 0; i < CLASS_MAX; i++)
		c->class_packets[i] += e->counters.class_packets[i];
}

static __always_inline void count_parsed(int res, struct packet *parsed, __u64 bytes);

static __always_inline void count_packet(void *data, void *data_end, __u64 bytes)
{
	struct packet pkt = {};
	count_parsed(parse_packet(data, data_end, &pkt), &pkt, bytes);
}

static __always_inline void count_parsed(int res, struct packet *parsed, __u64 bytes)
{
	__u32 zero = 0;
	struct run_state *st = bpf_map_lookup_elem(&state, &zero);
	if (!st)
		return;
	__u32 active = st->active;
	__u32 epoch = active & STATE_EPOCH_BIT;
	__u32 set = (active & STATE_TABLE_BIT) ? 1 : 0;

	add_global(epoch, GLOBAL_SEEN);

	struct packet pkt = *parsed;
	if (res == PARSE_NON_IP) {
		add_global(epoch, GLOBAL_NON_IP);
		return;
	}
	if (res != PARSE_OK) {
		add_global(epoch, GLOBAL_MALFORMED);
		return;
	}

	struct remote_key key;
	__u32 dir = DIR_IN;
	int decision =
	    pkt.family == 4 ? decide_v4(set, &pkt, &key, &dir) : decide_v6(set, &pkt, &key, &dir);
	if (decision == BOTH_LOCAL) {
		add_global(epoch, GLOBAL_BOTH_LOCAL);
		return;
	}
	if (decision == NEITHER_LOCAL) {
		add_global(epoch, GLOBAL_NEITHER_LOCAL);
		return;
	}

	__u32 class = pkt.class < CLASS_MAX ? pkt.class : CLASS_OTHER;
	dir &= 1;

	__u32 slot = epoch * CACHE_SLOTS + cache_slot(&key);
	struct cache_entry *e = bpf_map_lookup_elem(&cache, &slot);
	if (!e) {
		add_global(epoch, GLOBAL_OVERFLOW);
		return;
	}
	if (!e->used || !same_key(&e->key, &key)) {
		if (e->used)
			evict(epoch, e);
		__builtin_memset(&e->counters, 0, sizeof(e->counters));
		e->key = key;
		e->used = 1;
	}
	e->counters.packets[dir] += 1;
	e->counters.bytes[dir] += bytes;
	e->counters.class_packets[class] += 1;
}

SEC("xdp")
int peerwatch_xdp(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	count_packet(data, data_end, data_end - data);
	return peerwatch_config.xdp_verdict;
}

/*
 * Attached at TC/TCX ingress and egress; hands every packet on unchanged.
 *
 * The program reads the skb's linear part only. A frame whose headers are
 * not all there (an skb built from page fragments: AF_PACKET's TX_RING, a
 * driver that splits headers from the payload) parses as malformed; then,
 * and only then, the whole frame is pulled into the linear part (its bytes
 * stay as they are) and parsed again, so that it is counted under its
 * remote prefix like the same frame in one piece.
 */
SEC("tc")
int peerwatch_tc(struct __sk_buff *skb)
{
	void *data = (void *)(long)skb->data;
	void *data_end = (void *)(long)skb->data_end;
	struct packet pkt = {};
	int res = parse_packet(data, data_end, &pkt);
	if (res == PARSE_MALFORMED && data_end - data < skb->len &&
	    bpf_skb_pull_data(skb, skb->len) == 0) {
		data = (void *)(long)skb->data;
		data_end = (void *)(long)skb->data_end;
		__builtin_memset(&pkt, 0, sizeof(pkt));
		res = parse_packet(data, data_end, &pkt);
	}
	count_parsed(res, &pkt, skb->len);
	return TC_ACT_UNSPEC;
}

/* The floor for benchmarks: an XDP program that does nothing. */
SEC("xdp")
int peerwatch_empty(struct xdp_md *ctx)
{
	return XDP_PASS;
}
