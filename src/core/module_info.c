/*
 * module_info.c -- reading a module without compiling it: whether it is a
 * Proxy-Wasm module this host can call (REFERENCE.md §1.2, §2, §13; the
 * check pw_module_load makes), and the artifact format of pwasm compile.
 * Names come from callbacks.def.
 */
#include <stdio.h>
#include <stdlib.h>

#include "core/core.h"

/* ------------------------------------------------------ artifact format */

static uint64_t get_u64(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--)
        v = v << 8 | p[i];
    return v;
}

int pw_artifact_wasm(const uint8_t *bytes, size_t len, const uint8_t **wasm,
                     size_t *wasm_len)
{
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

static int has_func(const pw_wasm_info *info, const char *name)
{
    return pw_wasm_find_export(info, name, PW_EXTERN_FUNC) != NULL;
}

int pw_abi_of(const pw_wasm_info *info)
{
#define PW_ABI_MARKER(id, export, version)                                 \
    if (has_func(info, export))                                            \
        return PW_ABI_##id;
#include "core/callbacks.def"
    return PW_ABI_NONE;
}

const char *pw_abi_name(int abi)
{
    switch (abi) {
#define PW_ABI_MARKER(id, export, version)                                 \
    case PW_ABI_##id:                                                      \
        return version;
#include "core/callbacks.def"
    }
    return NULL;
}

const char *pw_allocator_of(const pw_wasm_info *info)
{
#define PW_ALLOCATOR(export)                                               \
    if (has_func(info, export))                                            \
        return export;
#include "core/callbacks.def"
    return NULL;
}

/* 0 if `name` is not exported or has signature `want`, else -1 with why. */
static int check_sig(const pw_wasm_info *info, const char *name,
                     const char *want, char *why, size_t whylen)
{
    const pw_wasm_export *e = pw_wasm_find_export(info, name, PW_EXTERN_FUNC);
    if (!e || strcmp(e->sig, want) == 0)
        return 0;
    char a[128], b[128];
    snprintf(why, whylen, "exports %s with signature %s, expected %s", name,
             pw_sig_pretty(e->sig, a, sizeof a),
             pw_sig_pretty(want, b, sizeof b));
    return -1;
}

int pw_check_proxy_wasm(const pw_wasm_info *info, int *abi,
                        const char **alloc, char *why, size_t whylen)
{
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
        snprintf(why, whylen,
                 "no Proxy-Wasm ABI version marker (exports none of %.*s)",
                 (int)sizeof markers - 3, markers);
        return -1;
    }
#define PW_CALLBACK(id, export, sig_0_1_0, sig_0_2_x)                      \
    if (check_sig(info, export,                                            \
                  *abi == PW_ABI_0_1_0 ? sig_0_1_0 : sig_0_2_x, why,       \
                  whylen))                                                 \
        return -1;
#define PW_CALLBACK_LATER(export, sig)                                     \
    if (check_sig(info, export, sig, why, whylen))                         \
        return -1;
#include "core/callbacks.def"
    *alloc = pw_allocator_of(info);
    if (!*alloc) {
        snprintf(why, whylen, "exports no allocator (%.*s)",
                 (int)sizeof allocators - 5, allocators);
        return -1;
    }
    return check_sig(info, *alloc, "i:i", why, whylen);
}
