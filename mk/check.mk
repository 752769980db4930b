# Robustness: the suite under sanitizers, fuzzing, corpus replay (issue 9).
#
#   make check         check-asan, then check-tsan
#   make check-asan    everything built with ASan+UBSan in $(ASAN_BUILD), the whole suite run on it
#   make check-tsan    the same with TSan in $(TSAN_BUILD)
#   make fuzz          each libFuzzer harness (clang) for FUZZ_SECONDS, into $(FUZZ_BUILD)
#   make fuzz-replay   every seed corpus through its harness, built with $(CC) (no libFuzzer)
#
# `make test` replays the corpora too (tests/test_fuzz_replay.py): the replay
# binaries are part of `test-build`. A sanitizer report anywhere in a check run fails
# it: every report is also written under $(BUILD)/san/, and any report there
# after the run is printed and makes the target fail (a report in a process
# whose exit status no test looks at still counts).

ASAN_BUILD ?= build-asan
TSAN_BUILD ?= build-tsan
FUZZ_BUILD ?= build-fuzz
FUZZ_CC    ?= clang
FUZZ_SECONDS ?= 60
# -O1: sanitizer reports with usable stacks, still fast enough for the suite.
CHECK_OPT  ?= -O1
ASAN_FLAGS := -fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer
TSAN_FLAGS := -fsanitize=thread -fno-omit-frame-pointer

# The runtime preloaded ahead of the shim (CW_PRELOAD_PREFIX) so that programs
# that are not sanitized themselves (python, sh) can load the sanitized shim.
ASAN_RT = $(shell $(CC) -print-file-name=libasan.so)
TSAN_RT = $(shell $(CC) -print-file-name=libtsan.so)

# Options (also read by processes the tests start, through the environment):
# - halt_on_error/exitcode: the first report ends the process with a status
#   no test expects (86 ASan/UBSan/LSan, 66 TSan), so the test fails there.
# - log_path: a copy of each report in $(BUILD)/san/ (see above). Notes that
#   are not reports (LSan's "Running thread N was not suspended" in a child
#   forked from a multi-threaded process) are shown but do not fail the run.
# - detect_leaks=1: leaks are ours to fix in the CLI, the test programs, the
#   shim. CPython runs with PYTHONMALLOC=malloc: with pymalloc its objects
#   live in mmap'd arenas LSan does not scan, and every python process would
#   report false leaks. LSan cannot check a traced process (it needs ptrace
#   itself): mk/check/bin/strace, first in PATH, runs strace's command with
#   detect_leaks=0; a test whose process cannot be leak-checked otherwise
#   (setuid: not dumpable) turns it off for that process (CW_SANITIZER says so).
# - TSan die_after_fork=0: a child forked from a multi-threaded process may
#   start threads (the drain engine does, afresh, in a child that drains);
#   TSan refuses by default.
# - suppressions: third-party code only, see mk/check/lsan.supp, tsan.supp.
# SAN and OPT are exported too: a test that runs make itself (make install)
# then links the sanitized objects the same way.
CHECK_BIN := $(abspath mk/check/bin)
check_common_env = PATH=$(CHECK_BIN):$$PATH PYTHONMALLOC=malloc OPT="$(CHECK_OPT)"
check_asan_env = $(check_common_env) SAN="$(ASAN_FLAGS)" \
	CW_BUILD=$(ASAN_BUILD) CW_SANITIZER=asan CW_PRELOAD_PREFIX=$(ASAN_RT) \
	ASAN_OPTIONS=halt_on_error=1:exitcode=86:detect_leaks=1:log_path=$(abspath $(ASAN_BUILD))/san/asan \
	UBSAN_OPTIONS=halt_on_error=1:exitcode=86:print_stacktrace=1:log_path=$(abspath $(ASAN_BUILD))/san/ubsan \
	LSAN_OPTIONS=suppressions=$(abspath mk/check/lsan.supp):print_suppressions=0
check_tsan_env = $(check_common_env) SAN="$(TSAN_FLAGS)" \
	CW_BUILD=$(TSAN_BUILD) CW_SANITIZER=tsan CW_PRELOAD_PREFIX=$(TSAN_RT) \
	TSAN_OPTIONS=halt_on_error=1:exitcode=66:second_deadlock_stack=1:die_after_fork=0:suppressions=$(abspath mk/check/tsan.supp):print_suppressions=0:log_path=$(abspath $(TSAN_BUILD))/san/tsan

# What in a sanitizer log file is a report (anything else is a note).
SAN_REPORT_RE := ERROR: |WARNING: ThreadSanitizer|runtime error:|SUMMARY: |fatal error|FATAL:

# Run the suite; then fail if any sanitizer wrote a report.
define check_run
	@rm -rf $(1)/san && mkdir -p $(1)/san && chmod 1777 $(1)/san
	@start=$$(date +%s); rc=0; \
	$(2) $(PYTHON) tests/run.py $(TESTS) || rc=$$?; \
	echo "$(3): suite finished in $$(( $$(date +%s) - start ))s (status $$rc)"; \
	for f in $$(ls $(1)/san); do \
		if grep -qE "$(SAN_REPORT_RE)" $(1)/san/$$f; then \
			echo "$(3): sanitizer report $(1)/san/$$f:"; cat $(1)/san/$$f; rc=1; \
		else \
			echo "$(3): note $(1)/san/$$f: $$(head -c 300 $(1)/san/$$f)"; \
		fi; \
	done; exit $$rc
endef

