# C example plugins (examples/c/NAME/NAME.c -> build/examples/NAME.wasm), built
# with the C SDK (sdk/c/sdk.mk). Stripped and size-optimised: they are what
# users deploy.
EXAMPLES_C_NAMES := add_header deny body_replace auth_pause logger shared_counter token_refresh \
                    auth_callout grpc_call redis_guard sni_router
EXAMPLES_C_WASM  := $(patsubst %,$(BUILD)/examples/%.wasm,$(EXAMPLES_C_NAMES))
EXAMPLES_C_FLAGS := -Os -Wl,--strip-all

$(BUILD)/examples/add_header.wasm: examples/c/add_header/add_header.c
$(BUILD)/examples/deny.wasm: examples/c/deny/deny.c
$(BUILD)/examples/body_replace.wasm: examples/c/body_replace/body_replace.c
$(BUILD)/examples/auth_pause.wasm: examples/c/auth_pause/auth_pause.c
$(BUILD)/examples/logger.wasm: examples/c/logger/logger.c
$(BUILD)/examples/shared_counter.wasm: examples/c/shared_counter/shared_counter.c
$(BUILD)/examples/token_refresh.wasm: examples/c/token_refresh/token_refresh.c
$(BUILD)/examples/auth_callout.wasm: examples/c/auth_callout/auth_callout.c
$(BUILD)/examples/grpc_call.wasm: examples/c/grpc_call/grpc_call.c
$(BUILD)/examples/redis_guard.wasm: examples/c/redis_guard/redis_guard.c examples/c/json_lite.h
$(BUILD)/examples/sni_router.wasm: examples/c/sni_router/sni_router.c examples/c/json_lite.h

$(EXAMPLES_C_WASM): $(PW_SDK_C_OBJ) $(PW_SDK_C_HDRS)
	@mkdir -p $(dir $@)
	$(WASM_CC) $(WASM_CFLAGS) $(EXAMPLES_C_FLAGS) $(filter %.c %.o,$^) -o $@

.PHONY: examples-c
examples-c: $(EXAMPLES_C_WASM)
all: examples-c

# Unit tests of the stream examples, native: the plugin and the SDK compiled
# for the build machine against a fake host (tests/examples/stream_host.c).
EXAMPLES_C_NATIVE := redis_guard sni_router
EXAMPLES_C_NATIVE_BIN := $(patsubst %,$(BUILD)/tests/examples/test_%,$(EXAMPLES_C_NATIVE))

$(BUILD)/tests/examples/test_redis_guard: examples/c/redis_guard/redis_guard.c
$(BUILD)/tests/examples/test_sni_router: examples/c/sni_router/sni_router.c
$(BUILD)/tests/examples/test_%: tests/examples/test_%.c tests/examples/stream_host.c \
                                tests/examples/stream_host.h examples/c/json_lite.h sdk/c/proxy_wasm.c \
                                $(PW_SDK_C_HDRS)
	@mkdir -p $(dir $@)
	$(CC) -std=c11 -D_GNU_SOURCE -Wall -Wextra -Werror -g -Iinclude -Isdk/c -Itests/examples \
	    $(filter %.c,$^) -o $@

.PHONY: test-examples-c
test-examples-c: $(EXAMPLES_C_NATIVE_BIN)
	@for t in $(EXAMPLES_C_NATIVE_BIN); do $$t || exit 1; done
