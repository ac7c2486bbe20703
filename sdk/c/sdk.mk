# C SDK for plugins (sdk/c). Two objects from one source:
#   $(PW_SDK_C_OBJ)      helpers + the exported callbacks dispatching to pw_plugin
#   $(PW_SDK_C_RAW_OBJ)  helpers only (-DPW_NO_DISPATCH), for plugins that export
#                        the proxy_on_* callbacks themselves
# Both export proxy_abi_version_0_2_1 and proxy_on_memory_allocate.
# A plugin links one of them and depends on $(PW_SDK_C_HDRS) too.
PW_SDK_C_HDRS    := sdk/c/proxy_wasm.h include/proxy_wasm/abi.h
PW_SDK_C_OBJ     := $(BUILD)/sdk/c/proxy_wasm.o
PW_SDK_C_RAW_OBJ := $(BUILD)/sdk/c/proxy_wasm_raw.o
# Compile-only flags: -mexec-model only matters when linking, and clang
# rejects it as unused under -Werror with -c.
PW_WASM_CFLAGS_C := $(filter-out -mexec-model=%,$(WASM_CFLAGS))

$(PW_SDK_C_OBJ): sdk/c/proxy_wasm.c $(PW_SDK_C_HDRS)
	@mkdir -p $(dir $@)
	$(WASM_CC) $(PW_WASM_CFLAGS_C) -c $< -o $@

$(PW_SDK_C_RAW_OBJ): sdk/c/proxy_wasm.c $(PW_SDK_C_HDRS)
	@mkdir -p $(dir $@)
	$(WASM_CC) $(PW_WASM_CFLAGS_C) -DPW_NO_DISPATCH -c $< -o $@

.PHONY: sdk
sdk: $(PW_SDK_C_OBJ) $(PW_SDK_C_RAW_OBJ)
all: sdk
