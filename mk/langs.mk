# Test programs that LD_PRELOAD cannot reach, for the trap (seccomp) tests:
#   $(BUILD)/tests/cwprog-static   tests/progs/cwprog.c, gcc -static
#   $(BUILD)/tests/cwprog-musl     the same with musl-gcc (musl-tools)
#   $(BUILD)/tests/cwgo-cgo        tests/go/cwgo.go, go build (cgo: loads glibc)
#   $(BUILD)/tests/cwgo-static     the same, CGO_ENABLED=0 (static)
#   $(BUILD)/tests/abi32           tests/unit/abi32.c, gcc -m32 -static (gcc-multilib)
# Each is built only when its toolchain is there; the tests that need a
# missing one skip (and fail under CI=true). Built without $(SAN): they
# stand for programs built elsewhere, and a static binary cannot carry the
# sanitizer runtimes.

MUSL_GCC ?= $(shell command -v musl-gcc 2>/dev/null)
GO       ?= $(shell command -v go 2>/dev/null)
LANG_CFLAGS := -std=gnu11 -Wall -Wextra -Werror -O2 -g -D_GNU_SOURCE -Itests/progs
CWPROG_DEPS := tests/progs/cwprog.c $(wildcard tests/progs/*.h)

test-build: $(BUILD)/tests/cwprog-static $(BUILD)/tests/via_probe
$(BUILD)/tests/cwprog-static: $(CWPROG_DEPS)
	@mkdir -p $(dir $@)
	$(CC) $(LANG_CFLAGS) -static -o $@ $< -lpthread

# musl-gcc brings no kernel headers: the few cwprog needs (linux/, asm/,
# asm-generic/) are linked from the system's into a directory of their own,
# so that no glibc header can be picked up by mistake.
MUSL_INC := $(BUILD)/musl-include
ifneq ($(MUSL_GCC),)
test-build: $(BUILD)/tests/cwprog-musl
$(BUILD)/tests/cwprog-musl: $(CWPROG_DEPS)
	@mkdir -p $(dir $@) $(MUSL_INC)
	ln -sfn /usr/include/linux $(MUSL_INC)/linux
	ln -sfn /usr/include/asm-generic $(MUSL_INC)/asm-generic
	asm=/usr/include/$$($(CC) -dumpmachine)/asm; [ -d $$asm ] || asm=/usr/include/asm; \
	  ln -sfn $$asm $(MUSL_INC)/asm
	$(MUSL_GCC) $(LANG_CFLAGS) -I$(MUSL_INC) -include tests/progs/musl_compat.h -o $@ $< -lpthread
endif

# Go: everything inside $(BUILD) (cache, GOPATH) so that a fresh clone builds
# as root in CI; GOPATH mode, no modules, no network.
GO_ENV := GOCACHE=$(abspath $(BUILD))/go-cache GOPATH=$(abspath $(BUILD))/go-path \
	GO111MODULE=off GOTOOLCHAIN=local GOPROXY=off GOFLAGS=
ifneq ($(GO),)
test-build: $(BUILD)/tests/cwgo-cgo $(BUILD)/tests/cwgo-static
$(BUILD)/tests/cwgo-cgo: tests/go/cwgo.go
	@mkdir -p $(dir $@)
	$(GO_ENV) CGO_ENABLED=1 $(GO) build -o $@ $<
$(BUILD)/tests/cwgo-static: tests/go/cwgo.go
	@mkdir -p $(dir $@)
	$(GO_ENV) CGO_ENABLED=0 $(GO) build -o $@ $<
endif

# What `run --via auto` chooses, for tests/test_via.py.
$(BUILD)/tests/via_probe: tests/unit/via_probe.c $(BUILD)/tools/via.o $(BUILD)/core/elfkind.o
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_ALL) -o $@ $^ $(LDFLAGS_ALL)

# The remote unwinder on its own: tests/test_remote_bt.py unwinds btchain,
# dynamic and static, from outside. Built here with LANG_CFLAGS whatever
# $(SAN) is: under make check the sanitizer flags would add frame pointers,
# whose unwind rules need rbp, a register a thread stopped in a system call
# does not show from outside (README: bt through the trap).
test-build: $(BUILD)/tests/remote_bt_probe $(BUILD)/tests/btchain $(BUILD)/tests/btchain-static
$(BUILD)/tests/remote_bt_probe: tests/unit/remote_bt_probe.c $(BUILD)/trap/remote_bt.o
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_ALL) -o $@ $^ $(LDFLAGS_ALL) $(UNWIND_REMOTE_LIBS)
$(BUILD)/tests/btchain: tests/unit/btchain.c
	@mkdir -p $(dir $@)
	$(CC) $(LANG_CFLAGS) -o $@ $<
$(BUILD)/tests/btchain-static: tests/unit/btchain.c
	@mkdir -p $(dir $@)
	$(CC) $(LANG_CFLAGS) -static -o $@ $<

# A 32-bit (i386) static program (gcc-multilib), which the trap cannot watch:
# tests/test_trap.py checks that run says so. Built only where the compiler
# can make one; its test skips otherwise (and fails under CI=true).
M32_OK := $(shell printf 'int main(void){return 0;}' | $(CC) -m32 -static -x c -o /dev/null - 2>/dev/null && echo yes)
ifneq ($(M32_OK),)
test-build: $(BUILD)/tests/abi32
$(BUILD)/tests/abi32: tests/unit/abi32.c
	@mkdir -p $(dir $@)
	$(CC) $(LANG_CFLAGS) -m32 -static -o $@ $<
endif

# The demo's fourth act (demo/demo.py): demo/server.c's upload server in Go.
# Without Go the demo says it skipped that act.
ifneq ($(GO),)
$(BUILD)/demo/server-go: demo/server.go
	@mkdir -p $(dir $@)
	$(GO_ENV) CGO_ENABLED=0 $(GO) build -o $@ $<
test-build demo-build: $(BUILD)/demo/server-go
endif

# make bench's Go server (bench/run.py, group gohttp): net/http under wrk.
ifneq ($(GO),)
$(BUILD)/bench/gohttp: bench/go/gohttp.go
	@mkdir -p $(dir $@)
	$(GO_ENV) CGO_ENABLED=0 $(GO) build -o $@ $<
test-build bench bench-smoke: $(BUILD)/bench/gohttp
endif
