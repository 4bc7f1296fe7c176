/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* Copyright peerwatch authors */
#ifndef PEERWATCH_CONFIG_H
#define PEERWATCH_CONFIG_H

#include "types.h"

/* Bounds of the parser, named so the verifier and the reader see them. */
#define MAX_VLAN_TAGS	  2
#define MAX_IPV6_EXT_HDRS 6

#define PORT_IKE       500
#define PORT_OPENVPN   1194
#define PORT_NATT      4500
#define PORT_WIREGUARD 51820

/* Set by the Go loader through the spec before the program loads. */
volatile const struct config peerwatch_config = {
    .xdp_verdict = XDP_PASS,
    .v4_key_len = 24,
    .v6_key_len = 48,
};

#endif
