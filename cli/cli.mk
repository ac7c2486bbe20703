# The pwasm tool (cli/*.c -> build/pwasm). Included by the top Makefile.
# The YAML test files of `pwasm test` are read with libyaml (Debian's
# libyaml-dev, installed by scripts/deps.sh).
CLI_LDLIBS := -lyaml

# The top rule lists only cli/*.c; the tool is rebuilt when a header changes.
$(BUILD)/pwasm: cli/cli.h

# A self-contained pwasm for CI images (docs/CI.md): libyaml, libcrypto and
# zlib linked in from the static archives of Debian's libyaml-dev,
# libssl-dev and zlib1g-dev, so it needs no shared library beyond glibc's.
# glibc itself stays dynamic: the engine dlopen()s each compiled plugin (a
# shared object linked against libc.so.6), and a statically linked glibc
# cannot load one reliably (a second libc in the process, its own malloc,
# TLS and signal state). build/pwasm, for the Debian package, links them
# dynamically as Debian wants.
CLI_STATIC_LDLIBS := -Wl,-Bstatic -lyaml -lcrypto -lz -Wl,-Bdynamic -ldl -lm -lpthread

$(BUILD)/pwasm-static: $(wildcard cli/*.c) cli/cli.h $(LIB)
	$(CC) $(ALL_CFLAGS) $(filter %.c,$^) $(LIB) $(CLI_STATIC_LDLIBS) -o $@

.PHONY: cli-static
cli-static: $(BUILD)/pwasm-static
all: cli-static
# tests/cli/test_ci.py runs the static binary and the conformance probe.
test-cli asan-test-cli: cli-static conformance-plugins
