/*
 * module_info.c -- reading a module without compiling it: whether it is a
 * Proxy-Wasm module this host can call (the check pw_module_load makes),
 * and the public reader behind `pwasm inspect` (pw_module_info_read), which
 * also judges each import against the registry. Names come from
 * callbacks.def and hostcalls.def.
 */
#include <stdio.h>
#include <stdlib.h>

#include "core/core.h"

_Static_assert((int)PW_KIND_FUNC == (int)PW_EXTERN_FUNC &&
                   (int)PW_KIND_TABLE == (int)PW_EXTERN_TABLE &&
                   (int)PW_KIND_MEMORY == (int)PW_EXTERN_MEMORY &&
                   (int)PW_KIND_GLOBAL == (int)PW_EXTERN_GLOBAL &&
                   (int)PW_KIND_TAG == (int)PW_EXTERN_TAG,
               "public kinds are the engine's");

/* ------------------------------------------------------ artifact format */

static uint64_t get_u64(const uint8_t *p) {
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--)
        v = v << 8 | p[i];
    return v;
}

int pw_artifact_wasm(const uint8_t *bytes, size_t len, const uint8_t **wasm, size_t *wasm_len) {
    if (len < 8 || memcmp(bytes, PW_AOT_MAGIC, 8) != 0)
        return 0;
    if (len < PW_AOT_HEADER)
        return -1;
    uint64_t wlen = get_u64(bytes + PW_AOT_WASM_LEN);
    if (wlen > len - PW_AOT_HEADER)
        return -1;
    *wasm = bytes + PW_AOT_HEADER;
    *wasm_len = (size_t)wlen;
    return 1;
}

/* ----------------------------------------------- the Proxy-Wasm checks */

static int has_func(const pw_wasm_info *info, const char *name) {
    return pw_wasm_find_export(info, name, PW_EXTERN_FUNC) != NULL;
}

int pw_abi_of(const pw_wasm_info *info) {
#define PW_ABI_MARKER(id, export, version)                                                        \
    if (has_func(info, export))                                                                   \
        return PW_ABI_##id;
#include "core/callbacks.def"
    return PW_ABI_NONE;
}

const char *pw_abi_name(int abi) {
    switch (abi) {
#define PW_ABI_MARKER(id, export, version)                                                        \
    case PW_ABI_##id:                                                                             \
        return version;
#include "core/callbacks.def"
    }
    return NULL;
}

const char *pw_allocator_of(const pw_wasm_info *info) {
#define PW_ALLOCATOR(export)                                                                      \
    if (has_func(info, export))                                                                   \
        return export;
#include "core/callbacks.def"
    return NULL;
}

/* 0 if `name` is not exported or has signature `want` (or `other`, when
 * not NULL), else -1 with why. */
static int check_sig(const pw_wasm_info *info, const char *name, const char *want,
                     const char *other, char *why, size_t whylen) {
    const pw_wasm_export *e = pw_wasm_find_export(info, name, PW_EXTERN_FUNC);
    if (!e || strcmp(e->sig, want) == 0 || (other && !strcmp(e->sig, other)))
        return 0;
    char a[128], b[128], c[128];
    snprintf(why, whylen, "exports %s with signature %s, expected %s%s%s", name,
             pw_sig_pretty(e->sig, a, sizeof a), pw_sig_pretty(want, b, sizeof b),
             other ? " or " : "", other ? pw_sig_pretty(other, c, sizeof c) : "");
    return -1;
}

int pw_check_proxy_wasm(const pw_wasm_info *info, int *abi, const char **alloc, char *why,
                        size_t whylen) {
    /* "m1, m2, m3, " and "a1 or a2 or " from the lists. */
    static const char markers[] =
#define PW_ABI_MARKER(id, export, version) export ", "
#include "core/callbacks.def"
        "";
    static const char allocators[] =
#define PW_ALLOCATOR(export) export " or "
#include "core/callbacks.def"
        "";
    *abi = pw_abi_of(info);
    *alloc = NULL;
    if (*abi == PW_ABI_NONE) {
        snprintf(why, whylen, "no Proxy-Wasm ABI version marker (exports none of %.*s)",
                 (int)sizeof markers - 3, markers);
        return -1;
    }
    /* A callback of either version's signature, whatever the marker says
     * (the marker's first in a refusal): it is called with its arity. */
#define PW_CALLBACK(id, export, sig_0_1_0, sig_0_2_x)                                             \
    if (check_sig(info, export, *abi == PW_ABI_0_1_0 ? sig_0_1_0 : sig_0_2_x,                     \
                  strcmp(sig_0_1_0, sig_0_2_x) == 0 ? NULL                                        \
                  : *abi == PW_ABI_0_1_0            ? sig_0_2_x                                   \
                                                    : sig_0_1_0,                                             \
                  why, whylen))                                                                   \
        return -1;
#define PW_CALLBACK_LATER(export, sig)                                                            \
    if (check_sig(info, export, sig, NULL, why, whylen))                                          \
        return -1;
#include "core/callbacks.def"
    *alloc = pw_allocator_of(info);
    if (!*alloc) {
        snprintf(why, whylen, "exports no allocator (%.*s)", (int)sizeof allocators - 5,
                 allocators);
        return -1;
    }
    return check_sig(info, *alloc, "i:i", NULL, why, whylen);
}

