/*
 * engine.c -- compile a module with wasm2c + cc into a shared object, cache
 * it, load it, instantiate it and call into it. See engine.h.
 */
#include <dirent.h>
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <link.h>
#include <sched.h>
#include <signal.h>
#include <spawn.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <openssl/evp.h>

#include "engine/engine.h"
#include "engine/glue.h"
#include "engine/rt.h"
#include "engine/split.h"

extern char **environ;

struct pw_wmod {
    void *dl;
    const pw_glue_descriptor *desc;
    void (**fns)(void); /* host function table, indexed as in the glue */
    size_t nfns;
    uint32_t max_pages;
    uint32_t max_call_ms; /* travels with each call (per runtime) */
};

struct pw_winst {
    pw_wmod *m;
    pw_glue_imports imports;
    wasm_rt_memory_t *mem;
    int instantiated;
    _Alignas(16) unsigned char instance[];
};

/* ------------------------------------------------------------ utilities */

void pw_errf(char *err, size_t errlen, const char *fmt, ...) {
    if (!err || !errlen)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
}

/* wasm2c's name mangling (wabt 1.0.32, CWriter::MangleName): "Z_" then each
 * byte: [A-Za-z0-9_] except 'Z' as is, anything else as Z + two hex digits. */
static void mangle(FILE *f, const char *s) {
    fputs("Z_", f);
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if ((((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9')) &&
             *p != 'Z') ||
            *p == '_')
            fputc(*p, f);
        else
            fprintf(f, "Z%02X", *p);
    }
}

static const char *ctype(char c) {
    switch (c) {
    case 'i':
        return "u32";
    case 'I':
        return "u64";
    case 'f':
        return "f32";
    case 'F':
        return "f64";
    }
    return NULL;
}

static int find_host(const pw_host_func *funcs, size_t n, const char *mod, const char *name) {
    for (size_t i = 0; i < n; i++)
        if (strcmp(funcs[i].module, mod) == 0 && strcmp(funcs[i].name, name) == 0)
            return (int)i;
    return -1;
}

static int cmp_str(const void *a, const void *b) {
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* ----------------------------------------------------------------- glue */

/* The wasm_rt_* runtime the generated code links against, forwarded to the
 * engine (memory, traps) or kept local (function types, tables). */
static const char glue_runtime[] = PW_GLUE_SP_TEXT
    "static const pw_glue_rt *pw_rt;\n"
    "const volatile uintptr_t *pw_floors_p;\n"
    /* Runtime stubs that call into the host from plugin code get the
     * hostcall headroom too. */
    "#define PW_HOST_CHECK() if (__builtin_expect(PW_SP() < pw_floors_p[1], 0)) pw_rt->trap(8)\n"
    "void wasm_rt_trap(wasm_rt_trap_t c) { pw_rt->trap((int)c); abort(); }\n"
    "bool wasm_rt_is_initialized(void) { return true; }\n"
    "void wasm_rt_init(void) {}\n"
    "void wasm_rt_free(void) {}\n"
    "void wasm_rt_allocate_memory(wasm_rt_memory_t *m, uint32_t i, uint32_t x) { "
    "pw_rt->allocate_memory(m, i, x); }\n"
    "uint32_t wasm_rt_grow_memory(wasm_rt_memory_t *m, uint32_t d) { PW_HOST_CHECK(); return "
    "pw_rt->grow_memory(m, d); }\n"
    "void wasm_rt_free_memory(wasm_rt_memory_t *m) { pw_rt->free_memory(m); }\n"
    "typedef struct { uint32_t np, nr; wasm_rt_type_t t[64]; } pw_ft;\n"
    "static pw_ft *pw_fts; static uint32_t pw_nfts;\n"
    "uint32_t wasm_rt_register_func_type(uint32_t np, uint32_t nr, ...) {\n"
    "  pw_ft ft; memset(&ft, 0, sizeof ft); ft.np = np; ft.nr = nr;\n"
    "  va_list ap; va_start(ap, nr);\n"
    "  for (uint32_t i = 0; i < np + nr; i++) { wasm_rt_type_t t = va_arg(ap, wasm_rt_type_t); if "
    "(i < 64) ft.t[i] = t; }\n"
    "  va_end(ap);\n"
    "  for (uint32_t i = 0; i < pw_nfts; i++) if (!memcmp(&pw_fts[i], &ft, sizeof ft)) return i + "
    "1;\n"
    "  pw_ft *n = realloc(pw_fts, (pw_nfts + 1) * sizeof *n); if (!n) abort();\n"
    "  pw_fts = n; pw_fts[pw_nfts++] = ft; return pw_nfts;\n"
    "}\n"
    "#define PW_TABLE_OPS(type)                                                         \\\n"
    "  void wasm_rt_allocate_##type##_table(wasm_rt_##type##_table_t *t, uint32_t n, uint32_t "
    "max) { \\\n"
    "    t->size = n; t->max_size = max; t->data = calloc(n ? n : 1, sizeof *t->data);   \\\n"
    "    if (!t->data) pw_rt->trap(34); }                                                \\\n"
    "  void wasm_rt_free_##type##_table(wasm_rt_##type##_table_t *t) { free(t->data); t->data = "
    "0; } \\\n"
    "  uint32_t wasm_rt_grow_##type##_table(wasm_rt_##type##_table_t *t, uint32_t d, "
    "wasm_rt_##type##_t init) { \\\n"
    "    PW_HOST_CHECK(); uint64_t n = (uint64_t)t->size + d; uint32_t old = t->size;    \\\n"
    "    if (n > t->max_size || n > 10000000) return (uint32_t)-1;                       \\\n"
    "    void *p = realloc(t->data, (n ? n : 1) * sizeof *t->data); if (!p) return (uint32_t)-1; "
    "\\\n"
    "    t->data = p; for (uint64_t i = old; i < n; i++) t->data[i] = init;              \\\n"
    "    t->size = (uint32_t)n; return old; }\n"
    "PW_TABLE_OPS(funcref)\n"
    "PW_TABLE_OPS(externref)\n"
    "static WASM_RT_UNWIND_TARGET *pw_unwind;\n"
    "static uint32_t pw_tag, pw_exc_size; static unsigned char pw_exc[256];\n"
    "uint32_t wasm_rt_register_tag(uint32_t size) { static uint32_t n; if (size > sizeof pw_exc) "
    "pw_rt->trap(8); return n++; }\n"
    "void wasm_rt_load_exception(uint32_t tag, uint32_t size, const void *v) { pw_tag = tag; "
    "pw_exc_size = size; if (size) memcpy(pw_exc, v, size); }\n"
    "void wasm_rt_throw(void) { if (pw_unwind) siglongjmp(*pw_unwind, "
    "WASM_RT_TRAP_UNCAUGHT_EXCEPTION); pw_rt->trap(7); abort(); }\n"
    "WASM_RT_UNWIND_TARGET *wasm_rt_get_unwind_target(void) { return pw_unwind; }\n"
    "void wasm_rt_set_unwind_target(WASM_RT_UNWIND_TARGET *t) { pw_unwind = t; }\n"
    "uint32_t wasm_rt_exception_tag(void) { return pw_tag; }\n"
    "uint32_t wasm_rt_exception_size(void) { return pw_exc_size; }\n"
    "void *wasm_rt_exception(void) { return pw_exc; }\n";

/* Writes glue.c for the parsed module: import trampolines (by host index
 * map[i] for import i), the export table and the descriptor. */
static int write_glue(const char *path, const pw_wasm_info *info, const int *map) {
    FILE *f = fopen(path, "w");
    if (!f)
        return -1;
    fputs("#include <stdarg.h>\n#include <stdbool.h>\n#include <stdlib.h>\n"
          "#include <string.h>\n#include <setjmp.h>\n#include \"plug.h\"\n",
          f);
    fputs(PW_GLUE_DECLS_TEXT, f);
    fputc('\n', f);
    fputs(glue_runtime, f);

    /* One struct per import module; all share the layout of pw_glue_imports
     * so one pointer serves every module. Sorted: wasm2c's parameter order. */
    const char **mods = calloc(info->nimports + 1, sizeof *mods);
    uint32_t nmods = 0;
    for (uint32_t i = 0; i < info->nimports; i++) {
        if (info->imports[i].kind != PW_EXTERN_FUNC)
            continue;
        uint32_t j;
        for (j = 0; j < nmods; j++)
            if (strcmp(mods[j], info->imports[i].module) == 0)
                break;
        if (j == nmods)
            mods[nmods++] = info->imports[i].module;
    }
    qsort(mods, nmods, sizeof *mods, cmp_str);
    for (uint32_t j = 0; j < nmods; j++) {
        fputs("struct ", f);
        mangle(f, mods[j]);
        fputs("_instance_t { pw_glue_imports g; };\n", f);
    }

    for (uint32_t i = 0; i < info->nimports; i++) {
        const pw_wasm_import *im = &info->imports[i];
        if (im->kind != PW_EXTERN_FUNC)
            continue;
        const char *colon = strchr(im->sig, ':');
        const char *ret = colon[1] ? ctype(colon[1]) : "void";
        int np = (int)(colon - im->sig);
        /* ret f(struct M_instance_t *i, args) {
         *   ret r = ((ret (*)(void *, args))i->g.fns[k])(i->g.ctx, args);
         *   if (i->g.trace) { u64 a[] = {args}; i->g.trace(ctx, k, a, n, r); }
         *   return r; }  -- the trace branch is one load when off. */
        fprintf(f, "%s ", ret);
        mangle(f, im->module);
        mangle(f, im->name);
        fputs("(struct ", f);
        mangle(f, im->module);
        fputs("_instance_t *i", f);
        for (int k = 0; k < np; k++)
            fprintf(f, ", %s a%d", ctype(im->sig[k]), k);
        /* Enough native stack for the host, or a trap here, in plugin
         * code, where unwinding is safe. */
        fputs(") {\n  if (__builtin_expect(PW_SP() < pw_floors_p[1], 0)) "
              "pw_rt->trap(8);\n  ",
              f);
        if (colon[1])
            fprintf(f, "%s r = ", ret);
        fprintf(f, "((%s (*)(void *", ret);
        for (int k = 0; k < np; k++)
            fprintf(f, ", %s", ctype(im->sig[k]));
        fprintf(f, "))i->g.fns[%d])(i->g.ctx", map[i]);
        for (int k = 0; k < np; k++)
            fprintf(f, ", a%d", k);
        fputs(");\n  if (__builtin_expect(i->g.trace != 0, 0)) {\n"
              "    u64 a[] = {0",
              f);
        for (int k = 0; k < np; k++)
            fprintf(f, ", (u64)a%d", k);
        fprintf(f, "};\n    i->g.trace(i->g.ctx, %d, a + 1, %d, %s);\n  }\n", map[i], np,
                colon[1] ? "(u64)r" : "0");
        fputs(colon[1] ? "  return r;\n}\n" : "}\n", f);
    }

    /* Exports. */
    fputs("static const pw_glue_export pw_exports[] = {\n", f);
    uint32_t nexp = 0;
    const char *memname = NULL;
    for (uint32_t i = 0; i < info->nexports; i++) {
        const pw_wasm_export *ex = &info->exports[i];
        if (ex->kind == PW_EXTERN_MEMORY && !memname)
            memname = ex->name;
        if (ex->kind != PW_EXTERN_FUNC)
            continue;
        fputs("  {\"", f);
        for (const char *c = ex->name; *c; c++)
            fprintf(f, "\\x%02x", (unsigned char)*c);
        fprintf(f, "\", \"%s\", (void (*)(void))", ex->sig);
        mangle(f, "plug");
        mangle(f, ex->name);
        fputs("},\n", f);
        nexp++;
    }
    if (!nexp)
        fputs("  {0, 0, 0},\n", f);
    fputs("};\n", f);

    fputs("static void pw_init(const pw_glue_rt *rt) { pw_rt = rt; "
          "pw_floors_p = rt->floors; Z_plug_init_module(); }\n",
          f);
    fputs("static void pw_instantiate(void *inst, pw_glue_imports *imp) {\n"
          "  (void)imp;\n  Z_plug_instantiate((Z_plug_instance_t *)inst",
          f);
    for (uint32_t j = 0; j < nmods; j++) {
        fputs(", (struct ", f);
        mangle(f, mods[j]);
        fputs("_instance_t *)imp", f);
    }
    fputs(");\n}\n", f);
    fputs("static void pw_free(void *inst) { Z_plug_free((Z_plug_instance_t "
          "*)inst); }\n",
          f);
    fputs("static wasm_rt_memory_t *pw_memory(void *inst) { return ", f);
    mangle(f, "plug");
    mangle(f, memname ? memname : "memory");
    fputs("((Z_plug_instance_t *)inst); }\n", f);
    fprintf(f,
            "__attribute__((visibility(\"default\"))) const "
            "pw_glue_descriptor " PW_GLUE_SYMBOL " = {\n"
            "  %d, sizeof(Z_plug_instance_t), pw_init, pw_instantiate, "
            "pw_free, pw_memory, %u, pw_exports };\n",
            PW_GLUE_VERSION, nexp);
    free(mods);
    return fclose(f) == 0 ? 0 : -1;
}

/* ------------------------------------------------------------- compiling */

/* The loads and stores of wasm2c 1.0.32 (DEFINE_LOAD / DEFINE_STORE) read
 * the memory's base pointer, mem->data, at every access; a store to linear
 * memory is a memcpy, which may alias anything, so the C compiler reloads
 * the base after every store (one more load per access in a loop). pwasm's
 * runtime reserves a memory's whole address range when the instance is
 * created and grows it in place (rt.c), so the base never changes while
 * functions run: each function reads it once, in FUNC_PROLOGUE (pw_base),
 * and the accesses to that memory add the address to the local. Same
 * addresses, same optimisation barrier on loaded values (a load whose value
 * is unused still happens and still traps in the guard region) as wasm2c's
 * little-endian definitions; an access to another memory goes through
 * mem->data as before. PW_MEM_ACCESSOR is the exported memory's accessor
 * (declared in plug.h). Inserted after the last DEFINE_STORE line. */
#define PW_FAST_MEM_TEXT                                                                          \
    "#if !WABT_BIG_ENDIAN\n"                                                                       \
    "#undef FUNC_PROLOGUE\n"                                                                       \
    "#define FUNC_PROLOGUE wasm_rt_memory_t *const pw_mem = PW_MEM_ACCESSOR(instance); "          \
    "u8 *const pw_base = pw_mem->data; (void)pw_base\n"                                            \
    "#define PW_BASE(m) ((m) == pw_mem ? pw_base : (m)->data)\n"                                   \
    "#define PW_LOAD(name, t1, t2, t3) static inline t3 pw_##name(u8 *b, u64 addr) { "            \
    "t1 result; wasm_rt_memcpy(&result, b + addr, sizeof(t1)); wasm_asm(\"\" ::\"r\"(result)); "  \
    "return (t3)(t2)result; }\n"                                                                   \
    "#define PW_STORE(name, t1, t2) static inline void pw_##name(u8 *b, u64 addr, t2 value) { "   \
    "t1 wrapped = (t1)value; wasm_rt_memcpy(b + addr, &wrapped, sizeof(t1)); }\n"                 \
    "PW_LOAD(i32_load, u32, u32, u32)\nPW_LOAD(i64_load, u64, u64, u64)\n"                         \
    "PW_LOAD(f32_load, f32, f32, f32)\nPW_LOAD(f64_load, f64, f64, f64)\n"                         \
    "PW_LOAD(i32_load8_s, s8, s32, u32)\nPW_LOAD(i64_load8_s, s8, s64, u64)\n"                     \
    "PW_LOAD(i32_load8_u, u8, u32, u32)\nPW_LOAD(i64_load8_u, u8, u64, u64)\n"                     \
    "PW_LOAD(i32_load16_s, s16, s32, u32)\nPW_LOAD(i64_load16_s, s16, s64, u64)\n"                 \
    "PW_LOAD(i32_load16_u, u16, u32, u32)\nPW_LOAD(i64_load16_u, u16, u64, u64)\n"                 \
    "PW_LOAD(i64_load32_s, s32, s64, u64)\nPW_LOAD(i64_load32_u, u32, u64, u64)\n"                 \
    "PW_STORE(i32_store, u32, u32)\nPW_STORE(i64_store, u64, u64)\n"                               \
    "PW_STORE(f32_store, f32, f32)\nPW_STORE(f64_store, f64, f64)\n"                               \
    "PW_STORE(i32_store8, u8, u32)\nPW_STORE(i32_store16, u16, u32)\n"                             \
    "PW_STORE(i64_store8, u8, u64)\nPW_STORE(i64_store16, u16, u64)\n"                             \
    "PW_STORE(i64_store32, u32, u64)\n"                                                            \
    "#define i32_load(m, a) pw_i32_load(PW_BASE(m), a)\n"                                          \
    "#define i64_load(m, a) pw_i64_load(PW_BASE(m), a)\n"                                          \
    "#define f32_load(m, a) pw_f32_load(PW_BASE(m), a)\n"                                          \
    "#define f64_load(m, a) pw_f64_load(PW_BASE(m), a)\n"                                          \
    "#define i32_load8_s(m, a) pw_i32_load8_s(PW_BASE(m), a)\n"                                    \
    "#define i64_load8_s(m, a) pw_i64_load8_s(PW_BASE(m), a)\n"                                    \
    "#define i32_load8_u(m, a) pw_i32_load8_u(PW_BASE(m), a)\n"                                    \
    "#define i64_load8_u(m, a) pw_i64_load8_u(PW_BASE(m), a)\n"                                    \
    "#define i32_load16_s(m, a) pw_i32_load16_s(PW_BASE(m), a)\n"                                  \
    "#define i64_load16_s(m, a) pw_i64_load16_s(PW_BASE(m), a)\n"                                  \
    "#define i32_load16_u(m, a) pw_i32_load16_u(PW_BASE(m), a)\n"                                  \
    "#define i64_load16_u(m, a) pw_i64_load16_u(PW_BASE(m), a)\n"                                  \
    "#define i64_load32_s(m, a) pw_i64_load32_s(PW_BASE(m), a)\n"                                  \
    "#define i64_load32_u(m, a) pw_i64_load32_u(PW_BASE(m), a)\n"                                  \
    "#define i32_store(m, a, v) pw_i32_store(PW_BASE(m), a, v)\n"                                  \
    "#define i64_store(m, a, v) pw_i64_store(PW_BASE(m), a, v)\n"                                  \
    "#define f32_store(m, a, v) pw_f32_store(PW_BASE(m), a, v)\n"                                  \
    "#define f64_store(m, a, v) pw_f64_store(PW_BASE(m), a, v)\n"                                  \
    "#define i32_store8(m, a, v) pw_i32_store8(PW_BASE(m), a, v)\n"                                \
    "#define i32_store16(m, a, v) pw_i32_store16(PW_BASE(m), a, v)\n"                              \
    "#define i64_store8(m, a, v) pw_i64_store8(PW_BASE(m), a, v)\n"                                \
    "#define i64_store16(m, a, v) pw_i64_store16(PW_BASE(m), a, v)\n"                              \
    "#define i64_store32(m, a, v) pw_i64_store32(PW_BASE(m), a, v)\n"                              \
    "#endif\n"

/* Copies wasm2c's plug.c to out, inserting after its empty FUNC_PROLOGUE
 * (the variant without call-depth counting; wasm2c's helpers follow it)
 * the native stack check for the bulk memory operations: memory.fill,
 * memory.copy and memory.init call libc (memset, memmove, memcpy of a
 * variable size), which then always has the Wasm headroom, and a plugin
 * over its CPU time limit is stopped at its next bulk operation (see
 * rt.c). Constant-size copies (loads, stores, bit casts) are inlined by
 * the compiler and not checked. With memname (the exported memory), also
 * the per-function memory base of PW_FAST_MEM_TEXT after the last
 * DEFINE_STORE line. 0, or -1 when the file cannot be read/written or has
 * not exactly one of each such line. */
static int patch_prologue(const char *in, const char *out, const char *memname) {
    FILE *fi = fopen(in, "r"), *fo = fi ? fopen(out, "w") : NULL;
    if (!fo) {
        if (fi)
            fclose(fi);
        return -1;
    }
    char *line = NULL;
    size_t cap = 0;
    ssize_t n;
    int found = 0, stores = 0, bad = 0;
    while ((n = getline(&line, &cap, fi)) > 0) {
        if (strcmp(line, "#define FUNC_PROLOGUE\n") == 0) {
            found++;
            fputs(line, fo);
            fputs(PW_GLUE_SP_TEXT "extern __attribute__((visibility(\"hidden\"))) const "
                                  "volatile uintptr_t *pw_floors_p;\n"
                                  "#define PW_WASM_CHECK() (__builtin_expect(PW_SP() < "
                                  "pw_floors_p[0], 0) ? (void)TRAP(EXHAUSTION) : (void)0)\n"
                                  "#define memset(d, c, n) (PW_WASM_CHECK(), memset(d, c, n))\n"
                                  "#define memmove(d, s, n) (PW_WASM_CHECK(), memmove(d, s, n))\n"
                                  "#define memcpy(d, s, n) (__builtin_constant_p(n) ? (void)0 "
                                  ": PW_WASM_CHECK(), memcpy(d, s, n))\n",
                  fo);
        } else if (memname && strcmp(line, "DEFINE_STORE(i64_store32, u32, u64)\n") == 0) {
            stores++;
            fputs(line, fo);
            fputs("#define PW_MEM_ACCESSOR ", fo);
            mangle(fo, "plug");
            mangle(fo, memname);
            fputs("\n" PW_FAST_MEM_TEXT, fo);
        } else if (fwrite(line, 1, (size_t)n, fo) != (size_t)n) {
            bad = 1;
            break;
        }
    }
    free(line);
    bad |= ferror(fi);
    fclose(fi);
    bad |= fclose(fo) != 0;
    return bad || found != 1 || (memname && stores != 1) ? -1 : 0;
}

/* The first exported memory (the one write_glue's pw_memory returns), or
 * NULL. */
static const char *exported_memory(const pw_wasm_info *info) {
    for (uint32_t i = 0; i < info->nexports; i++)
        if (info->exports[i].kind == PW_EXTERN_MEMORY)
            return info->exports[i].name;
    return NULL;
}

static void log_tail(const char *logpath, char *err, size_t errlen);

/* The flags of every C compile of generated code, after the configured
 * ones (cfg->cflags), and of the link into a shared object. The cache key
 * includes both. */
#define PW_CC_CODE_FLAGS                                                                          \
    "-fPIC -fvisibility=hidden -w -fstack-clash-protection "                                      \
    "-DWASM_RT_MEMCHECK_SIGNAL_HANDLER=1 -DWASM_RT_USE_STACK_DEPTH_COUNT=0 -I."
#define PW_CC_LINK_FLAGS "-fPIC -shared"
/* At most this many compiler processes run at once (compile_jobs()). */
#define PW_COMPILE_MAX_JOBS 8

/* Starts `sh -c cmd` with stdout/stderr to `logpath`, in a process group
 * of its own, under the configured address space limit (ulimit -v, for the
 * shell and everything it starts). 0 with its pid, or -1. */
static int spawn_limited(const pw_engine_config *cfg, const char *cmd, const char *logpath,
                         pid_t *pid) {
    char full[17000];
    if (cfg->compile_max_memory)
        snprintf(full, sizeof full, "ulimit -v %llu && %s",
                 (unsigned long long)(cfg->compile_max_memory >> 10), cmd);
    else
        snprintf(full, sizeof full, "%s", cmd);
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, 1, logpath, O_WRONLY | O_CREAT | O_APPEND, 0600);
    posix_spawn_file_actions_adddup2(&fa, 1, 2);
    posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
    posix_spawnattr_t at;
    posix_spawnattr_init(&at);
    posix_spawnattr_setflags(&at, POSIX_SPAWN_SETPGROUP);
    posix_spawnattr_setpgroup(&at, 0);
    char *argv[] = {"/bin/sh", "-c", full, NULL};
    int rc = posix_spawn(pid, "/bin/sh", &fa, &at, argv, environ);
    posix_spawn_file_actions_destroy(&fa);
    posix_spawnattr_destroy(&at);
    return rc == 0 ? 0 : -1;
}

/* Kills a spawned command's process group and reaps it. */
static void kill_spawned(pid_t pid) {
    int st;
    kill(-pid, SIGKILL);
    kill(pid, SIGKILL);
    while (waitpid(pid, &st, 0) < 0 && errno == EINTR)
        ;
}

/* Runs n commands (spawn_limited), at most `jobs` (<= PW_COMPILE_MAX_JOBS)
 * at a time, each with its own log. The wall-clock limit covers them all
 * together, from the first start: past it, every one still running is
 * killed. At the first failure the others are killed; *failed (may be
 * NULL) says which one failed or ran out of time. Returns 0 when all
 * exited with status 0, -1 on a failure, -2 when the time limit killed
 * them. */
static int run_jobs(const pw_engine_config *cfg, char *const *cmds, char *const *logs, int n,
                    int jobs, int *failed) {
    pid_t pids[PW_COMPILE_MAX_JOBS];
    int idx[PW_COMPILE_MAX_JOBS], running = 0, next = 0, rc = 0, who = 0;
    if (jobs < 1)
        jobs = 1;
    if (jobs > PW_COMPILE_MAX_JOBS)
        jobs = PW_COMPILE_MAX_JOBS;
    struct timespec t0, now;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    long nap_us = 1000;
    while (rc == 0 && (next < n || running)) {
        while (running < jobs && next < n) {
            if (spawn_limited(cfg, cmds[next], logs[next], &pids[running]) != 0) {
                rc = -1;
                who = next;
                break;
            }
            idx[running++] = next++;
            nap_us = 1000;
        }
        int reaped = 0;
        for (int k = 0; rc == 0 && k < running; k++) {
            int st;
            pid_t r = waitpid(pids[k], &st, WNOHANG);
            if (r == 0 || (r < 0 && errno == EINTR))
                continue;
            int ok = r == pids[k] && WIFEXITED(st) && WEXITSTATUS(st) == 0;
            if (!ok) {
                rc = -1;
                who = idx[k];
            }
            if (r == pids[k]) {
                running--;
                pids[k] = pids[running];
                idx[k] = idx[running];
                k--;
            }
            reaped = 1;
        }
        if (rc != 0 || reaped)
            continue;
        clock_gettime(CLOCK_MONOTONIC, &now);
        uint64_t ms = (uint64_t)(now.tv_sec - t0.tv_sec) * 1000 +
                      (uint64_t)((now.tv_nsec - t0.tv_nsec) / 1000000);
        if (cfg->compile_timeout_ms && ms >= cfg->compile_timeout_ms) {
            rc = -2;
            who = running ? idx[0] : 0;
            break;
        }
        struct timespec nap = {0, nap_us * 1000};
        nanosleep(&nap, NULL);
        if (nap_us < 50000)
            nap_us *= 2;
    }
    for (int k = 0; k < running; k++)
        kill_spawned(pids[k]);
    if (failed)
        *failed = who;
    return rc;
}

/* Runs one command (run_jobs). */
static int run(const pw_engine_config *cfg, const char *cmd, const char *logpath) {
    char *c = (char *)cmd, *l = (char *)logpath;
    return run_jobs(cfg, &c, &l, 1, 1, NULL);
}

/* Bytes of C per part when generated code is split (split.h):
 * $PWASM_COMPILE_PART_BYTES (at least 4096) or PW_SPLIT_PART_BYTES. A
 * tuning and test knob; the cache key includes it. */
static size_t split_part_bytes(void) {
    const char *e = getenv("PWASM_COMPILE_PART_BYTES");
    long long n = e && *e ? atoll(e) : 0;
    return n >= 4096 ? (size_t)n : PW_SPLIT_PART_BYTES;
}

/* How many compiler processes run at once: the CPUs this process may run
 * on (sched_getaffinity), at most PW_COMPILE_MAX_JOBS;
 * $PWASM_COMPILE_JOBS (1 to PW_COMPILE_MAX_JOBS) overrides it. */
static int compile_jobs(void) {
    const char *e = getenv("PWASM_COMPILE_JOBS");
    int n = e && *e ? atoi(e) : 0;
    if (n < 1) {
        cpu_set_t set;
        n = sched_getaffinity(0, sizeof set, &set) == 0 ? CPU_COUNT(&set) : 1;
    }
    return n < 1 ? 1 : n > PW_COMPILE_MAX_JOBS ? PW_COMPILE_MAX_JOBS : n;
}

/* The error for a failed compiler step: what failed, the limit that
 * stopped it, then the tail of its output. */
static void step_failed(const pw_engine_config *cfg, int rc, const char *what, const char *logpath,
                        char *err, size_t errlen) {
    size_t used = strlen(err);
    if (rc == -2)
        snprintf(err + used, errlen - used, " (%s exceeded the compile time limit of %u ms)", what,
                 cfg->compile_timeout_ms);
    else if (cfg->compile_max_memory)
        snprintf(err + used, errlen - used, " (%s failed; its memory limit is %llu MiB)", what,
                 (unsigned long long)(cfg->compile_max_memory >> 20));
    if (rc != -2)
        log_tail(logpath, err, errlen);
}

/* Appends the tail of a log file to err (compiler/validator messages). */
static void log_tail(const char *logpath, char *err, size_t errlen) {
    FILE *f = fopen(logpath, "r");
    if (!f)
        return;
    char buf[4096];
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = 0;
    while (n && (buf[n - 1] == '\n' || buf[n - 1] == ' '))
        buf[--n] = 0;
    size_t used = strlen(err);
    if (used + 3 < errlen)
        snprintf(err + used, errlen - used, ": %s", buf);
}

static int write_file(const char *path, const uint8_t *b, size_t n) {
    FILE *f = fopen(path, "wb");
    if (!f)
        return -1;
    size_t w = fwrite(b, 1, n, f);
    return (fclose(f) == 0 && w == n) ? 0 : -1;
}

static void rm_tree(const char *dir) {
    DIR *d = opendir(dir);
    if (!d)
        return;
    struct dirent *e;
    char p[4096];
    while ((e = readdir(d))) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
            continue;
        snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
        unlink(p);
    }
    closedir(d);
    rmdir(dir);
}

