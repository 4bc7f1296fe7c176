/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* Copyright peerwatch authors */
/*
 * Header parsing and protocol classification. Every helper checks its bounds
 * against data_end before it reads; nothing here writes to the packet.
 */
#ifndef PEERWATCH_PARSE_H
#define PEERWATCH_PARSE_H

#include "config.h"

#define ETH_P_IP     0x0800
#define ETH_P_IPV6   0x86DD
#define ETH_P_8021Q  0x8100
#define ETH_P_8021AD 0x88A8

#define IPPROTO_HOPOPTS	 0
#define IPPROTO_ICMP	 1
#define IPPROTO_IPIP	 4
#define IPPROTO_TCP	 6
#define IPPROTO_UDP	 17
#define IPPROTO_IPV6	 41
#define IPPROTO_ROUTING	 43
#define IPPROTO_FRAGMENT 44
#define IPPROTO_GRE	 47
#define IPPROTO_ESP	 50
#define IPPROTO_AH	 51
#define IPPROTO_ICMPV6	 58
#define IPPROTO_DSTOPTS	 60

#define IP_OFFSET_MASK	0x1FFF
#define IP6_OFFSET_MASK 0xFFF8

struct eth_hdr {
	__u8 dst[6];
	__u8 src[6];
	__be16 proto;
};

struct vlan_hdr {
	__be16 tci;
	__be16 proto;
};

struct ipv4_hdr {
	__u8 ver_ihl;
	__u8 tos;
	__be16 tot_len;
	__be16 id;
	__be16 frag_off;
	__u8 ttl;
	__u8 protocol;
	__u16 check;
	__be32 saddr;
	__be32 daddr;
};

struct ipv6_hdr {
	__be32 vtc_flow;
	__be16 payload_len;
	__u8 nexthdr;
	__u8 hop_limit;
	__u64 saddr[2];
	__u64 daddr[2];
};

struct ipv6_opt_hdr {
	__u8 nexthdr;
	__u8 hdrlen; /* in 8-octet units, not counting the first 8 */
};

struct ipv6_frag_hdr {
	__u8 nexthdr;
	__u8 reserved;
	__be16 frag_off;
	__be32 id;
};

struct l4_ports {
	__be16 source;
	__be16 dest;
};

enum parse_result {
	PARSE_OK = 0,
	PARSE_NON_IP,
	PARSE_MALFORMED,
};

/* What the counter needs of a packet. */
struct packet {
	__u64 src6[2]; /* IPv6 addresses, network byte order */
	__u64 dst6[2];
	__u32 src4; /* IPv4 addresses, host byte order */
	__u32 dst4;
	__u8 family; /* 4 or 6 */
	__u8 class;
};

static __always_inline int tunnel_port(__u16 port)
{
	return port == PORT_WIREGUARD || port == PORT_OPENVPN || port == PORT_IKE ||
	       port == PORT_NATT;
}

/*
 * classify sets pkt->class from the transport protocol and, when l4 is not
 * NULL (first fragment or unfragmented), the ports.
 */
static __always_inline int classify(__u8 proto, void *l4, void *data_end, struct packet *pkt)
{
	switch (proto) {
	case IPPROTO_TCP:
	case IPPROTO_UDP: {
		pkt->class = proto == IPPROTO_TCP ? CLASS_TCP : CLASS_UDP;
		if (!l4)
			return PARSE_OK;
		struct l4_ports *ports = l4;
		if ((void *)(ports + 1) > data_end)
			return PARSE_MALFORMED;
		__u16 sport = bpf_ntohs(ports->source);
		__u16 dport = bpf_ntohs(ports->dest);
		if (proto == IPPROTO_TCP) {
			/* OpenVPN is the one tunnel commonly run over TCP. */
			if (sport == PORT_OPENVPN || dport == PORT_OPENVPN)
				pkt->class = CLASS_TUNNEL;
		} else if (tunnel_port(sport) || tunnel_port(dport)) {
			pkt->class = CLASS_TUNNEL;
		}
		return PARSE_OK;
	}
	case IPPROTO_ICMP:
	case IPPROTO_ICMPV6:
		pkt->class = CLASS_ICMP;
		return PARSE_OK;
	case IPPROTO_GRE:
	case IPPROTO_ESP:
	case IPPROTO_AH:
	case IPPROTO_IPIP:
	case IPPROTO_IPV6:
		pkt->class = CLASS_TUNNEL;
		return PARSE_OK;
	default:
		pkt->class = CLASS_OTHER;
		return PARSE_OK;
	}
}

