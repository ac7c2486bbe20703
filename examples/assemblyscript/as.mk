# AssemblyScript example plugins (@solo-io/proxy-runtime 0.1.8 + assemblyscript
# 0.14.9, pinned in package.json / package-lock.json). Included by the top
# Makefile through examples/examples.mk; uses BUILD.
#
# npm runs only when node_modules is missing or package-lock.json/package.json
# is newer than the last install (stamp file inside node_modules, which npm ci
# wipes). Needs node + npm and the npm registry the first time.

AS_DIR   := examples/assemblyscript
AS_STAMP := $(AS_DIR)/node_modules/.pwasm-installed
AS_ASC   := node_modules/.bin/asc
# --use abort=abort_proc_exit: the runtime's abort handler (logs at critical,
# then wasi_unstable.proc_exit(255)) instead of importing env.abort.
# --optimize (-O3s): binaryen optimizations; assertions are kept on purpose so
# runtime misuse traps instead of corrupting the heap.
AS_FLAGS := --use abort=abort_proc_exit --optimize
AS_SRCS  := $(wildcard $(AS_DIR)/assembly/*.ts)
AS_WASMS := $(BUILD)/examples/as_add_header.wasm $(BUILD)/examples/as_auth_call.wasm

.PHONY: examples-as
all: examples-as
examples-as: $(AS_WASMS)

$(AS_STAMP): $(AS_DIR)/package.json $(wildcard $(AS_DIR)/package-lock.json)
	cd $(AS_DIR) && if [ -f package-lock.json ]; then \
	    npm ci --no-audit --no-fund; \
	  else \
	    npm install --no-audit --no-fund; \
	  fi
	touch $@

# One entry file per plugin: assembly/<name>.ts -> $(BUILD)/examples/as_<name>.wasm
# (a static pattern rule, so it never competes with other examples' rules).
# Written to a temporary name first so an interrupted build leaves no .wasm.
$(AS_WASMS): $(BUILD)/examples/as_%.wasm: $(AS_DIR)/assembly/%.ts $(AS_SRCS) $(AS_STAMP) $(AS_DIR)/as.mk
	@mkdir -p $(dir $@)
	cd $(AS_DIR) && $(AS_ASC) assembly/$*.ts -b $(abspath $@).tmp $(AS_FLAGS)
	mv -f $@.tmp $@
