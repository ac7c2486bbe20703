# Test plugins of the nginx suite (tests/nginx/plugins/NAME.c ->
# build/tests/nginx/plugins/NAME.wasm): raw exports plus the C SDK's helpers
# (proxy_wasm_raw.o); those named in NGINX_TEST_PLUGINS_SDK use the SDK's
# dispatch (pw_plugin_t) instead (proxy_wasm.o). Included by nginx/nginx.mk.
NGINX_TEST_PLUGINS_DIR := $(BUILD)/tests/nginx/plugins
NGINX_TEST_PLUGINS_SDK := grpc_client callout tcp_stream tcp_auth leak
NGINX_TEST_PLUGINS     := $(patsubst tests/nginx/plugins/%.c,$(NGINX_TEST_PLUGINS_DIR)/%.wasm,$(wildcard tests/nginx/plugins/*.c))
NGINX_TEST_PLUGINS_D   := $(patsubst %,$(NGINX_TEST_PLUGINS_DIR)/%.wasm,$(NGINX_TEST_PLUGINS_SDK))
NGINX_TEST_PLUGINS_RAW := $(filter-out $(NGINX_TEST_PLUGINS_D),$(NGINX_TEST_PLUGINS))

$(NGINX_TEST_PLUGINS_RAW): $(NGINX_TEST_PLUGINS_DIR)/%.wasm: tests/nginx/plugins/%.c $(PW_SDK_C_RAW_OBJ) $(PW_SDK_C_HDRS)
	@mkdir -p $(dir $@)
	$(WASM_CC) $(WASM_CFLAGS) -Wl,--strip-debug $(filter %.c %.o,$^) -o $@

$(NGINX_TEST_PLUGINS_D): $(NGINX_TEST_PLUGINS_DIR)/%.wasm: tests/nginx/plugins/%.c $(PW_SDK_C_OBJ) $(PW_SDK_C_HDRS)
	@mkdir -p $(dir $@)
	$(WASM_CC) $(WASM_CFLAGS) -Wl,--strip-debug $(filter %.c %.o,$^) -o $@

.PHONY: nginx-test-plugins
nginx-test-plugins: $(NGINX_TEST_PLUGINS)