/* --------------------------------------------------------------- reader */

static int export_role(const char *name, const char *alloc) {
    if (alloc && !strcmp(name, alloc))
        return PW_EXPORT_ALLOCATOR;
#define PW_ABI_MARKER(id, export, version)                                                        \
    if (!strcmp(name, export))                                                                    \
        return PW_EXPORT_ABI_MARKER;
#define PW_CALLBACK(id, export, sig_0_1_0, sig_0_2_x)                                             \
    if (!strcmp(name, export))                                                                    \
        return PW_EXPORT_CALLBACK;
#define PW_CALLBACK_LATER(export, sig)                                                            \
    if (!strcmp(name, export))                                                                    \
        return PW_EXPORT_CALLBACK_LATER;
#include "core/callbacks.def"
    return PW_EXPORT_OTHER;
}

static int is_wasi(const char *module) {
    return !strcmp(module, "wasi_snapshot_preview1") || !strcmp(module, "wasi_unstable");
}

static void judge_import(const pw_wasm_import *im, pw_import_info *out) {
    const pw_hostcall_info *h = pw_hostcall_find(im->module, im->name);
    int func = im->kind == PW_EXTERN_FUNC;
    *out = (pw_import_info){
        .module = im->module,
        .name = im->name,
        .kind = im->kind,
        .signature = func ? im->sig : "",
        .host = h,
        .area = h                     ? h->area
                : is_wasi(im->module) ? PW_AREA_WASI
                                      : PW_AREA_OTHER,
    };
    if (!h || !func)
        out->status = PW_IMPORT_MISSING;
    else if (strcmp(h->signature, im->sig) != 0)
        out->status = PW_IMPORT_WRONG_SIGNATURE;
    else
        out->status = h->implemented ? PW_IMPORT_OK : PW_IMPORT_UNIMPLEMENTED;
}

int pw_module_info_read(const uint8_t *bytes, size_t len, pw_module_info *out, char *err,
                        size_t errlen) {
    memset(out, 0, sizeof *out);
    const uint8_t *wasm = bytes;
    size_t wasm_len = len;
    int artifact = pw_artifact_wasm(bytes, len, &wasm, &wasm_len);
    if (artifact < 0) {
        pw_errf(err, errlen, "truncated pwasm compile artifact");
        return PW_ELOAD;
    }
    pw_wasm_info *wi = calloc(1, sizeof *wi);
    if (!wi) {
        pw_errf(err, errlen, "out of memory");
        return PW_ENOMEM;
    }
    char perr[256];
    if (pw_wasm_parse(wasm, wasm_len, wi, perr, sizeof perr) != 0) {
        pw_errf(err, errlen, "%s", perr);
        free(wi);
        return strstr(perr, "out of memory") ? PW_ENOMEM : PW_ELOAD;
    }
    out->internal_ = wi;
    out->imports = calloc(wi->nimports ? wi->nimports : 1, sizeof *out->imports);
    out->exports = calloc(wi->nexports ? wi->nexports : 1, sizeof *out->exports);
    if (!out->imports || !out->exports) {
        pw_module_info_free(out);
        pw_errf(err, errlen, "out of memory");
        return PW_ENOMEM;
    }
    out->artifact = artifact;
    int abi;
    const char *alloc;
    if (pw_check_proxy_wasm(wi, &abi, &alloc, out->problem, sizeof out->problem) == 0)
        out->problem[0] = 0;
    out->abi_version = pw_abi_name(pw_abi_of(wi));
    out->allocator = pw_allocator_of(wi);
    out->start = has_func(wi, "_initialize") ? "_initialize"
                 : has_func(wi, "_start")    ? "_start"
                                             : NULL;
    out->has_start_section = wi->has_start;
    out->has_memory = wi->has_memory;
    out->imports_memory = wi->imports_memory;
    out->memory_initial = wi->mem_initial;
    out->memory_max = wi->mem_max;
    out->nfunctions = wi->nfuncs;
    out->data_bytes = wi->data_bytes;
    out->nimports = wi->nimports;
    for (uint32_t i = 0; i < wi->nimports; i++) {
        pw_import_info *im = &out->imports[i];
        judge_import(&wi->imports[i], im);
        out->nmissing +=
            im->status == PW_IMPORT_MISSING || im->status == PW_IMPORT_WRONG_SIGNATURE;
        out->nunimplemented += im->status == PW_IMPORT_UNIMPLEMENTED;
    }
    out->nexports = wi->nexports;
    for (uint32_t i = 0; i < wi->nexports; i++) {
        const pw_wasm_export *e = &wi->exports[i];
        int func = e->kind == PW_EXTERN_FUNC;
        out->exports[i] = (pw_export_info){
            .name = e->name,
            .kind = e->kind,
            .signature = func ? e->sig : "",
            .role = func ? export_role(e->name, out->allocator) : PW_EXPORT_OTHER,
        };
    }
    return PW_OK;
}

void pw_module_info_free(pw_module_info *info) {
    if (!info)
        return;
    if (info->internal_) {
        pw_wasm_info_free(info->internal_);
        free(info->internal_);
    }
    free(info->imports);
    free(info->exports);
    memset(info, 0, sizeof *info);
}

const char *pw_signature_pretty(const char *signature, char *buf, size_t len) {
    return pw_sig_pretty(signature, buf, len);
}
