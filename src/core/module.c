/*
 * module.c -- pw_runtime and pw_module: reading a plugin, checking it is a
 * Proxy-Wasm module this host can run (REFERENCE.md §1.2, §2, §13), and
 * compiling it through the engine.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>

#include "core/core.h"

static char *dup_or_null(const char *s)
{
    return s ? strdup(s) : NULL;
}

static const char *env_or(const char *v, const char *env, const char *def)
{
    if (v && *v)
        return v;
    const char *e = getenv(env);
    return e && *e ? e : def;
}

int pw_runtime_new(const pw_runtime_config *cfg, pw_runtime **out, char *err,
                   size_t errlen)
{
    pw_runtime_config none = {0};
    if (!cfg)
        cfg = &none;
    if (pw_engine_init(err, errlen) != 0)
        return PW_EINVAL;
    pw_runtime *rt = calloc(1, sizeof *rt);
    if (!rt) {
        snprintf(err, errlen, "out of memory");
        return PW_ENOMEM;
    }
    const char *cache = cfg->cache_dir ? cfg->cache_dir : getenv("PWASM_CACHE_DIR");
    rt->cache_dir = dup_or_null(cache && *cache ? cache : NULL);
    rt->cc = strdup(env_or(cfg->cc, "PWASM_CC", "cc"));
    rt->cflags = strdup(env_or(cfg->cflags, "PWASM_CFLAGS", "-O2"));
    uint64_t max = cfg->max_memory_bytes ? cfg->max_memory_bytes : (1ull << 30);
    uint64_t pages = max / 65536;
    rt->ecfg.cache_dir = rt->cache_dir;
    rt->ecfg.cc = rt->cc;
    rt->ecfg.cflags = rt->cflags;
    rt->ecfg.max_pages = (uint32_t)(pages > 65535 ? 65535 : pages ? pages : 1);
    *out = rt;
    return PW_OK;
}

void pw_runtime_free(pw_runtime *rt)
{
    if (!rt)
        return;
    free(rt->cache_dir);
    free(rt->cc);
    free(rt->cflags);
    free(rt);
}

/* Callback exports and the signatures this host calls them with. */
static const struct {
    enum pw_cb cb;
    const char *name;
    const char *sig;     /* for 0.2.x */
    const char *sig_010; /* for 0.1.0 when different */
} callbacks[] = {
    {PW_CB_ON_CONTEXT_CREATE, "proxy_on_context_create", "ii:", NULL},
    {PW_CB_ON_VM_START, "proxy_on_vm_start", "ii:i", NULL},
    {PW_CB_ON_CONFIGURE, "proxy_on_configure", "ii:i", NULL},
    {PW_CB_ON_REQUEST_HEADERS, "proxy_on_request_headers", "iii:i", "ii:i"},
    {PW_CB_ON_RESPONSE_HEADERS, "proxy_on_response_headers", "iii:i", "ii:i"},
    {PW_CB_ON_REQUEST_BODY, "proxy_on_request_body", "iii:i", NULL},
    {PW_CB_ON_RESPONSE_BODY, "proxy_on_response_body", "iii:i", NULL},
    {PW_CB_ON_REQUEST_TRAILERS, "proxy_on_request_trailers", "ii:i", NULL},
    {PW_CB_ON_RESPONSE_TRAILERS, "proxy_on_response_trailers", "ii:i", NULL},
    {PW_CB_ON_LOG, "proxy_on_log", "i:", NULL},
    {PW_CB_ON_DONE, "proxy_on_done", "i:i", NULL},
    {PW_CB_ON_DELETE, "proxy_on_delete", "i:", NULL},
    {PW_CB_INITIALIZE, "_initialize", ":", NULL},
    {PW_CB_START, "_start", ":", NULL},
    {PW_CB_MAIN, "main", "ii:i", NULL},
    {PW_CB_MAIN_VOID, "__main_void", ":i", NULL},
};

/* Exports present in SDK builds that this version does not call yet; their
 * signatures are still checked so a malformed module fails at load. */
static const struct {
    const char *name;
    const char *sig;
} other_callbacks[] = {
    {"proxy_validate_configuration", "ii:i"},
    {"proxy_on_tick", "i:"},
    {"proxy_on_queue_ready", "ii:"},
    {"proxy_on_foreign_function", "iii:"},
    {"proxy_on_new_connection", "i:i"},
    {"proxy_on_downstream_data", "iii:i"},
    {"proxy_on_upstream_data", "iii:i"},
    {"proxy_on_downstream_connection_close", "ii:"},
    {"proxy_on_upstream_connection_close", "ii:"},
    {"proxy_on_http_call_response", "iiiii:"},
    {"proxy_on_grpc_receive_initial_metadata", "iii:"},
    {"proxy_on_grpc_receive", "iii:"},
    {"proxy_on_grpc_receive_trailing_metadata", "iii:"},
    {"proxy_on_grpc_close", "iii:"},
};

static int check_sig(const pw_wasm_info *info, const char *name,
                     const char *want, const char *mname, char *err,
                     size_t errlen)
{
    const pw_wasm_export *e = pw_wasm_find_export(info, name, PW_EXTERN_FUNC);
    if (!e || strcmp(e->sig, want) == 0)
        return 0;
    char a[128], b[128];
    snprintf(err, errlen,
             "module \"%s\" exports %s with signature %s, expected %s", mname,
             name, pw_sig_pretty(e->sig, a, sizeof a),
             pw_sig_pretty(want, b, sizeof b));
    return -1;
}

