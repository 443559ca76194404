# Pantavisor in Go. Targets:
#   make build   bin/pantavisor, bin/pvinit (its containers' init) and bin/pvcontrol
#                (cgo on: libcontainer's nsenter is C)
#   make test    lint + unit tests + fuzz smoke + integration tests (root, fresh namespaces)
#   make bench   the benchmark table (figure, this project, baseline, ratio, goal, runs);
#                as root in fresh namespaces (without root, figures that need it are skipped)
#   make demo    the demo revision (see README)
export PATH := /usr/local/go/bin:$(PATH)
GO        ?= go
# An execution count, not a duration: with a duration, Go 1.26's fuzz
# coordinator can report its own deadline as a failure ("context deadline
# exceeded", no failing input) when the machine is busy (golang/go#75804,
# fixed in Go 1.27). 10000 runs take under 4 s a target here: a smoke
# run that keeps make test under 15 minutes with 29 targets; make
# reliability PROFILE=full runs 200000 a target.
FUZZTIME  ?= 10000x
# With a count, Go minimises every new interesting input for up to half the
# count (25000 runs) or 60 s: on a busy machine that stalled a 50000-run
# smoke run for a minute, and the worker restarted after it failed its first
# ping ("fuzzing process terminated without fuzzing: EOF"). A smoke run
# needs no minimised corpus; a crasher is still reported, minimised for up
# to this long.
FUZZMINTIME ?= 2s
# Integration tests run with the test binary as PID 1 in fresh pid+net+mount
# namespaces: every bridge, veth, iptables rule and mount dies with it and the
# host's network namespace is never touched.
NS_EXEC   := unshare --pid --net --mount --fork --mount-proc
# Upstream's real state files, kept in the repository (testdata/upstream-pvtx/README.md).
FIXTURES  ?= $(abspath testdata/upstream-pvtx)

# package:FuzzTarget pairs run by `make fuzz` (each for FUZZTIME).
FUZZ_TARGETS := \
	./state:FuzzParse \
	./signature:FuzzVerify \
	./blockdev:FuzzProbe \
	./blockdev:FuzzParseTable \
	./state:FuzzSplitObject \
	./state/lxcconf:FuzzParse \
	./state/lxcconf:FuzzParseIncludes \
	./state/lxcconf:FuzzParseSeccompProfile \
	./config:FuzzParseConfigFile \
	./config:FuzzParseCmdline \
	./bootloader:FuzzParseEnv \
	./bootloader:FuzzParseUbootTxt \
	./bootloader:FuzzParseUbootEnv \
	./bootloader:FuzzParseFwEnvConfig \
	./bootloader:FuzzParseGrubenv \
	./bootloader:FuzzParseAutoboot \
	./bootloader:FuzzParsePvRevTxt \
	./ctrl:FuzzRouterMatch \
	./ctrl:FuzzServer \
	./ctrl:FuzzContainerOfCgroups \
	./cmd/pvcontrol:FuzzReadResponse \
	./cmd/pvcontrol:FuzzDecodeContainers \
	./runtime/driver:FuzzParseBytes \
	./runtime/driver:FuzzParseDeviceRule \
	./runtime/driver:FuzzParseMountAuto \
	./runtime/rootfs:FuzzResolveIn \
	./runtime/seccomp:FuzzCompile \
	./storage:FuzzParseProgress \
	./storage:FuzzParseRefs \
	./xconnect/dbus:FuzzLookup \
	./xconnect/dbus:FuzzCommand \
	./xconnect/http:FuzzMatch \
	./xconnect/http:FuzzParseTarget \
	./xconnect/http:FuzzParseRequestHead \
	./xconnect/http:FuzzResponseHead

.PHONY: all build test deps lint unit fuzz integration reliability boot-test bench demo clean

all: build

# The binaries are linked statically: pantavisor is executed for every
# container start (libcontainer re-runs it as the init, which hands over to
# pvinit), and the dynamic loader's work would be paid each time (figures:
# ARCHITECTURE.md, Performance notes). netgo and osusergo keep glibc's NSS
# (which a static binary cannot load) out.
STATIC    := -tags netgo,osusergo -ldflags '-extldflags=-static'

# The C parts (nsenter, the reaper, the init hand-off) link against musl
# where musl-gcc is installed (scripts/deps.sh installs it), glibc
# otherwise. Every container start executes two of these binaries (the
# trampoline and pvinit), and glibc's static start-up (CPU feature and
# cache detection by cpuid, which traps to the hypervisor in a VM, and
# its IRELATIVE relocations) is paid each time; musl has none of it
# (figures: ARCHITECTURE.md, Performance notes).
# Evaluated when a recipe runs, after deps may have installed musl.
MUSL_INC  := $(CURDIR)/bin/musl-include
CGO_ENV    = $(if $(shell command -v musl-gcc 2>/dev/null),CC=musl-gcc CGO_CFLAGS='-O2 -g -isystem $(MUSL_INC)')