static __always_inline int parse_ipv4(void *pos, void *data_end, struct packet *pkt)
{
	struct ipv4_hdr *ip = pos;
	if ((void *)(ip + 1) > data_end)
		return PARSE_MALFORMED;
	if ((ip->ver_ihl >> 4) != 4)
		return PARSE_MALFORMED;
	__u32 hlen = (ip->ver_ihl & 0xF) * 4;
	if (hlen < sizeof(*ip))
		return PARSE_MALFORMED;
	if (pos + hlen > data_end) /* options must be there */
		return PARSE_MALFORMED;

	pkt->family = 4;
	pkt->src4 = bpf_ntohl(ip->saddr);
	pkt->dst4 = bpf_ntohl(ip->daddr);

	void *l4 = pos + hlen;
	if (bpf_ntohs(ip->frag_off) & IP_OFFSET_MASK)
		l4 = 0; /* not the first fragment: no ports */
	return classify(ip->protocol, l4, data_end, pkt);
}

static __always_inline int is_ipv6_ext(__u8 nh)
{
	return nh == IPPROTO_HOPOPTS || nh == IPPROTO_ROUTING || nh == IPPROTO_DSTOPTS ||
	       nh == IPPROTO_FRAGMENT;
}

static __always_inline int parse_ipv6(void *pos, void *data_end, struct packet *pkt)
{
	struct ipv6_hdr *ip6 = pos;
	if ((void *)(ip6 + 1) > data_end)
		return PARSE_MALFORMED;
	if ((*(__u8 *)ip6 >> 4) != 6)
		return PARSE_MALFORMED;

	pkt->family = 6;
	__builtin_memcpy(pkt->src6, ip6->saddr, sizeof(pkt->src6));
	__builtin_memcpy(pkt->dst6, ip6->daddr, sizeof(pkt->dst6));

	__u8 nh = ip6->nexthdr;
	void *l4 = ip6 + 1;
#pragma unroll
	for (int i = 0; i < MAX_IPV6_EXT_HDRS; i++) {
		if (!is_ipv6_ext(nh))
			break;
		if (nh == IPPROTO_FRAGMENT) {
			struct ipv6_frag_hdr *fh = l4;
			if ((void *)(fh + 1) > data_end)
				return PARSE_MALFORMED;
			nh = fh->nexthdr;
			l4 = fh + 1;
			if (bpf_ntohs(fh->frag_off) & IP6_OFFSET_MASK)
				return classify(nh, 0, data_end, pkt);
			continue;
		}
		struct ipv6_opt_hdr *oh = l4;
		if ((void *)(oh + 1) > data_end)
			return PARSE_MALFORMED;
		nh = oh->nexthdr;
		l4 += (oh->hdrlen + 1) * 8;
	}
	if (is_ipv6_ext(nh)) /* a longer chain than we walk */
		return PARSE_MALFORMED;
	if (l4 > data_end) /* the last extension header must be there */
		return PARSE_MALFORMED;
	return classify(nh, l4, data_end, pkt);
}

static __always_inline int parse_packet(void *data, void *data_end, struct packet *pkt)
{
	struct eth_hdr *eth = data;
	if ((void *)(eth + 1) > data_end)
		return PARSE_MALFORMED;

	__be16 proto = eth->proto;
	void *pos = eth + 1;
#pragma unroll
	for (int i = 0; i < MAX_VLAN_TAGS; i++) {
		if (proto != bpf_htons(ETH_P_8021Q) && proto != bpf_htons(ETH_P_8021AD))
			break;
		struct vlan_hdr *vlan = pos;
		if ((void *)(vlan + 1) > data_end)
			return PARSE_MALFORMED;
		proto = vlan->proto;
		pos = vlan + 1;
	}

	if (proto == bpf_htons(ETH_P_IP))
		return parse_ipv4(pos, data_end, pkt);
	if (proto == bpf_htons(ETH_P_IPV6))
		return parse_ipv6(pos, data_end, pkt);
	return PARSE_NON_IP; /* includes a third VLAN tag */
}

#endif
