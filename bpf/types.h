/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* Copyright peerwatch authors */
/*
 * Every structure and constant shared with Go. bpf2go generates the Go types
 * from these (-type), so nothing here is mirrored by hand.
 */
#ifndef PEERWATCH_TYPES_H
#define PEERWATCH_TYPES_H

#include "bpf_api.h"

/* Direction, seen from the operator's network. */
enum direction {
	DIR_IN = 0,  /* remote -> local */
	DIR_OUT = 1, /* local -> remote */
	DIR_MAX,
};

/* Protocol class of a packet. */
enum proto_class {
	CLASS_TCP = 0,
	CLASS_UDP,
	CLASS_ICMP,   /* ICMP and ICMPv6 */
	CLASS_TUNNEL, /* GRE, ESP, AH, IPv4/IPv6-in-IP, WireGuard, OpenVPN, IKE, NAT-T */
	CLASS_OTHER,
	CLASS_MAX,
};

/*
 * Global counters. Every packet adds one to GLOBAL_SEEN and exactly one packet
 * to either a remote_counters entry or one of the buckets below, so that
 *   seen == sum(remote packets) + non_ip + malformed + both_local + neither_local + overflow.
 */
enum global_counter {
	GLOBAL_SEEN = 0,
	GLOBAL_NON_IP,	      /* not IPv4/IPv6, or more than two VLAN tags */
	GLOBAL_MALFORMED,     /* truncated or invalid headers */
	GLOBAL_BOTH_LOCAL,    /* source and destination are both local */
	GLOBAL_NEITHER_LOCAL, /* neither address is local: transit or misconfiguration */
	GLOBAL_OVERFLOW,      /* the remote key did not fit in the counter map */
	GLOBAL_MAX,
};

/*
 * A remote key: the remote address masked to its counting granularity, as an
 * IPv6 address in network byte order. IPv4 is stored IPv4-mapped
 * (::ffff:a.b.c.d).
 */
struct remote_key {
	__u32 addr[4];
};

/* Counters of one remote key in one epoch. */
struct remote_counters {
	__u64 packets[DIR_MAX];
	__u64 bytes[DIR_MAX];
	__u64 class_packets[CLASS_MAX];
};

/*
 * Per-CPU direct-mapped cache in front of the counter map: the hot path
 * counts into the slot of its key and only goes to the hash map when another
 * key holds the slot (it moves that key's counters there first).
 */
enum cache_layout {
	CACHE_BITS = 12,
	CACHE_SLOTS = 1 << 12, /* per epoch and CPU */
	CACHE_MULT = 0x9E3779B1u,
};
struct cache_entry {
	struct remote_key key;
	__u64 used; /* 0: empty slot */
	struct remote_counters counters;
};

/*
 * Which counter epoch and which table set the hot path uses. Both live in the
 * lowest byte of active so that one store switches them together; the hot path
 * reads nothing else. The other fields are the Go side's bookkeeping, pinned
 * with the maps so that they survive a daemon restart.
 */
enum state_bits {
	STATE_EPOCH_BIT = 0x1,
	STATE_TABLE_BIT = 0x2,
	/* Raise when the meaning of a pinned map changes without its size changing. */
	STATE_ABI = 1,
};
struct run_state {
	__u32 active;
	__u32 abi;	  /* STATE_ABI of the loader that created the maps */
	__u64 generation; /* intervals closed so far */
	__u64 drained;	  /* the last interval whose epoch was read and cleared */
	__u64 tables[2];  /* fingerprint of each table set's contents, 0 = empty */
	__u64 instance;	  /* random, chosen when the maps were created */
};

/*
 * IPv4 direct stage: one bit per /24 in each of two bitmaps. 2^24 /24s in
 * 2^18 words of 64 per table set. The split /24s of a table set are stored in
 * the order of their addresses, so that the entry of a split /24 is found
 * without hashing: split_base (the index of the word's first split /24) plus
 * the number of split /24s below it in the word.
 */
enum v4_layout {
	V4_BLOCK_WORDS = 1 << 18,
};
struct v4_block {
	__u64 local;	  /* the whole /24 is local */
	__u64 split;	  /* the /24 has a split24 entry */
	__u32 split_base; /* v4_split index of this word's first split /24 */
	__u32 pad;
};

/*
 * A /24 that table or local prefixes divide: cell[h] is the first host of the
 * cell that holds host h, so that all addresses of a cell share one key, and
 * local has one bit per host.
 */
struct split24 {
	__u8 cell[256];
	__u64 local[4];
};

/*
 * IPv6 filter: one bit per bucket of a hash of the /32 in each of two bitmaps,
 * telling the hot path when a map lookup can be skipped.
 */
enum v6_layout {
	V6_FILTER_BITS = 22,
	V6_FILTER_WORDS = 1 << (22 - 6),
	V6_FILTER_MULT = 0x9E3779B1u, /* multiplicative hash of the /32 */
};
struct v6_filter_word {
	__u64 local; /* some local prefix overlaps a /32 of this bucket */
	__u64 split; /* some /48 of a /32 of this bucket is split */
	/*
	 * When the word's 64 buckets hold exactly one local /32, that /32 and
	 * its local32_state, so that the usual case needs no hash lookup.
	 */
	__u32 local_net;
	__u32 local_state; /* 0: ask v6_local32 */
};

/* Key of an IPv6 /32 in a table set. */
struct v6_net32_key {
	__u32 set;
	__u32 net; /* first 32 bits, host order */
};

enum local32_state {
	LOCAL32_ALL = 1,     /* the whole /32 is local */
	LOCAL32_PARTIAL = 2, /* local prefixes longer than /32 inside: ask v6_local_trie */
};

/* LPM key of a local IPv6 prefix longer than /32: prefixlen counts set (32 bits) too. */
struct v6_local_key {
	__u32 prefixlen;
	__u32 set;
	__u8 addr[16];
};

/* Key of a split IPv6 /48 in a table set. */
struct split48_key {
	__u32 set;
	__u32 pad;
	__u64 net; /* first 64 bits, host order, masked to /48 */
};

/* Runtime knobs, set from Go before load. */
struct config {
	__u32 xdp_verdict; /* XDP_PASS, or XDP_DROP on pure mirror ports */
	__u8 v4_key_len;   /* counting granularity outside split /24s */
	__u8 v6_key_len;   /* counting granularity outside split /48s */
	__u16 pad;
};

#endif
