# Test plugins (tests/plugins/NAME.c -> build/tests/plugins/NAME.wasm) used by
# the host's tests. Three kinds, by what they link:
#   SDK  the C SDK with its dispatch        (trap, callout, tcp)
#   RAW  the SDK helpers, own raw exports   (lifecycle, hostcalls)
#   BARE nothing but wasi-libc              (bad_import, bad_signature)
# Each file's header comment documents its behaviour and log lines.
TEST_PLUGINS_DIR  := $(BUILD)/tests/plugins
TEST_PLUGINS_SDK  := $(TEST_PLUGINS_DIR)/trap.wasm $(TEST_PLUGINS_DIR)/callout.wasm \
                     $(TEST_PLUGINS_DIR)/tcp.wasm
TEST_PLUGINS_RAW  := $(TEST_PLUGINS_DIR)/lifecycle.wasm $(TEST_PLUGINS_DIR)/hostcalls.wasm \
                     $(TEST_PLUGINS_DIR)/bodies.wasm
TEST_PLUGINS_BARE := $(TEST_PLUGINS_DIR)/bad_import.wasm $(TEST_PLUGINS_DIR)/bad_signature.wasm
TEST_PLUGINS      := $(TEST_PLUGINS_SDK) $(TEST_PLUGINS_RAW) $(TEST_PLUGINS_BARE)

$(TEST_PLUGINS_SDK): $(TEST_PLUGINS_DIR)/%.wasm: tests/plugins/%.c $(PW_SDK_C_OBJ) $(PW_SDK_C_HDRS)
$(TEST_PLUGINS_RAW): $(TEST_PLUGINS_DIR)/%.wasm: tests/plugins/%.c $(PW_SDK_C_RAW_OBJ) $(PW_SDK_C_HDRS)
$(TEST_PLUGINS_BARE): $(TEST_PLUGINS_DIR)/%.wasm: tests/plugins/%.c

# --strip-debug drops wasi-libc's DWARF but keeps the name section, so traps
# and disassembly stay readable.
TEST_PLUGINS_FLAGS := -Wl,--strip-debug
$(TEST_PLUGINS):
	@mkdir -p $(dir $@)
	$(WASM_CC) $(WASM_CFLAGS) $(TEST_PLUGINS_FLAGS) $(filter %.c %.o,$^) -o $@

.PHONY: test-plugins
test-plugins: $(TEST_PLUGINS)
all: test-plugins

# WAT test plugins (tests/plugins/NAME.wat, wabt's wat2wasm): modules no SDK
# produces, e.g. ABI 0.1.0.
TEST_PLUGINS_WAT := $(patsubst tests/plugins/%.wat,$(TEST_PLUGINS_DIR)/%.wasm,$(wildcard tests/plugins/*.wat))
$(TEST_PLUGINS_WAT): $(TEST_PLUGINS_DIR)/%.wasm: tests/plugins/%.wat
	@mkdir -p $(dir $@)
	wat2wasm $< -o $@
test-plugins: $(TEST_PLUGINS_WAT)