static int mkdir_p(const char *path) {
    char tmp[4096];
    snprintf(tmp, sizeof tmp, "%s", path);
    for (char *p = tmp + 1; *p; p++) {
        if (*p != '/')
            continue;
        *p = 0;
        if (mkdir(tmp, 0755) != 0 && errno != EEXIST)
            return -1;
        *p = '/';
    }
    return mkdir(tmp, 0755) != 0 && errno != EEXIST ? -1 : 0;
}

/* Cache key: SHA-256 over the host table hash (glue version, names and
 * signatures of the host functions), compiler, flags (configured and
 * fixed), the scheme that splits the C code (split.h) and module bytes. */
static void cache_key(const pw_engine_config *cfg, const uint8_t *bytes, size_t len,
                      const pw_host_func *funcs, size_t nfuncs, char hex[65]) {
    unsigned char md[32], table[32];
    unsigned int mdlen = 0;
    pw_engine_table_hash(funcs, nfuncs, table);
    EVP_MD_CTX *c = EVP_MD_CTX_new();
    EVP_DigestInit_ex(c, EVP_sha256(), NULL);
    EVP_DigestUpdate(c, table, sizeof table);
    EVP_DigestUpdate(c, cfg->cc, strlen(cfg->cc) + 1);
    EVP_DigestUpdate(c, cfg->cflags, strlen(cfg->cflags) + 1);
    char scheme[512];
    int sl = snprintf(scheme, sizeof scheme, "%s\n%s\n%s %zu", PW_CC_CODE_FLAGS, PW_CC_LINK_FLAGS,
                      PW_SPLIT_SCHEME, split_part_bytes());
    EVP_DigestUpdate(c, scheme, (size_t)sl + 1);
    EVP_DigestUpdate(c, bytes, len);
    EVP_DigestFinal_ex(c, md, &mdlen);
    EVP_MD_CTX_free(c);
    for (int i = 0; i < 32; i++)
        sprintf(hex + 2 * i, "%02x", md[i]);
    hex[64] = 0;
}