# pvinit decodes libcontainer's init configuration once per container
# start. encoding/json v1 builds an encoder for every type of that large
# graph while decoding it (typeFields); the v2 implementation behind the
# same API (the default from Go 1.27; same behaviour, error texts aside)
# does not (figures: ARCHITECTURE.md, Performance notes). Only pvinit: the
# integration harness builds it the same way, the driver's own tests build
# it without.
PVINIT_EXPERIMENT := jsonv2

build: deps
	@mkdir -p bin
	@scripts/musl-include.sh $(MUSL_INC)
	$(CGO_ENV) $(GO) build -trimpath $(STATIC) -o bin/pantavisor ./cmd/pantavisor
	$(CGO_ENV) GOEXPERIMENT=$(PVINIT_EXPERIMENT) $(GO) build -trimpath $(STATIC) -o bin/pvinit ./cmd/pvinit
	$(GO) build -trimpath $(STATIC) -o bin/pvcontrol ./cmd/pvcontrol

deps:
	@scripts/deps.sh

lint:
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	if [ -n "$$out" ]; then echo "gofmt would change:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	$(GO) vet -tags integration ./...

unit:
	$(GO) test -count=1 ./...

fuzz:
	@set -e; for t in $(FUZZ_TARGETS); do \
		pkg=$${t%%:*}; fn=$${t##*:}; \
		echo "fuzz $$pkg $$fn for $(FUZZTIME)"; \
		$(GO) test -run '^$$' -fuzz "^$$fn\$$" -fuzztime $(FUZZTIME) -fuzzminimizetime $(FUZZMINTIME) $$pkg; \
	done

# -parallel 3: the stuck-process tests (integration/stuck_test.go), the
# only parallel ones, each wait out a device's 20 s of kill timeouts;
# each device is in namespaces and cgroups of its own.
integration: build
	@if [ "$$(id -u)" != 0 ]; then \
		echo "integration tests need root (containers, namespaces): skipped"; exit 0; fi; \
	$(CGO_ENV) $(GO) test -count=1 -parallel 3 -tags integration -exec '$(NS_EXEC)' -skip '^TestReliability' ./...

# The reliability suite (integration/reliability_test.go): faults, load and
# soak against real devices, one table at the end. PROFILE=full (the
# default) is the whole budget; make test runs PROFILE=short. Run from the
# package's directory so that go test shows its output (the table) also
# when everything passed.
PROFILE ?= full
reliability: build
	@if [ "$$(id -u)" != 0 ]; then \
		echo "the reliability suite needs root (containers, namespaces): skipped"; exit 0; fi; \
	cd integration && PROFILE=$(PROFILE) FUZZ_TARGETS='$(strip $(FUZZ_TARGETS))' $(CGO_ENV) $(GO) test -count=1 \
		-tags integration -exec '$(NS_EXEC)' -run '^TestReliability' -timeout 120m

# The QEMU boot test: pantavisor as the init of a real kernel (embedded
# mode), storage on an emulated disk; see integration/boot/boot-test.sh.
boot-test: build
	@if [ "$$(id -u)" != 0 ]; then \
		echo "the boot test needs root (device nodes of its initramfs): skipped"; exit 0; fi; \
	integration/boot/boot-test.sh

test: deps lint unit fuzz integration boot-test
	@$(MAKE) --no-print-directory reliability PROFILE=short

# The bench runs as PID 1 of fresh pid+net+mount namespaces too: the
# containers, mounts, loop devices and runc/LXC state of its figures die
# with it, and nothing reaches the host's network. Without root it runs as
# is and the figures that need root say so. BENCHFLAGS passes options, e.g.
# BENCHFLAGS=-v (time breakdowns), BENCHFLAGS='-run cold -runs 9'.
BENCHFLAGS ?=
bench: build
	@scripts/deps.sh bench
	@# Built as pvinit is: its copies are the inits of the bare
	@# libcontainer baselines, which would otherwise pay glibc's start-up
	@# and encoding/json v1 where pvinit does not.
	$(CGO_ENV) GOEXPERIMENT=$(PVINIT_EXPERIMENT) $(GO) build -trimpath $(STATIC) -o bin/pvbench ./bench/cmd/pvbench
	@if [ "$$(id -u)" = 0 ]; then \
		$(NS_EXEC) bin/pvbench -fixtures $(FIXTURES) -pantavisor bin/pantavisor $(BENCHFLAGS); \
	else \
		bin/pvbench -fixtures $(FIXTURES) -pantavisor bin/pantavisor $(BENCHFLAGS); \
	fi

demo: build
	@scripts/demo.sh

clean:
	rm -rf bin
