# Tests. `make test` installs what is missing, builds everything, runs all.
include tests/plugins/plugins.mk
include tests/conformance/conformance.mk
include tests/asan/asan.mk
include tests/fuzz/fuzz.mk

UNIT_BIN := $(BUILD)/tests/unit/pwasm_unit

$(UNIT_BIN): $(wildcard tests/unit/*.c tests/unit/*.h) $(LIB)
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -Itests/unit $(filter %.c,$^) $(LIB) $(LDLIBS_PWASM) -o $@

.PHONY: unit-test check
unit-test: $(UNIT_BIN) test-plugins conformance-plugins examples-c examples-as test-examples-c
	$(UNIT_BIN)

# Everything, without installing dependencies first.
check: check-includes all unit-test test-cli test-conformance test-conformance-split test-nginx

# Dependencies point one way (docs/ARCHITECTURE.md).
.PHONY: check-includes
check-includes:
	$(NGINX_PYTHON) scripts/check_includes.py

# nginx versions other than Debian's, from their sources (nginx/nginx.mk)
ifneq ($(NGINX_SOURCES),)
check: test-nginx-sources
endif

test: deps
	$(MAKE) check

.PHONY: test-cli
test-cli: cli examples-c examples-as test-plugins
	$(NGINX_PYTHON) -m pytest -q -p no:cacheprovider tests/cli
