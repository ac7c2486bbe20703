# bench/bench.mk -- `make bench`: cost per request of Proxy-Wasm filters in
# nginx, side by side with Lua and njs (docs/PERFORMANCE.md). Included by the
# top Makefile (BUILD, CC, LIB, WASM_* and the SDK/example variables come
# from there). Not part of `make test`: it takes minutes and needs an idle
# machine.
#
#   make bench         install what is missing, build, run, write
#                      bench/results/latest.{md,png,json}
#   make bench-build   only build the benchmark plugins and vmbench
#
# Knobs (e.g. `make bench BENCH_SECONDS=3 BENCH_ROUNDS=1` for a quick look):
#   BENCH_SECONDS       wrk duration of one measurement
#   BENCH_ROUNDS        rounds; every round runs every scenario once, in a
#                       rotated order
#   BENCH_CONNECTIONS   wrk connections (one wrk thread)
#   BENCH_RSS_REQUESTS  requests of the worker RSS run
#   BENCH_CG_REQUESTS   requests per scenario under callgrind
#   BENCH_PORT          front nginx port; the upstream uses BENCH_PORT+1
#   BENCH_ONLY          a subset of the parts: rps,rss,callout,tcp,callgrind,vm,v8,store,queue,
#                       compile (cold compile of the big C++ plugins: OUT/compile.md)
#   BENCH_OUT           where latest.{md,png,json} go
BENCH_SECONDS      ?= 4
BENCH_ROUNDS       ?= 7
BENCH_CONNECTIONS  ?= 16
BENCH_RSS_REQUESTS ?= 1000000
BENCH_CG_REQUESTS  ?= 2000
BENCH_PORT         ?= 18080
BENCH_ONLY         ?=
BENCH_OUT          ?= bench/results

BENCH_DIR     := $(BUILD)/bench
BENCH_C_NAMES := noop headers body shared count queue callout tcp_noop tcp_read
BENCH_C_WASM  := $(patsubst %,$(BENCH_DIR)/%.wasm,$(BENCH_C_NAMES))
BENCH_AS_WASM := $(BENCH_DIR)/as_headers.wasm
BENCH_VMBENCH := $(BENCH_DIR)/vmbench
BENCH_PYTHON  ?= /usr/bin/python3

.PHONY: bench bench-build
bench:
	bash scripts/deps.sh
	bash bench/deps.sh
	$(MAKE) all nginx-module examples-as bench-build
	$(BENCH_PYTHON) bench/run.py --build $(abspath $(BUILD)) --out $(BENCH_OUT) \
	  --seconds $(BENCH_SECONDS) --rounds $(BENCH_ROUNDS) \
	  --connections $(BENCH_CONNECTIONS) --rss-requests $(BENCH_RSS_REQUESTS) \
	  --cg-requests $(BENCH_CG_REQUESTS) --port $(BENCH_PORT) \
	  $(if $(BENCH_ONLY),--only $(BENCH_ONLY))

bench-build: $(BENCH_C_WASM) $(BENCH_AS_WASM) $(BENCH_VMBENCH)

# C plugins: bench/plugins/NAME.c + the C SDK, WASM_CFLAGS (-O2). Not
# stripped: wasm2c names functions after the name section, so profiles of
# the worker show the plugin's and the SDK's function names.
$(BENCH_C_WASM): $(BENCH_DIR)/%.wasm: bench/plugins/%.c $(PW_SDK_C_OBJ) $(PW_SDK_C_HDRS)
	@mkdir -p $(dir $@)
	$(WASM_CC) $(WASM_CFLAGS) $< $(PW_SDK_C_OBJ) -o $@

# C++ (part "compile", docs/PERFORMANCE.md "Issue 14: cold compile"): one
# source over the C SDK linking libc++'s regex, iostreams and locale
# (Debian's libc++-14-dev-wasm32, libc++abi-14-dev-wasm32; bench/deps.sh).
# regex.wasm: 3 copies of the regex engine, about 560 KB; regex_big.wasm:
# 48 copies, about 2.5 MB. Debug sections stripped, names kept.
BENCH_CXX       ?= clang++
BENCH_CXX_FLAGS := --target=wasm32-wasi -mexec-model=reactor -std=c++20 -O2 \
                   -fno-exceptions -Wall -Wextra -Werror -Iinclude -Isdk/c -Wl,--strip-debug
BENCH_CXX_WASM  := $(BENCH_DIR)/regex.wasm $(BENCH_DIR)/regex_big.wasm
bench-build: $(BENCH_CXX_WASM)

$(BENCH_DIR)/regex.wasm: bench/plugins/regex.cc $(PW_SDK_C_OBJ) $(PW_SDK_C_HDRS)
	@mkdir -p $(dir $@)
	$(BENCH_CXX) $(BENCH_CXX_FLAGS) -DPW_REGEX_COPIES=3 $< $(PW_SDK_C_OBJ) -o $@

$(BENCH_DIR)/regex_big.wasm: bench/plugins/regex.cc $(PW_SDK_C_OBJ) $(PW_SDK_C_HDRS)
	@mkdir -p $(dir $@)
	$(BENCH_CXX) $(BENCH_CXX_FLAGS) -DPW_REGEX_COPIES=48 $< $(PW_SDK_C_OBJ) -o $@

# AssemblyScript: compiled with the examples' pinned toolchain and flags
# (examples/assemblyscript/as.mk), from that directory so that the
# @solo-io/proxy-runtime import resolves.
$(BENCH_AS_WASM): bench/plugins/as_headers.ts $(AS_STAMP) $(AS_DIR)/as.mk
	@mkdir -p $(dir $@)
	cd $(AS_DIR) && $(AS_ASC) $(abspath $<) -b $(abspath $@).tmp $(AS_FLAGS)
	mv -f $@.tmp $@

$(BENCH_VMBENCH): bench/vmbench.c $(LIB) include/pwasm.h $(wildcard src/core/*.h src/engine/*.h)
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) $< $(LIB) $(LDLIBS_PWASM) -lpthread -o $@