/* Compiles <dir>/part0.c .. part<nparts-1>.c (pw_split_output) and
 * glue.c into objects, compile_jobs() processes at a time, then links them
 * into so_path. */
static int compile_parts(const pw_engine_config *cfg, const char *name, const char *dir,
                         int nparts, const char *so_path, char *err, size_t errlen) {
    int n = nparts + 1, failed = 0, rc = -1;
    char **cmds = calloc((size_t)n * 2, sizeof *cmds), **logs = cmds + n;
    for (int k = 0; cmds && k < n; k++) {
        /* Biggest first: part0 (segments, instantiation) last, glue second
         * to last. */
        int part = k < nparts - 1 ? k + 1 : k == nparts - 1 ? -1 : 0;
        char src[32];
        if (part < 0)
            snprintf(src, sizeof src, "glue");
        else
            snprintf(src, sizeof src, "part%d", part);
        if (asprintf(&cmds[k], "cd '%s' && exec %s %s " PW_CC_CODE_FLAGS " -c %s.c -o %s.o", dir,
                     cfg->cc, cfg->cflags, src, src) < 0 ||
            asprintf(&logs[k], "%s/log.%s", dir, src) < 0) {
            cmds[k] = logs[k] = NULL;
            goto out;
        }
    }
    rc = cmds ? run_jobs(cfg, cmds, logs, n, compile_jobs(), &failed) : -1;
    if (rc != 0) {
        pw_errf(err, errlen, "module \"%s\": C compilation failed (%s %s)", name, cfg->cc,
                cfg->cflags);
        step_failed(cfg, rc, "the C compiler", logs[failed], err, errlen);
        rc = -2;
        goto out;
    }
    char cmd[16384], logp[4200];
    int used = snprintf(cmd, sizeof cmd, "cd '%s' && exec %s %s " PW_CC_LINK_FLAGS " -o '%s'", dir,
                        cfg->cc, cfg->cflags, so_path);
    for (int k = 0; k < nparts && used > 0 && (size_t)used < sizeof cmd; k++)
        used += snprintf(cmd + used, sizeof cmd - (size_t)used, " part%d.o", k);
    if (used > 0 && (size_t)used < sizeof cmd)
        snprintf(cmd + used, sizeof cmd - (size_t)used, " glue.o -lm");
    snprintf(logp, sizeof logp, "%s/log", dir);
    rc = run(cfg, cmd, logp);
    if (rc != 0) {
        pw_errf(err, errlen, "module \"%s\": linking its compiled code failed (%s)", name,
                cfg->cc);
        step_failed(cfg, rc, "the linker", logp, err, errlen);
        rc = -2;
    }
out:
    if (!cmds)
        pw_errf(err, errlen, "out of memory");
    for (int k = 0; cmds && k < n; k++) {
        free(cmds[k]);
        free(logs[k]);
    }
    free(cmds);
    return rc;
}

