# Fuzz targets (libFuzzer, clang, with ASan and UBSan): tests/fuzz/NAME/
# holds NAME's fuzz.c, its seed corpus (corpus/) and maybe a dictionary
# (dict). docs/FUZZING.md says what each covers and what runs found.
#
#   make fuzz             each target for FUZZ_SECONDS (default 60) seconds
#   make fuzz-NAME        one target
#   make fuzz-smoke       each for FUZZ_SMOKE_SECONDS (5), run by make test
#                         (make fuzz-smoke-NAME: one)
#
# A run works in $(BUILD)/fuzz/NAME/corpus: the committed seeds, plus (for
# the module targets) the project's own plugins copied at run time; new
# inputs stay there, not in the repository. A crash is written as
# $(BUILD)/fuzz/NAME/crash-* and fails the run. Binaries: $(BUILD)/fuzz/bin/.
FUZZ_CC       ?= clang
FUZZ_BUILD    := $(BUILD)/fuzz
FUZZ_SAN      := -fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer
FUZZ_CFLAGS   := $(CFLAGS_COMMON) -O1 -gline-tables-only $(FUZZ_SAN) -fsanitize=fuzzer-no-link
FUZZ_LDFLAGS  := $(FUZZ_SAN) -fsanitize=fuzzer
FUZZ_SECONDS       ?= 60
FUZZ_SMOKE_SECONDS ?= 5
FUZZ_TARGETS  := wasm_load pairs property_path hostcalls yaml_fixture
# The engine's own SIGSEGV handler comes first (plugin traps); faults it
# does not own go back to libFuzzer's. Leaks are checked at each input.
FUZZ_ENV      := ASAN_OPTIONS=allow_user_segv_handler=1:detect_leaks=1 \
                 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
FUZZ_ARGS     := -rss_limit_mb=4096 -timeout=20 -print_final_stats=1
# hostcalls: the store keeps what inputs write, so most inputs allocate
# more than they free and a leak scan after each would cost 85% of the
# time; leaks are checked once, at exit (whatever is unreachable then).
FUZZ_ARGS_hostcalls := -detect_leaks=0

FUZZ_LIB_OBJS := $(patsubst %.c,$(FUZZ_BUILD)/obj/%.o,$(LIB_SRCS))
FUZZ_LIB      := $(FUZZ_BUILD)/libpwasm.a
FUZZ_CLI_OBJS := $(patsubst %.c,$(FUZZ_BUILD)/obj/%.o,cli/fixture.c cli/yaml.c cli/util.c)
FUZZ_BINS     := $(patsubst %,$(FUZZ_BUILD)/bin/%,$(FUZZ_TARGETS))

