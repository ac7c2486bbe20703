/*
 * wasm_parse.c -- see wasm_parse.h. Binary format: WebAssembly Core
 * Specification 1.0/2.0, chapter 5 (sections 1 type, 2 import, 3 function,
 * 5 memory, 7 export, 8 start).
 */
#include "engine/wasm_parse.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct rd {
    const uint8_t *p, *end, *base;
    char *err;
    size_t errlen;
    int failed;
} rd;

static int fail(rd *r, const char *fmt, ...) {
    if (!r->failed) {
        char msg[256];
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(msg, sizeof msg, fmt, ap);
        va_end(ap);
        if (r->err && r->errlen)
            snprintf(r->err, r->errlen, "malformed Wasm at byte %zu: %s", (size_t)(r->p - r->base),
                     msg);
    }
    r->failed = 1;
    return -1;
}

static int u8(rd *r, uint8_t *v) {
    *v = 0;
    if (r->p >= r->end)
        return fail(r, "unexpected end (truncated module?)");
    *v = *r->p++;
    return 0;
}

static int leb_u32(rd *r, uint32_t *v) {
    uint64_t x = 0;
    *v = 0;
    for (int shift = 0; shift < 35; shift += 7) {
        uint8_t b;
        if (u8(r, &b))
            return -1;
        x |= (uint64_t)(b & 0x7f) << shift;
        if (!(b & 0x80)) {
            if (x > UINT32_MAX)
                return fail(r, "integer too large");
            *v = (uint32_t)x;
            return 0;
        }
    }
    return fail(r, "integer representation too long");
}

static int valtype(rd *r, char *c) {
    uint8_t t;
    if (u8(r, &t))
        return -1;
    switch (t) {
    case 0x7f:
        *c = 'i';
        return 0;
    case 0x7e:
        *c = 'I';
        return 0;
    case 0x7d:
        *c = 'f';
        return 0;
    case 0x7c:
        *c = 'F';
        return 0;
    case 0x7b:
        *c = 'v';
        return 0;
    case 0x70:
        *c = 'r';
        return 0;
    case 0x6f:
        *c = 'x';
        return 0;
    }
    return fail(r, "unknown value type 0x%02x", t);
}

/* Copies a name into the string arena. */
typedef struct arena {
    char *buf;
    size_t used, cap;
} arena;

static int name(rd *r, arena *a, size_t *off) {
    uint32_t n;
    if (leb_u32(r, &n))
        return -1;
    if (n > (size_t)(r->end - r->p))
        return fail(r, "name longer than the module");
    if (a->used + n + 1 > a->cap)
        return fail(r, "names exceed the module size");
    memcpy(a->buf + a->used, r->p, n);
    a->buf[a->used + n] = 0;
    *off = a->used;
    a->used += n + 1;
    r->p += n;
    return 0;
}

static int limits(rd *r, uint32_t *min, uint32_t *max) {
    uint8_t flags;
    if (u8(r, &flags) || leb_u32(r, min))
        return -1;
    *max = UINT32_MAX;
    if (flags & 1)
        return leb_u32(r, max);
    return 0;
}

static int tabletype(rd *r) {
    char c;
    uint32_t a, b;
    return valtype(r, &c) || limits(r, &a, &b) ? -1 : 0;
}

static int globaltype(rd *r) {
    char c;
    uint8_t mut;
    return valtype(r, &c) || u8(r, &mut) ? -1 : 0;
}

/* Reads a vector's length: each entry takes at least one byte, so more
 * entries than the section has bytes is malformed. */
static int vec_len(rd *s, uint32_t size, const char *what, uint32_t *n) {
    if (leb_u32(s, n))
        return -1;
    return *n > size ? fail(s, "too many %s", what) : 0;
}

/* A zeroed array of n entries for p (at least one); false when out of
 * memory. */
#define VEC_ALLOC(p, n) (((p) = calloc((n) ? (n) : 1, sizeof *(p))) != NULL)