static int compile(const pw_engine_config *cfg, const char *name, const uint8_t *bytes, size_t len,
                   const pw_wasm_info *info, const int *map, const char *dir, const char *so_path,
                   char *err, size_t errlen) {
    char p[4200], logp[4200], cmd[16384];
    snprintf(logp, sizeof logp, "%s/log", dir);
    snprintf(p, sizeof p, "%s/module.wasm", dir);
    if (write_file(p, bytes, len) != 0) {
        pw_errf(err, errlen, "%s: cannot write %s: %s", name, p, strerror(errno));
        return -1;
    }
    const char *w2c = getenv("PWASM_WASM2C");
    snprintf(cmd, sizeof cmd, "cd '%s' && exec %s module.wasm -n plug -o plug.c", dir,
             w2c && *w2c ? w2c : "wasm2c");
    int rc = run(cfg, cmd, logp);
    if (rc != 0) {
        pw_errf(err, errlen,
                rc == -2 ? "module \"%s\" could not be compiled"
                         : "module \"%s\" refused by the validator (wasm2c)",
                name);
        step_failed(cfg, rc, "wasm2c", logp, err, errlen);
        return rc == -2 ? -2 : -1;
    }
    char p2[4200];
    snprintf(p, sizeof p, "%s/plug.c", dir);
    snprintf(p2, sizeof p2, "%s/plug_pw.c", dir);
    if (patch_prologue(p, p2, exported_memory(info)) != 0) {
        pw_errf(err, errlen,
                "module \"%s\": wasm2c's output was not as expected (no "
                "single FUNC_PROLOGUE to patch)",
                name);
        return -2;
    }
    snprintf(p, sizeof p, "%s/glue.c", dir);
    if (write_glue(p, info, map) != 0) {
        pw_errf(err, errlen, "%s: cannot write %s", name, p);
        return -2;
    }
    int nparts = pw_split_output(p2, dir, split_part_bytes());
    if (nparts < 0) {
        pw_errf(err, errlen, "module \"%s\": cannot split wasm2c's output in %s: %s", name, dir,
                strerror(errno));
        return -2;
    }
    if (nparts > 0)
        return compile_parts(cfg, name, dir, nparts, so_path, err, errlen);
    snprintf(cmd, sizeof cmd,
             "cd '%s' && exec %s %s " PW_CC_CODE_FLAGS " " PW_CC_LINK_FLAGS
             " -o '%s' plug_pw.c glue.c -lm",
             dir, cfg->cc, cfg->cflags, so_path);
    rc = run(cfg, cmd, logp);
    if (rc != 0) {
        pw_errf(err, errlen, "module \"%s\": C compilation failed (%s %s)", name, cfg->cc,
                cfg->cflags);
        step_failed(cfg, rc, "the C compiler", logp, err, errlen);
        return -2;
    }
    return 0;
}