int pw_module_load(pw_runtime *rt, const char *name, const uint8_t *bytes,
                   size_t len, pw_module **out, char *err, size_t errlen)
{
    pw_wasm_info info;
    char perr[256];
    if (pw_wasm_parse(bytes, len, &info, perr, sizeof perr) != 0) {
        snprintf(err, errlen, "module \"%s\" refused: %s", name, perr);
        return PW_ELOAD;
    }
    int abi = 0;
    if (pw_wasm_find_export(&info, "proxy_abi_version_0_2_1", PW_EXTERN_FUNC))
        abi = PW_ABI_0_2_1;
    else if (pw_wasm_find_export(&info, "proxy_abi_version_0_2_0", PW_EXTERN_FUNC))
        abi = PW_ABI_0_2_0;
    else if (pw_wasm_find_export(&info, "proxy_abi_version_0_1_0", PW_EXTERN_FUNC))
        abi = PW_ABI_0_1_0;
    int rc = PW_ELOAD;
    if (!abi) {
        snprintf(err, errlen,
                 "module \"%s\" refused: no Proxy-Wasm ABI version marker "
                 "(exports none of proxy_abi_version_0_1_0, _0_2_0, _0_2_1)",
                 name);
        goto done;
    }
    for (size_t i = 0; i < sizeof callbacks / sizeof *callbacks; i++) {
        const char *want = abi == PW_ABI_0_1_0 && callbacks[i].sig_010
                               ? callbacks[i].sig_010
                               : callbacks[i].sig;
        if (check_sig(&info, callbacks[i].name, want, name, err, errlen))
            goto done;
    }
    for (size_t i = 0; i < sizeof other_callbacks / sizeof *other_callbacks; i++)
        if (check_sig(&info, other_callbacks[i].name, other_callbacks[i].sig,
                      name, err, errlen))
            goto done;
    const char *alloc = NULL;
    if (pw_wasm_find_export(&info, "proxy_on_memory_allocate", PW_EXTERN_FUNC))
        alloc = "proxy_on_memory_allocate"; /* preferred, §1.4 */
    else if (pw_wasm_find_export(&info, "malloc", PW_EXTERN_FUNC))
        alloc = "malloc";
    if (!alloc) {
        snprintf(err, errlen,
                 "module \"%s\" refused: exports no allocator "
                 "(proxy_on_memory_allocate or malloc)",
                 name);
        goto done;
    }
    if (check_sig(&info, alloc, "i:i", name, err, errlen))
        goto done;

    size_t nfuncs;
    const pw_host_func *funcs = pw_core_host_funcs(&nfuncs);
    pw_module *m = calloc(1, sizeof *m);
    if (!m || !(m->name = strdup(name))) {
        free(m);
        snprintf(err, errlen, "out of memory");
        rc = PW_ENOMEM;
        goto done;
    }
    int erc = pw_wmod_load(&rt->ecfg, name, bytes, len, &info, funcs, nfuncs,
                           &m->wmod, err, errlen);
    if (erc != 0) {
        free(m->name);
        free(m);
        rc = erc == -2 ? PW_ECOMPILE : PW_ELOAD;
        goto done;
    }
    m->rt = rt;
    m->abi = abi;
    for (size_t i = 0; i < sizeof callbacks / sizeof *callbacks; i++) {
        enum pw_cb cb = callbacks[i].cb;
        m->has_cb[cb] =
            pw_wmod_func(m->wmod, callbacks[i].name, NULL, &m->cb[cb]) == 0;
    }
    m->has_cb[PW_CB_MALLOC] =
        pw_wmod_func(m->wmod, alloc, "i:i", &m->cb[PW_CB_MALLOC]) == 0;
    *out = m;
    rc = PW_OK;
done:
    pw_wasm_info_free(&info);
    return rc;
}

int pw_module_load_file(pw_runtime *rt, const char *name, const char *path,
                        pw_module **out, char *err, size_t errlen)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        snprintf(err, errlen, "module \"%s\": cannot open %s: %s", name, path,
                 strerror(errno));
        return PW_EIO;
    }
    uint8_t *buf = NULL;
    size_t len = 0, cap = 0;
    for (;;) {
        if (len == cap) {
            cap = cap ? cap * 2 : 65536;
            uint8_t *b = realloc(buf, cap);
            if (!b) {
                free(buf);
                fclose(f);
                snprintf(err, errlen, "out of memory");
                return PW_ENOMEM;
            }
            buf = b;
        }
        size_t r = fread(buf + len, 1, cap - len, f);
        len += r;
        if (r == 0)
            break;
    }
    int bad = ferror(f);
    fclose(f);
    if (bad) {
        free(buf);
        snprintf(err, errlen, "module \"%s\": cannot read %s", name, path);
        return PW_EIO;
    }
    int rc = pw_module_load(rt, name, buf, len, out, err, errlen);
    free(buf);
    return rc;
}

void pw_module_free(pw_module *m)
{
    if (!m)
        return;
    pw_wmod_free(m->wmod);
    free(m->name);
    free(m);
}

const char *pw_module_name(const pw_module *m)
{
    return m->name;
}

const char *pw_module_abi_version(const pw_module *m)
{
    switch (m->abi) {
    case PW_ABI_0_1_0: return "0.1.0";
    case PW_ABI_0_2_0: return "0.2.0";
    case PW_ABI_0_2_1: return "0.2.1";
    }
    return "unknown";
}
