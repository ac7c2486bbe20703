# Tests. `make test` installs what is missing, builds everything, runs all.
include tests/plugins/plugins.mk
