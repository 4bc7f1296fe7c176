# peerwatch. `make help` lists the targets.
SHELL := /bin/bash
GO ?= go
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS := -s -w -X github.com/peerwatch/peerwatch/sensor/version.Version=$(VERSION)
CMDS := $(wildcard sensor/cmd/*)
# Test tiers: pure Go (-short), BPF through BPF_PROG_TEST_RUN (root), integration with network
# namespaces and real traffic (root). Root tests skip with a clear message without root.
TEST_FLAGS ?= -count=1
# A count rather than a duration: a timed run can end on a spurious deadline error of Go's
# fuzzing coordinator (golang/go#75804).
FUZZTIME ?= 300000x
BENCH_FLAGS ?= -run=^$$ -bench=. -benchmem -count=5

.PHONY: help demo deps generate check-generated build build-arm64 test test-unit test-bpf \
	test-integration test-arm64 test-release fuzz bench bench-peers drills drills-long lint fmt clean release

help: ## list the targets
	@grep -E '^[a-z0-9-]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/' | column -t -s $$'\t'

demo: ## the lab with two sensors, a collector and traffic, on localhost (root; Ctrl-C ends it; docs/lab.md)
	@scripts/demo

deps: ## install what a fresh Debian machine lacks (needs root; idempotent)
	@scripts/install-deps

generate: ## regenerate the BPF objects and Go bindings from bpf/*.c (needs clang)
	$(GO) generate ./bpf/...

check-generated: generate ## fail if the committed BPF objects differ from the C sources
	@git diff --exit-code --stat -- bpf/ || { echo "bpf/: committed objects are stale: run 'make generate' and commit" >&2; exit 1; }

build: ## build the binaries for this machine (amd64) into bin/
	@mkdir -p bin
	@for c in $(CMDS); do CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o bin/ ./$$c || exit 1; done
	CGO_ENABLED=0 $(GO) build ./...

build-arm64: ## cross-build everything for arm64 into bin/arm64/
	@mkdir -p bin/arm64
	@for c in $(CMDS); do GOARCH=arm64 CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o bin/arm64/ ./$$c || exit 1; done
	GOARCH=arm64 CGO_ENABLED=0 $(GO) build ./...
	GOARCH=arm64 CGO_ENABLED=0 $(GO) vet ./...

test: deps ## run every test tier (the root tiers skip without root; CI runs as root)
	$(GO) test $(TEST_FLAGS) -timeout 30m ./...

test-unit: ## tier 1: pure Go tests, no root
	$(GO) test $(TEST_FLAGS) -short ./...

test-bpf: ## tier 2: the program in the kernel through BPF_PROG_TEST_RUN (root)
	$(GO) test $(TEST_FLAGS) -run '^(TestProg|TestCounter|FuzzCounter)' ./bpf/... ./sensor/...

test-integration: ## tier 3: network namespaces, veth pairs and real traffic (root)
	$(GO) test $(TEST_FLAGS) -run '^TestNetns' -timeout 20m ./sensor/...

test-release: ## make release, check it, install it in a throwaway root, run and upgrade it (root)
	$(GO) test $(TEST_FLAGS) -run '^TestRelease$$' -timeout 20m -v ./board/

drills: ## the fault drills at the sizes of the record: 100 kills, 60 s faults, 30 s clock phases, 5-minute soak (root; docs/reliability.md)
	@scripts/drills --record

drills-long: ## the long drills: a 10-minute blackhole of the uplink, a 30-minute soak (root; docs/reliability.md)
	@scripts/drills --long

fuzz: ## run every fuzz test for FUZZTIME (the counter program through BPF_PROG_TEST_RUN needs root)
	@for pkg in $$($(GO) list ./...); do \
		for fz in $$($(GO) test -list '^Fuzz' $$pkg | grep '^Fuzz'); do \
			echo "== $$pkg $$fz"; \
			$(GO) test -run '^$$' -fuzz "^$$fz$$" -fuzztime $(FUZZTIME) -fuzzminimizetime 5s $$pkg || exit 1; \
		done; \
	done

test-arm64: ## pure-Go tests of the arm64 build under qemu-aarch64-static
	PEERWATCH_EMULATOR=qemu-aarch64-static GOARCH=arm64 CGO_ENABLED=0 $(GO) test $(TEST_FLAGS) -short -exec qemu-aarch64-static ./...

bench-peers: ## peerwatch against pmacctd and FastNetMon on the lab's traffic (root; docs/comparison.md)
	@scripts/bench-peers

bench: ## benchmarks (ns/packet against the empty program, drain); see docs/benchmarks.md
	$(GO) test $(BENCH_FLAGS) -timeout 60m ./sensor/...

lint: ## gofmt, go vet, staticcheck, clang-format on bpf/, shellcheck on scripts/
	@out=$$(gofmt -l $$(git ls-files '*.go')); [ -z "$$out" ] || { echo "gofmt would change: $$out" >&2; exit 1; }
	$(GO) vet ./...
	$(GO) tool staticcheck ./...
	clang-format --dry-run -Werror bpf/*.c bpf/*.h bpf/include/*.h
	shellcheck scripts/install-deps scripts/lab scripts/demo scripts/release/release scripts/drills scripts/bench-peers

fmt: ## format Go and C sources
	gofmt -w $$(git ls-files '*.go')
	clang-format -i bpf/*.c bpf/*.h bpf/include/*.h

release: ## static binaries, .deb packages and tarballs for arm64 and amd64, SHA256SUMS, in dist/ (docs/install.md)
	@scripts/release/release

clean: ## remove build output
	rm -rf bin dist