/* --------------------------------------------------------------- loading */

/* Maps each import to its host function (map[i] = index in funcs), or
 * refuses the module: unknown import, other signature, non-function import,
 * no exported memory. */
static int link_map(const char *name, const pw_wasm_info *info, const pw_host_func *funcs,
                    size_t nfuncs, int **out, char *err, size_t errlen) {
    char pretty1[256], pretty2[256];
    int *map = calloc(info->nimports + 1, sizeof *map);
    if (!map) {
        pw_errf(err, errlen, "out of memory");
        return -1;
    }
    for (uint32_t i = 0; i < info->nimports; i++) {
        const pw_wasm_import *im = &info->imports[i];
        if (im->kind != PW_EXTERN_FUNC) {
            static const char *kinds[] = {"function", "table", "memory", "global", "tag"};
            pw_errf(err, errlen,
                    "module \"%s\" imports %s %s.%s; pwasm provides only "
                    "functions (a module must define its own memory and tables)",
                    name, im->kind < 5 ? kinds[im->kind] : "?", im->module, im->name);
            free(map);
            return -1;
        }
        int h = find_host(funcs, nfuncs, im->module, im->name);
        if (h < 0) {
            pw_errf(err, errlen,
                    "module \"%s\" imports %s.%s %s, which this host does not "
                    "provide",
                    name, im->module, im->name, pw_sig_pretty(im->sig, pretty1, sizeof pretty1));
            free(map);
            return -1;
        }
        if (strcmp(funcs[h].sig, im->sig) != 0) {
            pw_errf(err, errlen,
                    "module \"%s\" imports %s.%s with signature %s, but this "
                    "host provides %s",
                    name, im->module, im->name, pw_sig_pretty(im->sig, pretty1, sizeof pretty1),
                    pw_sig_pretty(funcs[h].sig, pretty2, sizeof pretty2));
            free(map);
            return -1;
        }
        map[i] = h;
    }
    if (!info->has_memory || !pw_wasm_find_export(info, "memory", PW_EXTERN_MEMORY)) {
        pw_errf(err, errlen, "module \"%s\" does not %s a memory named \"memory\"", name,
                info->has_memory ? "export" : "define");
        free(map);
        return -1;
    }
    *out = map;
    return 0;
}

