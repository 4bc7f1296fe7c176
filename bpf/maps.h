/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* Copyright peerwatch authors */
/*
 * All maps of the counter program. Sizes marked "set from Go" are placeholders
 * that the loader replaces in the spec before load.
 */
#ifndef PEERWATCH_MAPS_H
#define PEERWATCH_MAPS_H

#include "types.h"

/* Active epoch and table set. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct run_state);
} state SEC(".maps");

/* Global counters of both epochs: index epoch * GLOBAL_MAX + counter. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 2 * GLOBAL_MAX);
	__type(key, __u32);
	__type(value, __u64);
} globals SEC(".maps");

/* Per remote key counters of one epoch; max_entries set from Go. */
struct remote_counters_map {
	__uint(type, BPF_MAP_TYPE_PERCPU_HASH);
	__uint(max_entries, 65536);
	__type(key, struct remote_key);
	__type(value, struct remote_counters);
};

struct remote_counters_map counters_even SEC(".maps");
struct remote_counters_map counters_odd SEC(".maps");

/*
 * The two epochs' counter maps, indexed by epoch. Going through a map of maps
 * lets the drain wait for in-flight programs: an update of this map returns
 * only after an RCU grace period.
 */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY_OF_MAPS);
	__uint(max_entries, 2);
	__type(key, __u32);
	__array(values, struct remote_counters_map);
} counters SEC(".maps") = {
    .values = {&counters_even, &counters_odd},
};

/* Counter caches of both epochs: index epoch * CACHE_SLOTS + slot. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 2 * CACHE_SLOTS);
	__type(key, __u32);
	__type(value, struct cache_entry);
} cache SEC(".maps");

/* IPv4 direct stage of both table sets: index set * V4_BLOCK_WORDS + (/24 >> 6). */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 2 * V4_BLOCK_WORDS);
	__type(key, __u32);
	__type(value, struct v4_block);
} v4_blocks SEC(".maps");

/*
 * IPv4 split /24s, indexed through v4_block.split_base; each table set uses
 * one half. max_entries set from Go.
 */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 65536);
	__type(key, __u32);
	__type(value, struct split24);
} v4_split SEC(".maps");

/* IPv6 filter of both table sets: index set * V6_FILTER_WORDS + (bucket >> 6). */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 2 * V6_FILTER_WORDS);
	__type(key, __u32);
	__type(value, struct v6_filter_word);
} v6_filter SEC(".maps");

/* Local IPv6 /32s (LOCAL32_ALL or LOCAL32_PARTIAL); max_entries set from Go. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 4096);
	__type(key, struct v6_net32_key);
	__type(value, __u8);
} v6_local32 SEC(".maps");

/* Local IPv6 prefixes longer than /32; max_entries set from Go. */
struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, 4096);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct v6_local_key);
	__type(value, __u8);
} v6_local_trie SEC(".maps");

/* Split IPv6 /48s: value is the counting depth inside; max_entries set from Go. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 65536);
	__type(key, struct split48_key);
	__type(value, __u8);
} v6_split SEC(".maps");

#endif
