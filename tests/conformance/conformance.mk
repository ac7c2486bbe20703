# Conformance corpus: YAML tests (tests/conformance/*.yaml) run by
# `pwasm test`, on test plugins written with the C SDK
# (tests/conformance/plugins/NAME.c -> build/tests/conformance/NAME.wasm).
# Test files name their plugin as ${PWASM_BUILD_DIR:-../../build}/..., so
# they also run by hand from a default build (build/pwasm test tests/conformance).
CONFORMANCE_DIR     := $(BUILD)/tests/conformance
CONFORMANCE_PLUGINS := $(patsubst tests/conformance/plugins/%.c,$(CONFORMANCE_DIR)/%.wasm,$(wildcard tests/conformance/plugins/*.c))

$(CONFORMANCE_PLUGINS): $(CONFORMANCE_DIR)/%.wasm: tests/conformance/plugins/%.c $(PW_SDK_C_OBJ) $(PW_SDK_C_HDRS)
	@mkdir -p $(dir $@)
	$(WASM_CC) $(WASM_CFLAGS) -Wl,--strip-debug $(filter %.c %.o,$^) -o $@

.PHONY: conformance-plugins test-conformance test-conformance-split
conformance-plugins: $(CONFORMANCE_PLUGINS)
all: conformance-plugins

test-conformance: cli conformance-plugins
	PWASM_BUILD_DIR=$(abspath $(BUILD)) $(BUILD)/pwasm test tests/conformance

# The same corpus with every plugin's generated code split into parts
# compiled in parallel (docs/ENGINE.md "Loading a module", step 5): parts of
# 8 KiB of C force the split that only big modules get by default.
test-conformance-split: cli conformance-plugins
	PWASM_COMPILE_PART_BYTES=8192 PWASM_BUILD_DIR=$(abspath $(BUILD)) $(BUILD)/pwasm test tests/conformance
