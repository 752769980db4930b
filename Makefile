# closewatch — build, test, demo, bench, install.
#   make            library, CLI and cw-pcap in $(BUILD)
#   make test       the whole suite on the real kernel (root: network namespace + capture);
#                   first builds what it runs (test-build: test programs, demo, bench, fuzz replays)
#   make check      the suite under ASan+UBSan, then under TSan
#   make demo       the demonstration (three acts in C, a fourth in Go)
#   make bench      side-by-side benchmarks
#   make install    PREFIX=/usr/local DESTDIR=

CC         ?= cc
PKG_CONFIG ?= pkg-config
BUILD      ?= build
PREFIX     ?= /usr/local
LIBDIR     ?= $(PREFIX)/lib
BINDIR     ?= $(PREFIX)/bin
INCLUDEDIR ?= $(PREFIX)/include
MANDIR     ?= $(PREFIX)/share/man
PYTHON     ?= python3
# The one version string: `closewatch --version` and closewatch.pc.
VERSION    ?= 0.1.0

# libunwind's remote API and zlib (trap/remote_bt.c: backtraces of a trapped thread, from
# outside; zlib for compressed .debug_frame sections, Go's). The library itself uses
# libgcc's unwinder (shim/backtrace.c).
UNWIND_REMOTE_LIBS := $(shell $(PKG_CONFIG) --libs libunwind-generic 2>/dev/null || echo -lunwind-generic -lunwind) -lz
PCAP_CFLAGS   := $(shell $(PKG_CONFIG) --cflags libpcap 2>/dev/null)
PCAP_LIBS     := $(shell $(PKG_CONFIG) --libs libpcap 2>/dev/null || echo -lpcap)
SECCOMP_LIBS  := $(shell $(PKG_CONFIG) --libs libseccomp 2>/dev/null || echo -lseccomp)

OPT        ?= -O2
SAN        ?=
WARN       := -Wall -Wextra -Werror
CFLAGS_ALL := -std=gnu11 $(WARN) $(OPT) -g -fPIC -D_GNU_SOURCE -Iinclude -Icore $(SAN) $(CFLAGS)
LDFLAGS_ALL := $(SAN) $(LDFLAGS)

