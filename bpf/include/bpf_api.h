/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* Copyright peerwatch authors */
/*
 * The small part of the kernel's BPF ABI that the counter program uses, written
 * for peerwatch from the UAPI definitions (see README.md in this folder).
 */
#ifndef PEERWATCH_BPF_API_H
#define PEERWATCH_BPF_API_H

typedef unsigned char __u8;
typedef unsigned short __u16;
typedef unsigned int __u32;
typedef unsigned long long __u64;
typedef int __s32;
typedef long long __s64;
typedef __u16 __be16;
typedef __u32 __be32;

#define SEC(name) __attribute__((section(name), used))
#ifndef __always_inline
#define __always_inline inline __attribute__((always_inline))
#endif

/* BTF-defined map attributes, as understood by libbpf and cilium/ebpf. */
#define __uint(name, val)  int(*name)[val]
#define __type(name, val)  typeof(val) *name
#define __array(name, val) typeof(val) *name[]

enum {
	BPF_MAP_TYPE_HASH = 1,
	BPF_MAP_TYPE_ARRAY = 2,
	BPF_MAP_TYPE_PERCPU_HASH = 5,
	BPF_MAP_TYPE_PERCPU_ARRAY = 6,
	BPF_MAP_TYPE_LPM_TRIE = 11,
	BPF_MAP_TYPE_ARRAY_OF_MAPS = 12,
};

enum {
	BPF_ANY = 0,
	BPF_NOEXIST = 1,
};

enum {
	BPF_F_NO_PREALLOC = 1 << 0,
};

enum xdp_action {
	XDP_ABORTED = 0,
	XDP_DROP,
	XDP_PASS,
	XDP_TX,
	XDP_REDIRECT,
};

/* TC_ACT_UNSPEC is also TCX_NEXT: hand the packet on unchanged. */
#define TC_ACT_UNSPEC (-1)

#define EEXIST 17

struct xdp_md {
	__u32 data;
	__u32 data_end;
	__u32 data_meta;
	__u32 ingress_ifindex;
	__u32 rx_queue_index;
	__u32 egress_ifindex;
};

struct __sk_buff {
	__u32 len;
	__u32 pkt_type;
	__u32 mark;
	__u32 queue_mapping;
	__u32 protocol;
	__u32 vlan_present;
	__u32 vlan_tci;
	__u32 vlan_proto;
	__u32 priority;
	__u32 ingress_ifindex;
	__u32 ifindex;
	__u32 tc_index;
	__u32 cb[5];
	__u32 hash;
	__u32 tc_classid;
	__u32 data;
	__u32 data_end;
};

/* Helper calls by their stable numbers in the kernel's helper table. */
static void *(*bpf_map_lookup_elem)(void *map, const void *key) = (void *)1;
static long (*bpf_map_update_elem)(void *map, const void *key, const void *value,
				   __u64 flags) = (void *)2;
/* Makes the first len bytes of a (non-linear) skb linear; TC programs only. */
static long (*bpf_skb_pull_data)(struct __sk_buff *skb, __u32 len) = (void *)39;

#define bpf_ntohs(x)  __builtin_bswap16(x)
#define bpf_htons(x)  __builtin_bswap16(x)
#define bpf_ntohl(x)  __builtin_bswap32(x)
#define bpf_htonl(x)  __builtin_bswap32(x)
#define bpf_ntohll(x) __builtin_bswap64(x)
#define bpf_htonll(x) __builtin_bswap64(x)

#endif