/* Compiles into <dir>/plug.so, dir a fresh private (0700) temporary
 * directory under tmp_parent (or $TMPDIR when NULL), returned in dir. The
 * caller removes it (rm_tree) after a success. */
static int compile_in_tmp(const pw_engine_config *cfg, const char *name, const uint8_t *bytes,
                          size_t len, const pw_wasm_info *info, const int *map,
                          const char *tmp_parent, char *dir, size_t dirlen, char *err,
                          size_t errlen) {
    char tmp_so[4200];
    const char *t = getenv("TMPDIR");
    snprintf(dir, dirlen, "%s/pwasm-XXXXXX", tmp_parent ? tmp_parent : t && *t ? t : "/tmp");
    if (!mkdtemp(dir)) {
        pw_errf(err, errlen, "cannot create %s: %s", dir, strerror(errno));
        return -1;
    }
    /* The compiler runs inside dir: every path it gets must be absolute
     * (a relative cache directory would otherwise point nowhere). */
    char *abs = realpath(dir, NULL);
    if (!abs) {
        pw_errf(err, errlen, "cannot resolve %s: %s", dir, strerror(errno));
        rm_tree(dir);
        return -1;
    }
    snprintf(dir, dirlen, "%s", abs);
    free(abs);
    snprintf(tmp_so, sizeof tmp_so, "%s/plug.so", dir);
    int rc = compile(cfg, name, bytes, len, info, map, dir, tmp_so, err, errlen);
    if (rc != 0)
        rm_tree(dir);
    return rc;
}

/* Compiles into `so_path` through a temporary directory beside it (or in
 * $TMPDIR when tmp_parent is NULL), renamed into place atomically. */
static int compile_to(const pw_engine_config *cfg, const char *name, const uint8_t *bytes,
                      size_t len, const pw_wasm_info *info, const int *map, const char *tmp_parent,
                      const char *so_path, char *err, size_t errlen) {
    char dir[4096], tmp_so[4200];
    int rc =
        compile_in_tmp(cfg, name, bytes, len, info, map, tmp_parent, dir, sizeof dir, err, errlen);
    if (rc != 0)
        return rc;
    snprintf(tmp_so, sizeof tmp_so, "%s/plug.so", dir);
    if (rename(tmp_so, so_path) != 0) {
        pw_errf(err, errlen, "cannot store %s: %s", so_path, strerror(errno));
        rc = -1;
    }
    rm_tree(dir);
    return rc;
}

/* dlopen()s compiled code and wraps it. */
static int open_code(const pw_engine_config *cfg, const char *name, const char *so_path,
                     const pw_host_func *funcs, size_t nfuncs, pw_wmod **out, char *err,
                     size_t errlen) {
    void *dl = dlopen(so_path, RTLD_NOW | RTLD_LOCAL);
    if (!dl) {
        pw_errf(err, errlen, "module \"%s\": cannot load compiled code: %s", name, dlerror());
        return -2;
    }
    const pw_glue_descriptor *desc = dlsym(dl, PW_GLUE_SYMBOL);
    if (!desc || desc->version != PW_GLUE_VERSION) {
        pw_errf(err, errlen,
                "module \"%s\": compiled code is stale or foreign (no %s "
                "version %d)",
                name, PW_GLUE_SYMBOL, PW_GLUE_VERSION);
        dlclose(dl);
        return -2;
    }
    pw_wmod *m = calloc(1, sizeof *m);
    if (m)
        m->fns = calloc(nfuncs + 1, sizeof *m->fns);
    if (!m || !m->fns) {
        pw_errf(err, errlen, "out of memory");
        dlclose(dl);
        free(m);
        return -1;
    }
    for (size_t i = 0; i < nfuncs; i++)
        m->fns[i] = funcs[i].fn;
    m->nfns = nfuncs;
    struct link_map *lm = NULL;
    if (dlinfo(dl, RTLD_DI_LINKMAP, &lm) == 0 && lm)
        pw_rt_add_code((uintptr_t)lm->l_addr);
    m->dl = dl;
    m->desc = desc;
    m->max_pages = cfg->max_pages;
    m->max_call_ms = cfg->max_call_ms;
    desc->init(&pw_rt_ops);
    *out = m;
    return 0;
}

void pw_wmod_set_limits(pw_wmod *m, uint32_t max_pages, uint32_t max_call_ms) {
    m->max_pages = max_pages;
    m->max_call_ms = max_call_ms;
}

void pw_wmod_set_import(pw_wmod *m, size_t index, void (*fn)(void)) {
    if (index < m->nfns)
        m->fns[index] = fn;
}

/* ------------------------------------------------------ the trusted cache */

/* Who may own native code this process loads: root or this process's
 * user, and nobody else may write to it. 0, or -1 with why in err. */
static int trusted_stat(const struct stat *st, const char *path, char *err, size_t errlen) {
    if (st->st_uid != 0 && st->st_uid != geteuid()) {
        pw_errf(err, errlen,
                "%s is owned by uid %u (not root or this "
                "process's user)",
                path, (unsigned)st->st_uid);
        return -1;
    }
    if (st->st_mode & (S_IWGRP | S_IWOTH)) {
        pw_errf(err, errlen, "%s is writable by %s (mode %04o)", path,
                st->st_mode & S_IWOTH ? "others" : "its group", (unsigned)(st->st_mode & 07777));
        return -1;
    }
    return 0;
}

/* The cache directory and each directory above it must be trusted (a
 * sticky one, like /tmp, may be writable by others: nobody else can
 * rename what is ours in it). */
