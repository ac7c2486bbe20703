# Example plugins. Each language has its own fragment.
include examples/c/c.mk
include examples/assemblyscript/as.mk
