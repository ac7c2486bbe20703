/*
 * wasm_parse.h -- a small reader for the parts of a Wasm binary the host
 * needs before compiling it: types, imports, exports, memories, start.
 *
 * It is not a validator (wasm2c validates the whole module before we
 * compile it); it only refuses what it cannot read, with the byte offset.
 * Every read is bounds-checked; any input is safe to pass.
 */
#ifndef PW_WASM_PARSE_H
#define PW_WASM_PARSE_H

#include <stddef.h>
#include <stdint.h>

/* Value types in signature strings: i32 'i', i64 'I', f32 'f', f64 'F',
 * funcref 'r', externref 'x', v128 'v'. A signature string is the params,
 * ':' and the results, e.g. "iii:i" for (i32,i32,i32)->i32, ":" for ()->(). */
#define PW_SIG_MAX 64

enum {
    PW_EXTERN_FUNC = 0,
    PW_EXTERN_TABLE = 1,
    PW_EXTERN_MEMORY = 2,
    PW_EXTERN_GLOBAL = 3,
    PW_EXTERN_TAG = 4
};

typedef struct pw_wasm_import {
    const char *module; /* NUL-terminated copies */
    const char *name;
    uint8_t kind;         /* PW_EXTERN_* */
    char sig[PW_SIG_MAX]; /* for functions */
} pw_wasm_import;

typedef struct pw_wasm_export {
    const char *name;
    uint8_t kind;
    uint32_t index;
    char sig[PW_SIG_MAX]; /* for functions */
} pw_wasm_export;

typedef struct pw_wasm_info {
    pw_wasm_import *imports;
    uint32_t nimports;
    pw_wasm_export *exports;
    uint32_t nexports;
    uint32_t nfuncs; /* defined (non-imported) functions */
    int has_memory;  /* defines a memory */
    int imports_memory;
    uint32_t mem_initial; /* pages */
    uint32_t mem_max;     /* pages; UINT32_MAX when unbounded */
    int has_start;
    uint32_t data_bytes; /* size of the data section (segments and all) */
    char *strings;       /* backing store of all names */
} pw_wasm_info;

/* Reads `len` bytes. Returns 0, or -1 with a reason in err ("not a Wasm
 * module (bad magic)", "truncated at byte 1234: ..."). */
int pw_wasm_parse(const uint8_t *bytes, size_t len, pw_wasm_info *out, char *err, size_t errlen);
void pw_wasm_info_free(pw_wasm_info *info);

/* The export of that name and kind, or NULL. */
const pw_wasm_export *pw_wasm_find_export(const pw_wasm_info *info, const char *name, int kind);

/* "(i32, i32) -> i32" from "ii:i" into buf. */
const char *pw_sig_pretty(const char *sig, char *buf, size_t len);

#endif