static int trusted_dir(const char *dir, char *err, size_t errlen) {
    char *abs = realpath(dir, NULL);
    if (!abs) {
        pw_errf(err, errlen, "cache directory %s: %s", dir, strerror(errno));
        return -1;
    }
    int rc = 0, first = 1;
    for (;;) {
        struct stat st;
        if (stat(abs, &st) != 0) {
            pw_errf(err, errlen, "%s: %s", abs, strerror(errno));
            rc = -1;
            break;
        }
        if (!S_ISDIR(st.st_mode)) {
            pw_errf(err, errlen, "%s is not a directory", abs);
            rc = -1;
            break;
        }
        if (!(!first && (st.st_mode & S_ISVTX)) && trusted_stat(&st, abs, err, errlen) != 0) {
            rc = -1;
            break;
        }
        if (strcmp(abs, "/") == 0)
            break;
        char *slash = strrchr(abs, '/');
        if (slash == abs)
            slash[1] = 0; /* "/x" -> "/" */
        else
            *slash = 0;
        first = 0;
    }
    free(abs);
    return rc;
}

static void sha256_hex(const uint8_t *b, size_t n, char hex[65]) {
    unsigned char md[32];
    unsigned int len = 0;
    EVP_Digest(b, n, md, &len, EVP_sha256(), NULL);
    for (int i = 0; i < 32; i++)
        sprintf(hex + 2 * i, "%02x", md[i]);
    hex[64] = 0;
}

/* Reads a whole trusted regular file opened without following links.
 * Returns the open descriptor (the caller closes it) with the bytes in
 * *buf (malloc'ed), or -1 with why in err; errno ENOENT when missing. */
static int read_trusted(const char *path, size_t max, uint8_t **buf, size_t *len, char *err,
                        size_t errlen) {
    int fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK);
    if (fd < 0) {
        int e = errno;
        pw_errf(err, errlen, "%s: %s", path, strerror(e));
        errno = e;
        return -1;
    }
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode) || (uint64_t)st.st_size > max) {
        pw_errf(err, errlen, "%s is not a regular file of at most %zu bytes", path, max);
        close(fd);
        errno = EINVAL;
        return -1;
    }
    if (trusted_stat(&st, path, err, errlen) != 0) {
        close(fd);
        errno = EPERM;
        return -1;
    }
    size_t n = (size_t)st.st_size, off = 0;
    uint8_t *b = malloc(n ? n : 1);
    while (b && off < n) {
        ssize_t r = pread(fd, b + off, n - off, (off_t)off);
        if (r <= 0)
            break;
        off += (size_t)r;
    }
    if (!b || off != n) {
        pw_errf(err, errlen, "%s: cannot read", path);
        free(b);
        close(fd);
        errno = EIO;
        return -1;
    }
    *buf = b;
    *len = n;
    return fd;
}

/* Reads a cache entry if it can be trusted: <key>.so whose SHA-256 equals
 * the one in <key>.sha256, both trusted files. 0 with the object's bytes
 * in *code (malloc'ed), or -1: missing (errno ENOENT) or refused (why in
 * err). */
static int read_entry(const char *so_path, const char *sum_path, uint8_t **code, size_t *code_len,
                      char *err, size_t errlen) {
    uint8_t *sum;
    size_t sum_len;
    int fd = read_trusted(so_path, (size_t)1 << 31, code, code_len, err, errlen);
    if (fd < 0)
        return -1;
    close(fd);
    int sfd = read_trusted(sum_path, 4096, &sum, &sum_len, err, errlen);
    if (sfd < 0) {
        if (errno == ENOENT)
            pw_errf(err, errlen, "%s has no recorded digest", so_path);
        free(*code);
        errno = EPERM;
        return -1;
    }
    close(sfd);
    char hex[65];
    sha256_hex(*code, *code_len, hex);
    int ok = sum_len >= 64 && memcmp(sum, hex, 64) == 0;
    free(sum);
    if (!ok) {
        pw_errf(err, errlen, "%s does not match its recorded SHA-256", so_path);
        free(*code);
        errno = EPERM;
        return -1;
    }
    return 0;
}

/* Records the SHA-256 of a freshly compiled object at sum_path. */
static int record_digest(const char *so_path, const char *sum_path) {
    uint8_t *code;
    size_t len;
    char e[256], hex[66], tmp[4300];
    int fd = read_trusted(so_path, (size_t)1 << 31, &code, &len, e, sizeof e);
    if (fd < 0)
        return -1;
    close(fd);
    sha256_hex(code, len, hex);
    free(code);
    hex[64] = '\n';
    snprintf(tmp, sizeof tmp, "%s.tmp", sum_path);
    int rc = write_file(tmp, (const uint8_t *)hex, 65);
    if (rc == 0)
        rc = rename(tmp, sum_path);
    if (rc != 0)
        unlink(tmp);
    return rc;
}

