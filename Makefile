# pwasm -- top-level build. `make` builds everything into build/.
# `make run` and `make test` first install what is missing (scripts/deps.sh).
BUILD    ?= build
CC       ?= cc
OPT      ?= -O2
CFLAGS_COMMON := -std=c11 -D_GNU_SOURCE -Wall -Wextra -Werror -g -fPIC -Iinclude
CFLAGS   ?= $(OPT)
ALL_CFLAGS = $(CFLAGS_COMMON) $(CFLAGS)
LDLIBS_PWASM := -lcrypto -lz -ldl -lm

# Plugins (wasm32-wasi, clang + wasi-libc).
WASM_CC     ?= clang
WASM_CFLAGS ?= --target=wasm32-wasi -mexec-model=reactor -O2 -Wall -Wextra -Werror -Iinclude -Isdk/c

# Shared compile cache for tests and the demo (engine compiled modules).
export PWASM_CACHE_DIR ?= $(abspath $(BUILD))/cache

.PHONY: all lib cli clean deps run test unit-test
all: lib cli

LIB_SRCS := $(wildcard src/engine/*.c) $(wildcard src/core/*.c)
LIB_OBJS := $(patsubst %.c,$(BUILD)/obj/%.o,$(LIB_SRCS))
LIB      := $(BUILD)/libpwasm.a

$(BUILD)/obj/%.o: %.c $(wildcard include/*.h include/proxy_wasm/*.h src/engine/*.h src/core/*.h src/core/*.def)
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -Isrc -c $< -o $@

$(LIB): $(LIB_OBJS)
	@mkdir -p $(dir $@)
	rm -f $@ && ar rcs $@ $^

lib: $(LIB)

include cli/cli.mk
# The CLI sees the public API only (include/), as any embedder.
$(BUILD)/pwasm: $(wildcard cli/*.c) $(LIB)
	$(CC) $(ALL_CFLAGS) $(filter %.c,$^) $(LIB) $(LDLIBS_PWASM) $(CLI_LDLIBS) -o $@

cli: $(BUILD)/pwasm

include sdk/c/sdk.mk
include examples/examples.mk
include tests/tests.mk
include nginx/nginx.mk
include bench/bench.mk
include debian/deb.mk

deps:
	bash scripts/deps.sh

clean:
	rm -rf $(BUILD)