FUZZ_LIB_HDRS := $(wildcard include/*.h include/proxy_wasm/*.h src/engine/*.h src/core/*.h src/core/*.def)
$(FUZZ_BUILD)/obj/src/%.o: src/%.c $(FUZZ_LIB_HDRS)
	@mkdir -p $(dir $@)
	$(FUZZ_CC) $(FUZZ_CFLAGS) -Isrc -c $< -o $@
$(FUZZ_BUILD)/obj/%.o: %.c $(FUZZ_LIB_HDRS) $(wildcard cli/*.h tests/unit/*.h tests/fuzz/common/*.h)
	@mkdir -p $(dir $@)
	$(FUZZ_CC) $(FUZZ_CFLAGS) -Isrc -Icli -Itests/unit -Itests/fuzz/common -c $< -o $@

$(FUZZ_LIB): $(FUZZ_LIB_OBJS)
	rm -f $@ && ar rcs $@ $^

# Targets on a live VM link the fixture and the unit tests' in-memory host.
FUZZ_VM_OBJS := $(FUZZ_BUILD)/obj/tests/fuzz/common/fuzz_vm.o $(FUZZ_BUILD)/obj/tests/unit/memhost.o

$(FUZZ_BUILD)/bin/wasm_load: $(FUZZ_BUILD)/obj/tests/fuzz/wasm_load/fuzz.o $(FUZZ_LIB)
$(FUZZ_BUILD)/bin/pairs $(FUZZ_BUILD)/bin/property_path $(FUZZ_BUILD)/bin/hostcalls: \
  $(FUZZ_BUILD)/bin/%: $(FUZZ_BUILD)/obj/tests/fuzz/%/fuzz.o $(FUZZ_VM_OBJS) $(FUZZ_LIB)
$(FUZZ_BUILD)/bin/yaml_fixture: $(FUZZ_BUILD)/obj/tests/fuzz/yaml_fixture/fuzz.o $(FUZZ_CLI_OBJS) $(FUZZ_LIB)
# The fixture reader's file reads (config_file: ...) go to the target's
# stand-in: no input opens a file of the machine.
$(FUZZ_BUILD)/bin/yaml_fixture: FUZZ_TARGET_LDFLAGS := -Wl,--wrap=read_file
$(FUZZ_BINS):
	@mkdir -p $(dir $@)
	$(FUZZ_CC) $(FUZZ_LDFLAGS) $(FUZZ_TARGET_LDFLAGS) $(filter %.o,$^) $(FUZZ_LIB) $(LDLIBS_PWASM) $(CLI_LDLIBS) -o $@

# Seeds: the committed corpus; the built plugins (wasm_load) and the
# repository's fixtures and test files (yaml_fixture), copied at run time.
FUZZ_PLUGIN_SEEDS = $(wildcard $(BUILD)/tests/plugins/*.wasm $(BUILD)/examples/*.wasm \
                      $(BUILD)/tests/conformance/*.wasm)
FUZZ_YAML_SEEDS = $(wildcard tests/conformance/*.yaml tests/cli/fixtures/*.yaml tests/cli/examples/*.yaml)
FUZZ_NEEDS := test-plugins examples-c conformance-plugins

.PHONY: fuzz fuzz-smoke fuzz-build $(patsubst %,fuzz-%,$(FUZZ_TARGETS)) \
        $(patsubst %,fuzz-smoke-%,$(FUZZ_TARGETS))
fuzz-build: $(FUZZ_BINS)

# $(call fuzz_run,NAME,SECONDS)
define fuzz_run
	@mkdir -p $(FUZZ_BUILD)/$(1)/corpus
	cp -n tests/fuzz/$(1)/corpus/* $(FUZZ_BUILD)/$(1)/corpus/ 2>/dev/null || true
	$(if $(filter wasm_load,$(1)),cp -n $(FUZZ_PLUGIN_SEEDS) $(FUZZ_BUILD)/$(1)/corpus/ 2>/dev/null || true)
	$(if $(filter yaml_fixture,$(1)),cp -n $(FUZZ_YAML_SEEDS) $(FUZZ_BUILD)/$(1)/corpus/ 2>/dev/null || true)
	cd $(FUZZ_BUILD)/$(1) && { $(FUZZ_ENV) PWASM_FUZZ_ROOT=$(CURDIR) nice -n 19 $(abspath $(FUZZ_BUILD))/bin/$(1) \
	  $(FUZZ_ARGS) $(FUZZ_ARGS_$(1)) -max_total_time=$(2) $(if $(wildcard tests/fuzz/$(1)/dict),-dict=$(CURDIR)/tests/fuzz/$(1)/dict) \
	  corpus > run.log 2>&1; rc=$$?; grep -E '^(#[0-9]+[[:space:]]+DONE|stat::|==|SUMMARY|artifact_prefix|Test unit)' run.log | tail -n 20; exit $$rc; }
endef

$(patsubst %,fuzz-%,$(FUZZ_TARGETS)): fuzz-%: $(FUZZ_BUILD)/bin/% $(FUZZ_NEEDS)
	$(call fuzz_run,$*,$(FUZZ_SECONDS))

fuzz: $(patsubst %,fuzz-%,$(FUZZ_TARGETS))

$(patsubst %,fuzz-smoke-%,$(FUZZ_TARGETS)): fuzz-smoke-%: $(FUZZ_BUILD)/bin/% $(FUZZ_NEEDS)
	$(call fuzz_run,$*,$(FUZZ_SMOKE_SECONDS))

fuzz-smoke: $(patsubst %,fuzz-smoke-%,$(FUZZ_TARGETS))

check: fuzz-smoke