int pw_wasm_parse(const uint8_t *bytes, size_t len, pw_wasm_info *out, char *err, size_t errlen) {
    rd r = {bytes, bytes + len, bytes, err, errlen, 0};
    char(*types)[PW_SIG_MAX] = NULL;
    uint32_t ntypes = 0, *functypes = NULL, nfunctypes = 0;
    /* Temporary import/export name offsets. */
    size_t *imp_mod = NULL, *imp_name = NULL, *exp_name = NULL;
    uint32_t *imp_type = NULL;
    arena a = {0};

    memset(out, 0, sizeof *out);
    if (len < 8 || memcmp(bytes, "\0asm", 4) != 0) {
        snprintf(err, errlen, "not a Wasm module (bad magic number)");
        return -1;
    }
    if (memcmp(bytes + 4, "\1\0\0\0", 4) != 0) {
        snprintf(err, errlen, "unsupported Wasm binary version (only version 1)");
        return -1;
    }
    r.p += 8;
    a.cap = len + 1;
    a.buf = malloc(a.cap);
    if (!a.buf) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    out->mem_max = UINT32_MAX;
    uint32_t nimported_funcs = 0, seen = 0;

    while (r.p < r.end && !r.failed) {
        uint8_t id;
        uint32_t size;
        if (u8(&r, &id) || leb_u32(&r, &size))
            break;
        if (size > (size_t)(r.end - r.p)) {
            fail(&r, "section %u larger than the module (truncated?)", id);
            break;
        }
        /* Known sections appear at most once (custom ones, id 0, may
         * repeat); a repeat would also overwrite what was read before. */
        if (id != 0 && id < 32) {
            if (seen & (1u << id)) {
                fail(&r, "section %u appears twice", id);
                break;
            }
            seen |= 1u << id;
        }
        const uint8_t *send = r.p + size;
        rd s = {r.p, send, bytes, err, errlen, 0};
        uint32_t n = 0;
        switch (id) {
        case 1: /* type */
            if (vec_len(&s, size, "types", &n))
                break;
            if (!VEC_ALLOC(types, n)) {
                fail(&s, "out of memory");
                break;
            }
            ntypes = n;
            for (uint32_t i = 0; i < n && !s.failed; i++) {
                uint8_t form;
                uint32_t np, nr;
                size_t k = 0;
                if (u8(&s, &form))
                    break;
                if (form != 0x60) {
                    fail(&s, "type %u is not a function type", i);
                    break;
                }
                if (leb_u32(&s, &np))
                    break;
                for (uint32_t j = 0; j < np && !s.failed; j++) {
                    char c;
                    if (valtype(&s, &c))
                        break;
                    if (k < PW_SIG_MAX - 2)
                        types[i][k++] = c;
                }
                if (s.failed || k >= PW_SIG_MAX - 2)
                    types[i][0] = '?';
                types[i][k++] = ':';
                if (leb_u32(&s, &nr))
                    break;
                for (uint32_t j = 0; j < nr && !s.failed; j++) {
                    char c;
                    if (valtype(&s, &c))
                        break;
                    if (k < PW_SIG_MAX - 1)
                        types[i][k++] = c;
                }
                types[i][k < PW_SIG_MAX ? k : PW_SIG_MAX - 1] = 0;
            }
            break;
        case 2: /* import */
            if (vec_len(&s, size, "imports", &n))
                break;
            if (!VEC_ALLOC(out->imports, n) || !VEC_ALLOC(imp_mod, n) || !VEC_ALLOC(imp_name, n) ||
                !VEC_ALLOC(imp_type, n)) {
                fail(&s, "out of memory");
                break;
            }
            out->nimports = n;
            for (uint32_t i = 0; i < n && !s.failed; i++) {
                uint8_t kind;
                if (name(&s, &a, &imp_mod[i]) || name(&s, &a, &imp_name[i]) || u8(&s, &kind))
                    break;
                out->imports[i].kind = kind;
                switch (kind) {
                case PW_EXTERN_FUNC:
                    if (leb_u32(&s, &imp_type[i]))
                        break;
                    if (imp_type[i] >= ntypes)
                        fail(&s, "import %u uses unknown type %u", i, imp_type[i]);
                    nimported_funcs++;
                    break;
                case PW_EXTERN_TABLE:
                    tabletype(&s);
                    break;
                case PW_EXTERN_MEMORY: {
                    uint32_t mn, mx;
                    if (limits(&s, &mn, &mx) == 0) {
                        out->imports_memory = 1;
                        out->mem_initial = mn;
                        out->mem_max = mx;
                    }
                    break;
                }
                case PW_EXTERN_GLOBAL:
                    globaltype(&s);
                    break;
                case PW_EXTERN_TAG: {
                    uint8_t attr;
                    uint32_t t;
                    if (!u8(&s, &attr))
                        leb_u32(&s, &t);
                    break;
                }
                default:
                    fail(&s, "import %u has unknown kind %u", i, kind);
                }
            }
            break;
        case 3: /* function */
            if (vec_len(&s, size, "functions", &n))
                break;
            if (!VEC_ALLOC(functypes, n)) {
                fail(&s, "out of memory");
                break;
            }
            nfunctypes = n;
            for (uint32_t i = 0; i < n && !s.failed; i++) {
                if (leb_u32(&s, &functypes[i]))
                    break;
                if (functypes[i] >= ntypes)
                    fail(&s, "function %u uses unknown type %u", i, functypes[i]);
            }
            out->nfuncs = n;
            break;
        case 5: /* memory */
            if (leb_u32(&s, &n))
                break;
            if (n >= 1) {
                out->has_memory = 1;
                limits(&s, &out->mem_initial, &out->mem_max);
            }
            break;
        case 7: /* export */
            if (vec_len(&s, size, "exports", &n))
                break;
            if (!VEC_ALLOC(out->exports, n) || !VEC_ALLOC(exp_name, n)) {
                fail(&s, "out of memory");
                break;
            }
            out->nexports = n;
            for (uint32_t i = 0; i < n && !s.failed; i++) {
                uint8_t kind;
                if (name(&s, &a, &exp_name[i]) || u8(&s, &kind) ||
                    leb_u32(&s, &out->exports[i].index))
                    break;
                out->exports[i].kind = kind;
            }
            break;
        case 8: /* start */
            out->has_start = 1;
            break;
        case 11: /* data */
            out->data_bytes = size;
            break;
        default:
            break;
        }
        if (s.failed) {
            r.failed = 1;
            break;
        }
        r.p = send;
    }
    if (r.failed)
        goto error;

    /* Resolve names and function signatures. */
    out->strings = a.buf;
    for (uint32_t i = 0; i < out->nimports; i++) {
        pw_wasm_import *im = &out->imports[i];
        im->module = a.buf + imp_mod[i];
        im->name = a.buf + imp_name[i];
        if (im->kind == PW_EXTERN_FUNC)
            memcpy(im->sig, types[imp_type[i]], PW_SIG_MAX);
    }
    for (uint32_t i = 0; i < out->nexports; i++) {
        pw_wasm_export *ex = &out->exports[i];
        ex->name = a.buf + exp_name[i];
        if (ex->kind != PW_EXTERN_FUNC)
            continue;
        if (ex->index < nimported_funcs) {
            /* re-export of an import: find the n-th function import */
            uint32_t k = 0;
            for (uint32_t j = 0; j < out->nimports; j++)
                if (out->imports[j].kind == PW_EXTERN_FUNC && k++ == ex->index)
                    memcpy(ex->sig, out->imports[j].sig, PW_SIG_MAX);
        } else if (ex->index - nimported_funcs < nfunctypes) {
            memcpy(ex->sig, types[functypes[ex->index - nimported_funcs]], PW_SIG_MAX);
        } else {
            snprintf(err, errlen, "malformed Wasm: export \"%s\" names unknown function %u",
                     ex->name, ex->index);
            goto error_noarena;
        }
    }
    free(types);
    free(functypes);
    free(imp_mod);
    free(imp_name);
    free(imp_type);
    free(exp_name);
    return 0;

error:
    out->strings = a.buf;
error_noarena:
    free(types);
    free(functypes);
    free(imp_mod);
    free(imp_name);
    free(imp_type);
    free(exp_name);
    pw_wasm_info_free(out);
    return -1;
}

