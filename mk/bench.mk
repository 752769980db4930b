# Benchmarks (issue 8): every benchmark with and without the shim, alternating,
# several rounds; a table on stdout and JSON in $(BENCH_OUT).
#   make bench                      about two minutes
#   make bench BENCH_ROUNDS=5 BENCH_ONLY=churn,nginx
#   make bench-smoke                each benchmark once, tiny (what make test runs)
BENCH_ROUNDS ?= 9
BENCH_ONLY   ?=
BENCH_OUT    ?= $(BUILD)/bench-results.json
BENCH_FLAGS  ?=

# The bench programs share bench/bench.h.
$(BENCH_BIN): $(wildcard bench/*.h)

.PHONY: bench bench-smoke
bench: $(LIB) $(CLI) $(BENCH_BIN)
	$(PYTHON) bench/run.py --build $(BUILD) --rounds $(BENCH_ROUNDS) --out $(BENCH_OUT) \
	  $(if $(BENCH_ONLY),--only $(BENCH_ONLY)) $(BENCH_FLAGS)

bench-smoke: $(LIB) $(CLI) $(BENCH_BIN)
	$(PYTHON) bench/run.py --build $(BUILD) --smoke --out $(BUILD)/bench-smoke.json $(BENCH_FLAGS)