static void warn(const pw_engine_config *cfg, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static void warn(const pw_engine_config *cfg, const char *fmt, ...) {
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (cfg->warn)
        cfg->warn(cfg->warn_data, msg);
    else
        fprintf(stderr, "pwasm: warning: %s\n", msg);
}

/* Objects loaded from bytes (precompiled artifacts; compiles without a
 * cache), by the SHA-256 of their bytes. Each is loaded from an anonymous
 * file (memfd) written from bytes already checked, so the code that runs is
 * the code that was verified; the file stays open for the life of the
 * process (objects are never unloaded), which keeps its /proc/self/fd name
 * unique: dlopen() returns the object already loaded under a name, so a
 * name must never be reused for other bytes. */
typedef struct pw_loaded {
    char sha[65];
    int fd;
    struct pw_loaded *next;
} pw_loaded;
static pw_loaded *pw_loaded_list;

static int load_bytes(const pw_engine_config *cfg, const char *name, const uint8_t *code,
                      size_t code_len, const pw_host_func *funcs, size_t nfuncs, pw_wmod **out,
                      char *err, size_t errlen) {
    char hex[65];
    sha256_hex(code, code_len, hex);
    pw_loaded *l;
    for (l = pw_loaded_list; l; l = l->next)
        if (strcmp(l->sha, hex) == 0)
            break;
    if (!l) {
        l = calloc(1, sizeof *l);
        if (!l) {
            pw_errf(err, errlen, "out of memory");
            return -1;
        }
        l->fd = memfd_create("pwasm-plugin", MFD_CLOEXEC);
        if (l->fd < 0) {
            pw_errf(err, errlen, "memfd_create: %s", strerror(errno));
            free(l);
            return -1;
        }
        size_t off = 0;
        while (off < code_len) {
            ssize_t w = write(l->fd, code + off, code_len - off);
            if (w <= 0) {
                pw_errf(err, errlen, "cannot write compiled code: %s", strerror(errno));
                close(l->fd);
                free(l);
                return -1;
            }
            off += (size_t)w;
        }
        memcpy(l->sha, hex, sizeof hex);
        l->next = pw_loaded_list;
        pw_loaded_list = l;
    }
    char path[64];
    snprintf(path, sizeof path, "/proc/self/fd/%d", l->fd);
    return open_code(cfg, name, path, funcs, nfuncs, out, err, errlen);
}

int pw_wmod_load(const pw_engine_config *cfg, const char *name, const uint8_t *bytes, size_t len,
                 const pw_wasm_info *info, const pw_host_func *funcs, size_t nfuncs, pw_wmod **out,
                 char *err, size_t errlen) {
    int *map, rc;
    if (link_map(name, info, funcs, nfuncs, &map, err, errlen) != 0)
        return -1;
    char key[65], so_path[4200], sum_path[4200], why[512];
    cache_key(cfg, bytes, len, funcs, nfuncs, key);
    if (cfg->cache_dir && *cfg->cache_dir) {
        if (mkdir_p(cfg->cache_dir) != 0) {
            pw_errf(err, errlen, "cannot create cache directory %s: %s", cfg->cache_dir,
                    strerror(errno));
            free(map);
            return -1;
        }
        if (trusted_dir(cfg->cache_dir, why, sizeof why) != 0) {
            pw_errf(err, errlen, "refusing the compile cache %s: %s", cfg->cache_dir, why);
            free(map);
            return -1;
        }
        snprintf(so_path, sizeof so_path, "%s/%s.so", cfg->cache_dir, key);
        snprintf(sum_path, sizeof sum_path, "%s/%s.sha256", cfg->cache_dir, key);
        uint8_t *code;
        size_t code_len;
        rc = read_entry(so_path, sum_path, &code, &code_len, why, sizeof why);
        if (rc != 0 && errno != ENOENT)
            warn(cfg,
                 "module \"%s\": compile cache entry refused (%s); "
                 "compiling it again",
                 name, why);
        if (rc != 0) {
            rc =
                compile_to(cfg, name, bytes, len, info, map, cfg->cache_dir, so_path, err, errlen);
            if (rc == 0 && record_digest(so_path, sum_path) != 0) {
                pw_errf(err, errlen, "cannot record the digest of %s: %s", so_path,
                        strerror(errno));
                rc = -1;
            }
            if (rc == 0 && read_entry(so_path, sum_path, &code, &code_len, err, errlen) != 0)
                rc = -1;
        }
        free(map);
        if (rc != 0)
            return rc;
        free(code);
        /* By its path, so debuggers and profilers find its symbols. Only a
         * user already trusted (root, or this process's) could change the
         * file since it was checked; its name is its content's key, so
         * dlopen's reuse of an object loaded under the same name is right. */
        return open_code(cfg, name, so_path, funcs, nfuncs, out, err, errlen);
    }
    /* No cache: compile in a private temporary directory, load from it,
     * remove it (an opened object stays mapped). */
    char dir[4096];
    rc = compile_in_tmp(cfg, name, bytes, len, info, map, NULL, dir, sizeof dir, err, errlen);
    free(map);
    if (rc != 0)
        return rc;
    snprintf(so_path, sizeof so_path, "%s/plug.so", dir);
    uint8_t *code;
    size_t code_len;
    int fd = read_trusted(so_path, (size_t)1 << 31, &code, &code_len, err, errlen);
    rm_tree(dir);
    if (fd < 0)
        return -2;
    close(fd);
    rc = load_bytes(cfg, name, code, code_len, funcs, nfuncs, out, err, errlen);
    free(code);
    return rc;
}

int pw_wmod_compile_to(const pw_engine_config *cfg, const char *name, const uint8_t *bytes,
                       size_t len, const pw_wasm_info *info, const pw_host_func *funcs,
                       size_t nfuncs, const char *so_path, char *err, size_t errlen) {
    int *map;
    if (link_map(name, info, funcs, nfuncs, &map, err, errlen) != 0)
        return -1;
    int rc = compile_to(cfg, name, bytes, len, info, map, NULL, so_path, err, errlen);
    free(map);
    return rc;
}

int pw_wmod_load_code(const pw_engine_config *cfg, const char *name, const pw_wasm_info *info,
                      const pw_host_func *funcs, size_t nfuncs, const uint8_t *code,
                      size_t code_len, pw_wmod **out, char *err, size_t errlen) {
    int *map;
    if (link_map(name, info, funcs, nfuncs, &map, err, errlen) != 0)
        return -1;
    free(map);
    return load_bytes(cfg, name, code, code_len, funcs, nfuncs, out, err, errlen);
}

void pw_engine_table_hash(const pw_host_func *funcs, size_t nfuncs, unsigned char out[32]) {
    unsigned int len = 0;
    EVP_MD_CTX *c = EVP_MD_CTX_new();
    EVP_DigestInit_ex(c, EVP_sha256(), NULL);
    char head[64];
    int hl = snprintf(head, sizeof head, "pwasm-glue-%d", PW_GLUE_VERSION);
    EVP_DigestUpdate(c, head, (size_t)hl + 1);
    for (size_t i = 0; i < nfuncs; i++) {
        EVP_DigestUpdate(c, funcs[i].module, strlen(funcs[i].module) + 1);
        EVP_DigestUpdate(c, funcs[i].name, strlen(funcs[i].name) + 1);
        EVP_DigestUpdate(c, funcs[i].sig, strlen(funcs[i].sig) + 1);
    }
    EVP_DigestFinal_ex(c, out, &len);
    EVP_MD_CTX_free(c);
}

void pw_wmod_free(pw_wmod *m) {
    if (!m)
        return;
    /* The object stays mapped: function pointers into it may still be held
     * by instances being torn down; dlclose would gain little. */
    free(m->fns);
    free(m);
}

int pw_wmod_func(const pw_wmod *m, const char *name, const char *sig, pw_wfunc *out) {
    const pw_glue_descriptor *d = m->desc;
    for (uint32_t i = 0; i < d->nexports; i++) {
        const pw_glue_export *e = &d->exports[i];
        if (strcmp(e->name, name) != 0)
            continue;
        if (sig && strcmp(e->sig, sig) != 0)
            return -1;
        const char *colon = strchr(e->sig, ':');
        for (const char *c = e->sig; *c; c++)
            if (*c != 'i' && *c != ':')
                return -1;
        if (!colon || strlen(colon + 1) > 1 || colon - e->sig > 6)
            return -1;
        out->fn = e->fn;
        out->nparams = (uint8_t)(colon - e->sig);
        out->nresults = (uint8_t)strlen(colon + 1);
        return 0;
    }
    return -1;
}

/* ------------------------------------------------------------- instances */

static void do_instantiate(void *arg) {
    pw_winst *w = arg;
    w->m->desc->instantiate(w->instance, &w->imports);
    w->instantiated = 1;
}

int pw_winst_new(pw_wmod *m, void *ctx, pw_trace_fn trace, pw_winst **out, pw_trap *trap) {
    pw_winst *w = calloc(1, sizeof *w + m->desc->instance_size);
    if (!w) {
        trap->kind = PW_TRAP_OUT_OF_MEMORY;
        return -1;
    }
    w->m = m;
    w->imports.ctx = ctx;
    w->imports.fns = (void (*const *)(void))m->fns;
    w->imports.trace = trace;
    pw_rt_set_max_pages(m->max_pages);
    if (pw_rt_invoke(do_instantiate, w, m->max_call_ms, trap) != 0) {
        /* Partially initialised: free only what certainly exists. */
        wasm_rt_memory_t *mem = m->desc->memory(w->instance);
        if (mem && mem->data)
            pw_rt_ops.free_memory(mem);
        free(w);
        return -1;
    }
    w->mem = m->desc->memory(w->instance);
    *out = w;
    return 0;
}

void pw_winst_free(pw_winst *w) {
    if (!w)
        return;
    if (w->instantiated)
        w->m->desc->free(w->instance);
    free(w);
}

uint8_t *pw_winst_mem(const pw_winst *w, uint64_t *size) {
    *size = w->mem->size;
    return w->mem->data;
}

int pw_winst_call(pw_winst *w, const pw_wfunc *f, const uint32_t *args, uint32_t *ret,
                  pw_trap *trap) {
    return pw_rt_call(w->instance, f, args, w->m->max_call_ms, ret, trap);
}

int pw_engine_write_glue(const char *path, const char *name, const pw_wasm_info *info,
                         const pw_host_func *funcs, size_t nfuncs, char *err, size_t errlen) {
    int *map;
    if (link_map(name, info, funcs, nfuncs, &map, err, errlen) != 0)
        return -1;
    int rc = write_glue(path, info, map);
    if (rc != 0)
        pw_errf(err, errlen, "cannot write %s: %s", path, strerror(errno));
    free(map);
    return rc;
}
