/*
 * glue.h -- the contract between the engine and a compiled plugin object.
 *
 * PW_GLUE_DECLS is compiled twice: here, for the engine, and as text at the
 * top of every generated glue file (PW_GLUE_DECLS_TEXT), so both sides share
 * one definition. Bump PW_GLUE_VERSION whenever it or the glue changes: the
 * version is part of the compile-cache key and checked at load.
 */
#ifndef PW_GLUE_H
#define PW_GLUE_H

#include <stdint.h>
#include <wasm-rt.h>

#define PW_GLUE_VERSION 5
#define PW_GLUE_SYMBOL "pw_glue_module"

#define PW_GLUE_DECLS                                                                             \
    typedef struct pw_glue_rt {                                                                   \
        void (*trap)(int kind);                                                                   \
        void (*allocate_memory)(wasm_rt_memory_t * m, uint32_t initial, uint32_t max);            \
        uint32_t (*grow_memory)(wasm_rt_memory_t * m, uint32_t delta);                            \
        void (*free_memory)(wasm_rt_memory_t * m);                                                \
        /* [0]: lowest stack pointer for a bulk memory operation, [1]: for                        \
         * a hostcall or runtime stub; below it traps (stack exhausted). */                       \
        const volatile uintptr_t *floors;                                                         \
    } pw_glue_rt;                                                                                 \
    typedef struct pw_glue_imports {                                                              \
        void *ctx;                                                                                \
        void (*const *fns)(void);                                                                 \
        void (*trace)(void *ctx, uint32_t fn, const uint64_t *args, uint32_t nargs,               \
                      uint64_t result);                                                           \
    } pw_glue_imports;                                                                            \
    typedef struct pw_glue_export {                                                               \
        const char *name;                                                                         \
        const char *sig;                                                                          \
        void (*fn)(void);                                                                         \
    } pw_glue_export;                                                                             \
    typedef struct pw_glue_descriptor {                                                           \
        uint32_t version;                                                                         \
        uint32_t instance_size;                                                                   \
        void (*init)(const pw_glue_rt *rt);                                                       \
        void (*instantiate)(void *instance, pw_glue_imports *imports);                            \
        void (*free)(void *instance);                                                             \
        wasm_rt_memory_t *(*memory)(void *instance);                                              \
        uint32_t nexports;                                                                        \
        const pw_glue_export *exports;                                                            \
    } pw_glue_descriptor;

PW_GLUE_DECLS

/* PW_SP(): the stack pointer, as text for the generated files (glue.c and
 * the patched wasm2c output). */
#define PW_GLUE_SP_TEXT                                                                           \
    "#ifndef PW_SP\n"                                                                             \
    "#if defined(__x86_64__)\n"                                                                   \
    "#define PW_SP() __extension__({ uintptr_t s_; "                                              \
    "__asm__(\"mov %%rsp, %0\" : \"=r\"(s_)); s_; })\n"                                           \
    "#elif defined(__aarch64__)\n"                                                                \
    "#define PW_SP() __extension__({ uintptr_t s_; "                                              \
    "__asm__(\"mov %0, sp\" : \"=r\"(s_)); s_; })\n"                                              \
    "#else\n"                                                                                     \
    "#define PW_SP() ((uintptr_t)__builtin_frame_address(0))\n"                                   \
    "#endif\n"                                                                                    \
    "#endif\n"

#define PW_GLUE_STR2(...) #__VA_ARGS__
#define PW_GLUE_STR(...) PW_GLUE_STR2(__VA_ARGS__)
#define PW_GLUE_DECLS_TEXT PW_GLUE_STR(PW_GLUE_DECLS)

#endif
