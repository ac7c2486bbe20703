/*
 * split.h -- cuts wasm2c's C output into several translation units that
 * the C compiler can compile in parallel (engine.c, compile()).
 */
#ifndef PW_ENGINE_SPLIT_H
#define PW_ENGINE_SPLIT_H

#include <stddef.h>

/* Functions of generated code are cut into parts of about `part_bytes`
 * bytes of C (default PW_SPLIT_PART_BYTES, at most PW_SPLIT_MAX_PARTS
 * parts); a module with fewer bytes of functions is compiled as one unit,
 * as wasm2c wrote it. The part count depends only on the module and
 * part_bytes, never on the machine, so the same module always gives the
 * same code (the compile cache key names PW_SPLIT_SCHEME and part_bytes). */
#define PW_SPLIT_PART_BYTES ((size_t)1 << 20)
#define PW_SPLIT_MAX_PARTS 16
/* A function of at most this many bytes of C is copied (static) into each
 * part that calls it, so that the compiler can inline it there. */
#define PW_SPLIT_SMALL_BYTES 1500
#define PW_SPLIT_SCHEME "split-2, small functions copied, at most 16 parts of"

/* Reads `in` (wasm2c's plug.c, after the prologue patch) and writes
 * <dir>/part0.c .. part<n-1>.c when its functions have more than
 * part_bytes bytes of C: part0 has everything but most functions
 * (headers, function types, data and element segments, instantiation,
 * exports), each part a run of consecutive functions of about the same
 * size. A function referenced only from its own part stays static, and so
 * does a small one (PW_SPLIT_SMALL_BYTES), copied into the other parts
 * that call it; the others become hidden globals, declared only in the
 * parts that use them.
 * Returns the number of parts written, 0
 * when the module is small enough for one unit or the file is not laid
 * out as expected (the caller then compiles `in` itself), -1 on an I/O
 * error. */
int pw_split_output(const char *in, const char *dir, size_t part_bytes);

#endif