void pw_wasm_info_free(pw_wasm_info *info) {
    free(info->imports);
    free(info->exports);
    free(info->strings);
    memset(info, 0, sizeof *info);
}

const pw_wasm_export *pw_wasm_find_export(const pw_wasm_info *info, const char *nm, int kind) {
    for (uint32_t i = 0; i < info->nexports; i++)
        if (info->exports[i].kind == kind && strcmp(info->exports[i].name, nm) == 0)
            return &info->exports[i];
    return NULL;
}

const char *pw_sig_pretty(const char *sig, char *buf, size_t len) {
    size_t o = 0;
    int first = 1, results = 0;
    const char *closing = "";
#define PUT(...)                                                                                  \
    o += (size_t)snprintf(buf + (o < len ? o : len), o < len ? len - o : 0, __VA_ARGS__)
    PUT("(");
    for (const char *c = sig; *c; c++) {
        if (*c == ':') {
            PUT(") -> ");
            results = 1;
            first = 1;
            if (c[1] == 0) {
                PUT("()");
            } else if (c[2] != 0) {
                PUT("(");
                closing = ")";
            }
            continue;
        }
        const char *t = *c == 'i'   ? "i32"
                        : *c == 'I' ? "i64"
                        : *c == 'f' ? "f32"
                        : *c == 'F' ? "f64"
                        : *c == 'v' ? "v128"
                        : *c == 'r' ? "funcref"
                        : *c == 'x' ? "externref"
                                    : "?";
        PUT("%s%s", first ? "" : ", ", t);
        first = 0;
    }
    if (!results)
        PUT(")");
    PUT("%s", closing);
#undef PUT
    return buf;
}
