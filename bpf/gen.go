// Package bpf holds the peerwatch counter program: the C sources and the
// objects and Go bindings that bpf2go generates from them.
//
// Only sensor/datapath imports this package.
package bpf

//go:generate go tool bpf2go -cc clang -cflags "-O2 -g -Wall -Werror" -target bpfel -no-global-types -type config -type remote_key -type remote_counters -type run_state -type v4_block -type split24 -type v6_filter_word -type v6_net32_key -type v6_local_key -type split48_key -type global_counter -type proto_class -type direction -type state_bits -type v4_layout -type v6_layout -type local32_state -type cache_layout -type cache_entry Counter counter.c -- -I./include
