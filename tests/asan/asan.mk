# Sanitizer build: the library, the unit tests and the CLI compiled with
# AddressSanitizer and UndefinedBehaviorSanitizer (-fno-sanitize-recover:
# any report fails the run) into $(BUILD)/asan, then the unit tests, the
# CLI tests and the conformance corpus run on them. Plugins stay as they
# are: their native code comes from wasm2c output compiled by the engine's
# own `cc` at load time, without sanitizers (the host code is what is
# checked; wasm2c's code is bounds-checked by the Wasm rules and traps).
#
# Traps: the engine turns faults of plugin code into traps with its own
# SIGSEGV/SIGBUS handlers, installed at pw_engine_attach; a fault that is
# not a plugin's goes back to the handler that was there before.
# allow_user_segv_handler=1 lets the engine's sigaction() through ASan's
# interceptor. handle_segv=0 (and handle_sigbus=0) keeps ASan from
# installing its own at start-up: with it, the last detach would restore
# ASan's handler where the unit tests check that the default one is back.
# ASan's reports of bad memory accesses do not depend on it (they come
# from checks compiled into the host code, not from signals); a wild
# fault in host code then ends the process with SIGSEGV, unreported.
# Leaks are checked at exit (LeakSanitizer).
# $(CC) (gcc). clang's UBSan would also report arithmetic on a null pointer
# (NULL + 0), which gcc's does not (the fuzz targets, built with clang,
# check that), but with clang 14's ASan the unit test of recursion through
# hostcalls meets the CPU time limit before the stack limit (not understood
# yet; every other check passes).
ASAN_CC      ?= $(CC)
ASAN_BUILD   := $(BUILD)/asan
ASAN_FLAGS   := -fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer
ASAN_CFLAGS  := $(CFLAGS_COMMON) -O1 $(ASAN_FLAGS)
ASAN_OPTIONS_PWASM := handle_segv=0:handle_sigbus=0:allow_user_segv_handler=1:detect_leaks=1:abort_on_error=0
UBSAN_OPTIONS_PWASM := print_stacktrace=1:halt_on_error=1
ASAN_LIB_OBJS := $(patsubst %.c,$(ASAN_BUILD)/obj/%.o,$(LIB_SRCS))
ASAN_LIB     := $(ASAN_BUILD)/libpwasm.a
ASAN_UNIT    := $(ASAN_BUILD)/tests/unit/pwasm_unit
ASAN_PWASM   := $(ASAN_BUILD)/pwasm
ASAN_ENV     := ASAN_OPTIONS=$(ASAN_OPTIONS_PWASM) UBSAN_OPTIONS=$(UBSAN_OPTIONS_PWASM)

$(ASAN_BUILD)/obj/%.o: %.c $(wildcard include/*.h include/proxy_wasm/*.h src/engine/*.h src/core/*.h src/core/*.def)
	@mkdir -p $(dir $@)
	$(ASAN_CC) $(ASAN_CFLAGS) -Isrc -c $< -o $@

$(ASAN_LIB): $(ASAN_LIB_OBJS)
	rm -f $@ && ar rcs $@ $^

$(ASAN_PWASM): $(wildcard cli/*.c) cli/cli.h $(ASAN_LIB)
	$(ASAN_CC) $(ASAN_CFLAGS) $(filter %.c,$^) $(ASAN_LIB) $(LDLIBS_PWASM) $(CLI_LDLIBS) -o $@

$(ASAN_UNIT): $(wildcard tests/unit/*.c tests/unit/*.h) $(ASAN_LIB)
	@mkdir -p $(dir $@)
	$(ASAN_CC) $(ASAN_CFLAGS) -Itests/unit $(filter %.c,$^) $(ASAN_LIB) $(LDLIBS_PWASM) -o $@

.PHONY: asan asan-test asan-unit-test asan-test-cli asan-test-conformance
asan: $(ASAN_PWASM) $(ASAN_UNIT)

asan-unit-test: $(ASAN_UNIT) test-plugins conformance-plugins examples-c examples-as test-examples-c
	$(ASAN_ENV) $(ASAN_UNIT)

asan-test-cli: $(ASAN_PWASM) examples-c examples-as test-plugins
	$(ASAN_ENV) PWASM_BIN=$(abspath $(ASAN_PWASM)) $(NGINX_PYTHON) -m pytest -q -p no:cacheprovider tests/cli

asan-test-conformance: $(ASAN_PWASM) conformance-plugins
	$(ASAN_ENV) PWASM_BUILD_DIR=$(abspath $(BUILD)) $(ASAN_PWASM) test tests/conformance

asan-test: asan-unit-test asan-test-cli asan-test-conformance

# make test (check) runs it after the regular suites.
check: asan-test