# Two ways in over one core. core/: what both do with a socket being closed
# (inspection, verdict, record, log writer, variables, fd classification, the
# ELF reader, the drain engine and its loop, the fork/close gate). shim/: the
# preloaded library's front end (hooks, backtraces, identity). trap/: the seccomp supervisor's front end, inside the CLI;
# trap/real_libc.c binds core/real.h to plain libc where shim/real.c uses dlsym.
CORE_SRC  := $(wildcard core/*.c)
CORE_OBJ  := $(CORE_SRC:%.c=$(BUILD)/%.o)
SHIM_SRC  := $(wildcard shim/*.c)
SHIM_OBJ  := $(SHIM_SRC:%.c=$(BUILD)/%.o)
TOOL_MAINS := tools/closewatch.c tools/cw-pcap.c
TOOL_LIB_SRC := $(filter-out $(TOOL_MAINS),$(wildcard tools/*.c))
TOOL_LIB_OBJ := $(TOOL_LIB_SRC:%.c=$(BUILD)/%.o)
TRAP_SRC  := $(wildcard trap/*.c)
TRAP_OBJ  := $(TRAP_SRC:%.c=$(BUILD)/%.o)
PROG_SRC  := $(wildcard tests/progs/*.c)
PROG_BIN  := $(PROG_SRC:tests/progs/%.c=$(BUILD)/tests/%)
DEMO_SRC  := $(wildcard demo/*.c)
DEMO_BIN  := $(DEMO_SRC:demo/%.c=$(BUILD)/demo/%)
BENCH_SRC := $(wildcard bench/*.c)
BENCH_BIN := $(BENCH_SRC:bench/%.c=$(BUILD)/bench/%)

LIB := $(BUILD)/libclosewatch.so
CLI := $(BUILD)/closewatch
PCAPTOOL := $(BUILD)/cw-pcap

.PHONY: all test test-build test-deps check check-asan check-tsan demo bench fuzz install uninstall clean
all: $(LIB) $(CLI) $(PCAPTOOL)

# Everything the suite runs (mk/check.mk adds the fuzz replays). The empty
# recipe keeps make from saying "Nothing to be done" when all is built.
test-build: all $(PROG_BIN) $(DEMO_BIN) $(BENCH_BIN)
	@:

$(BUILD)/core/%.o: core/%.c core/*.h include/closewatch.h
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_ALL) -fvisibility=hidden -c $< -o $@

$(BUILD)/shim/%.o: shim/%.c shim/*.h core/*.h include/closewatch.h
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_ALL) -fvisibility=hidden -c $< -o $@

# SONAME libclosewatch.so, the installed file's own name: a program linked with
# -lclosewatch (for closewatch_inspect) records that name, and ldconfig at
# install has no other link to make. Unversioned on purpose: the interface is
# the interposed libc calls plus a small C API, shipped together with the CLI.
$(LIB): $(SHIM_OBJ) $(CORE_OBJ)
	$(CC) -shared $(LDFLAGS_ALL) -Wl,-soname,libclosewatch.so -Wl,-z,defs -Wl,-z,now -o $@ $^ \
	  -lgcc_s -ldl -lpthread

$(BUILD)/tools/%.o: tools/%.c $(wildcard tools/*.h) core/*.h include/closewatch.h
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_ALL) $(PCAP_CFLAGS) -c $< -o $@

# closewatch --version; rebuilt when the Makefile (VERSION) changes.
$(BUILD)/tools/closewatch.o: CFLAGS_ALL += -DCW_VERSION='"$(VERSION)"'
$(BUILD)/tools/closewatch.o: Makefile

# run.c checks its options against the settings table.
$(BUILD)/tools/run.o: core/config.h

# The installed CLI also looks for the library where `make install` puts it.
$(BUILD)/tools/preload.o: CFLAGS_ALL += -DCW_LIBDIR='"$(LIBDIR)"'

$(BUILD)/trap/%.o: trap/%.c trap/*.h core/*.h include/closewatch.h
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_ALL) -c $< -o $@


# Takes the address of _Exit, which GCC treats as a builtin otherwise.
$(BUILD)/trap/real_libc.o: CFLAGS_ALL += -fno-builtin

$(CLI): $(BUILD)/tools/closewatch.o $(TOOL_LIB_OBJ) $(TRAP_OBJ) $(CORE_OBJ)
	$(CC) $(LDFLAGS_ALL) -o $@ $^ $(PCAP_LIBS) $(SECCOMP_LIBS) $(UNWIND_REMOTE_LIBS) -lpthread

$(PCAPTOOL): $(BUILD)/tools/cw-pcap.o $(TOOL_LIB_OBJ) $(TRAP_OBJ) $(CORE_OBJ)
	$(CC) $(LDFLAGS_ALL) -o $@ $^ $(PCAP_LIBS) $(SECCOMP_LIBS) $(UNWIND_REMOTE_LIBS) -lpthread

# Test programs are ordinary programs: they know nothing of closewatch, except
# the ones named *inspect* which call closewatch_inspect() themselves.
$(BUILD)/tests/%: tests/progs/%.c $(wildcard tests/progs/*.h) tests/progs/cwprog.c $(LIB)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_ALL) -Itests/progs -o $@ $< $(LDFLAGS_ALL) -lpthread \
	  $(if $(findstring inspect,$*),-L$(BUILD) -lclosewatch -Wl$(comma)-rpath$(comma)'$$ORIGIN/..')

$(BUILD)/demo/%: demo/%.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_ALL) -o $@ $< $(LDFLAGS_ALL) -lpthread

$(BUILD)/bench/%: bench/%.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_ALL) -o $@ $< $(LDFLAGS_ALL) -lpthread

# The trap's floor: closewatch's filter, a supervisor that only answers.
$(BUILD)/bench/trapfloor: bench/trapfloor.c $(BUILD)/trap/filter.o
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_ALL) -o $@ $(filter %.c %.o,$^) $(LDFLAGS_ALL) $(SECCOMP_LIBS)

comma := ,

# On a fresh machine `make test` first installs the Debian packages the suite
# uses (.ci/packages) when run as root; otherwise it names the missing ones
# (the tests that need them then skip, except in CI where they fail).
test-deps:
	@missing=$$(for p in $$(grep -v '^#' .ci/packages); do 		dpkg -s $$p >/dev/null 2>&1 || echo $$p; done); 	if [ -n "$$missing" ]; then 		if [ "$$(id -u)" -eq 0 ]; then 			echo "make test: installing $$missing"; 			apt-get update -qq && DEBIAN_FRONTEND=noninteractive 			apt-get install -y -qq --no-install-recommends $$missing >/dev/null; 		else 			echo "make test: missing Debian packages: $$missing (run as root to install)"; 		fi; 	fi

test: test-deps
	$(MAKE) --no-print-directory test-build
	CW_BUILD=$(BUILD) $(PYTHON) tests/run.py $(TESTS)

clean:
	rm -rf build build-asan build-tsan

# Further targets live in one fragment per concern (bench, check/fuzz, demo/install).
-include $(sort $(wildcard mk/*.mk))