.PHONY: check check-asan check-tsan fuzz fuzz-replay clean-fuzz
# Both always run (a failure under ASan still shows what TSan says); fails if either did.
check:
	@rc=0; $(MAKE) --no-print-directory check-asan || rc=1; \
	$(MAKE) --no-print-directory check-tsan || rc=1; exit $$rc

check-asan:
	$(MAKE) BUILD=$(ASAN_BUILD) SAN="$(ASAN_FLAGS)" OPT="$(CHECK_OPT)" test-build
	$(call check_run,$(ASAN_BUILD),$(check_asan_env),check-asan)

check-tsan:
	$(MAKE) BUILD=$(TSAN_BUILD) SAN="$(TSAN_FLAGS)" OPT="$(CHECK_OPT)" test-build
	$(call check_run,$(TSAN_BUILD),$(check_tsan_env),check-tsan)

# ---- fuzzing -------------------------------------------------------------------
# One harness per pure parser, fuzz/fuzz_NAME.c, each linked with the sources
# it exercises; seeds in fuzz/corpus/NAME/.
FUZZ_NAMES := config logparse wire record
FUZZ_SRC_config   := core/config.c
FUZZ_SRC_logparse := tools/logparse.c tools/report.c tools/report_print.c tools/table.c \
		     tools/strmap.c tools/util.c core/utf8.c
FUZZ_SRC_wire     := tools/logparse.c tools/pkt.c tools/wire.c tools/util.c core/utf8.c
FUZZ_SRC_record   := core/record.c core/utf8.c core/verdict.c tools/logparse.c
FUZZ_CFLAGS := -std=gnu11 -Wall -Wextra -g -D_GNU_SOURCE -Iinclude -Icore -Ishim -Itools $(PCAP_CFLAGS)

# Replay binaries: the harness with fuzz/replay_main.c instead of libFuzzer,
# built like everything else in $(BUILD) (with $(SAN) under make check).
FUZZ_REPLAY := $(FUZZ_NAMES:%=$(BUILD)/fuzz/%-replay)
test-build: $(FUZZ_REPLAY)

# One rule pair per harness (no .SECONDEXPANSION: it would leak into later fragments).
FUZZ_DEPS := fuzz/fuzz.h $(wildcard core/*.h shim/*.h tools/*.h) include/closewatch.h
define fuzz_rules
$$(BUILD)/fuzz/$(1)-replay: fuzz/fuzz_$(1).c fuzz/replay_main.c $$(FUZZ_SRC_$(1)) $$(FUZZ_DEPS)
	@mkdir -p $$(dir $$@)
	$$(CC) $$(FUZZ_CFLAGS) -Werror $$(OPT) $$(SAN) -o $$@ $$(filter %.c,$$^) $$(LDFLAGS_ALL)

$$(FUZZ_BUILD)/fuzz/$(1): fuzz/fuzz_$(1).c $$(FUZZ_SRC_$(1)) $$(FUZZ_DEPS)
	@mkdir -p $$(dir $$@)
	$$(FUZZ_CC) $$(FUZZ_CFLAGS) -O1 -fsanitize=fuzzer,address,undefined \
	  -fno-sanitize-recover=all -o $$@ $$(filter %.c,$$^)
endef
$(foreach n,$(FUZZ_NAMES),$(eval $(call fuzz_rules,$(n))))

clean: clean-fuzz
clean-fuzz:
	rm -rf $(FUZZ_BUILD)

fuzz-replay: $(FUZZ_REPLAY)
	@for n in $(FUZZ_NAMES); do $(BUILD)/fuzz/$$n-replay fuzz/corpus/$$n || exit 1; done

# Each harness runs FUZZ_SECONDS on a work copy of its corpus (new inputs land
# in $(FUZZ_BUILD)/corpus/NAME; fuzz/corpus/NAME is only read), in libFuzzer's
# fork mode so that one crash does not end the run: every crashing input is
# kept in $(FUZZ_BUILD)/crash/NAME/ (copy it to fuzz/corpus/NAME/ as a
# regression test once fixed), and the target fails if there is any.
fuzz: $(FUZZ_NAMES:%=$(FUZZ_BUILD)/fuzz/%)
	@rc=0; for n in $(FUZZ_NAMES); do \
		rm -rf $(FUZZ_BUILD)/crash/$$n; \
		mkdir -p $(FUZZ_BUILD)/corpus/$$n $(FUZZ_BUILD)/crash/$$n; \
		echo "fuzz: $$n for $(FUZZ_SECONDS)s"; \
		$(FUZZ_BUILD)/fuzz/$$n -fork=1 -ignore_crashes=1 -ignore_timeouts=1 -ignore_ooms=1 \
		  -max_total_time=$(FUZZ_SECONDS) -max_len=8192 -timeout=10 -rss_limit_mb=2048 \
		  -artifact_prefix=$(FUZZ_BUILD)/crash/$$n/ \
		  $(FUZZ_BUILD)/corpus/$$n fuzz/corpus/$$n >$(FUZZ_BUILD)/$$n.log 2>&1; \
		grep -E "^#[0-9]+: cov: .* exec/s" $(FUZZ_BUILD)/$$n.log | tail -1; \
		crashes=$$(ls $(FUZZ_BUILD)/crash/$$n | wc -l); \
		if [ $$crashes -gt 0 ]; then rc=1; \
			echo "fuzz: $$n: $$crashes crashing input(s) in $(FUZZ_BUILD)/crash/$$n, log $(FUZZ_BUILD)/$$n.log"; \
			grep -hE "invariant failed|ERROR: AddressSanitizer|runtime error|SUMMARY" $(FUZZ_BUILD)/$$n.log | sort | uniq -c | head -10; \
		fi; \
	done; exit $$rc
