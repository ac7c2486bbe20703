# The pwasm tool (cli/*.c -> build/pwasm). Included by the top Makefile.
# The YAML test files of `pwasm test` are read with libyaml (Debian's
# libyaml-dev, installed by scripts/deps.sh).
CLI_LDLIBS := -lyaml

# The top rule lists only cli/*.c; the tool is rebuilt when a header changes.
$(BUILD)/pwasm: cli/cli.h
