/*
 * module.c -- pw_runtime and pw_module: reading a plugin, checking it is a
 * Proxy-Wasm module this host can run (module_info.c), and compiling it
 * through the engine.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/evp.h>

#include "core/core.h"

static char *dup_or_null(const char *s) {
    return s ? strdup(s) : NULL;
}

static const char *env_or(const char *v, const char *env, const char *def) {
    if (v && *v)
        return v;
    const char *e = getenv(env);
    return e && *e ? e : def;
}

/* A limit from the configuration: 0 is the default, the maximum of the
 * type is "none" (0 inside the engine). */
static uint64_t limit64(uint64_t v, uint64_t def) {
    return v == UINT64_MAX ? 0 : v ? v : def;
}

int pw_runtime_new(const pw_runtime_config *cfg, pw_runtime **out, char *err, size_t errlen) {
    pw_runtime_config none = {0};
    if (!cfg)
        cfg = &none;
    pw_runtime *rt = calloc(1, sizeof *rt);
    if (!rt) {
        snprintf(err, errlen, "out of memory");
        return PW_ENOMEM;
    }
    if (pw_runtime_attach(rt, err, errlen) != PW_OK) {
        free(rt);
        return PW_EINVAL;
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
    rt->ecfg.max_call_ms = cfg->max_call_ms == UINT32_MAX ? 0
                           : cfg->max_call_ms             ? cfg->max_call_ms
                                                          : 1000;
    rt->ecfg.compile_timeout_ms = cfg->compile_timeout_ms == UINT32_MAX ? 0
                                  : cfg->compile_timeout_ms             ? cfg->compile_timeout_ms
                                                                        : 120000;
    rt->ecfg.compile_max_memory = limit64(cfg->compile_max_memory, 4ull << 30);
    rt->ecfg.warn = cfg->warn;
    rt->ecfg.warn_data = cfg->warn_data;
    rt->max_module_bytes = limit64(cfg->max_module_bytes, 64ull << 20);
    rt->max_data_bytes = limit64(cfg->max_data_bytes, 16ull << 20);
    rt->max_functions = cfg->max_functions == UINT32_MAX ? 0
                        : cfg->max_functions             ? cfg->max_functions
                                                         : 50000;
    rt->limits = pw_limits_resolve(&cfg->limits);
    *out = rt;
    return PW_OK;
}

int pw_runtime_attach(pw_runtime *rt, char *err, size_t errlen) {
    if (rt->attached)
        return PW_OK;
    if (pw_engine_attach(err, errlen) != 0)
        return PW_EINVAL;
    rt->attached = 1;
    return PW_OK;
}

void pw_runtime_detach(pw_runtime *rt) {
    if (!rt || !rt->attached)
        return;
    rt->attached = 0;
    pw_engine_detach();
}

void pw_runtime_free(pw_runtime *rt) {
    if (!rt)
        return;
    pw_runtime_detach(rt);
    free(rt->cache_dir);
    free(rt->cc);
    free(rt->cflags);
    free(rt);
}

/* The Proxy-Wasm checks (pw_check_proxy_wasm), with the module's name. */
static int check_module(const pw_wasm_info *info, const char *name, int *abi, const char **alloc,
                        char *err, size_t errlen) {
    char why[PW_ERRLEN - 64];
    if (pw_check_proxy_wasm(info, abi, alloc, why, sizeof why) == 0)
        return 0;
    snprintf(err, errlen, "module \"%s\" refused: %s", name, why);
    return -1;
}

static uint64_t get_u64(const uint8_t *p) {
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--)
        v = v << 8 | p[i];
    return v;
}

int pw_module_has_callback(const pw_module *m, const char *export_name) {
#define PW_CALLBACK(id, export, sig_0_1_0, sig_0_2_x)                                             \
    if (strcmp(export, export_name) == 0)                                                         \
        return m->has_cb[PW_CB_##id];
#include "core/callbacks.def"
    return 0;
}

/* Refuses a module over the runtime's structural limits before anything
 * is compiled (wasm2c's time grows with the function count, the C
 * compiler's memory with the data section). */
static int check_limits(const pw_runtime *rt, const pw_wasm_info *info, const char *name,
                        char *err, size_t errlen) {
    if (rt->max_functions && info->nfuncs > rt->max_functions) {
        snprintf(err, errlen, "module \"%s\" refused: %u functions, over the limit of %u", name,
                 info->nfuncs, rt->max_functions);
        return -1;
    }
    if (rt->max_data_bytes && info->data_bytes > rt->max_data_bytes) {
        snprintf(err, errlen,
                 "module \"%s\" refused: a data section of %u bytes, over "
                 "the limit of %llu",
                 name, info->data_bytes, (unsigned long long)rt->max_data_bytes);
        return -1;
    }
    return 0;
}

/* m->imports: which host functions the module imports (for the
 * capability report of pw_module_restrict). */
static void mark_imports(pw_module *m, const pw_wasm_info *info, const pw_host_func *funcs,
                         size_t nfuncs) {
    m->imports = calloc(nfuncs ? nfuncs : 1, 1);
    if (!m->imports)
        return;
    for (uint32_t i = 0; i < info->nimports; i++)
        for (size_t h = 0; h < nfuncs; h++)
            if (info->imports[i].kind == PW_EXTERN_FUNC &&
                !strcmp(funcs[h].name, info->imports[i].name) &&
                !strcmp(funcs[h].module, info->imports[i].module))
                m->imports[h] = 1;
}

static int is_artifact(const uint8_t *bytes, size_t len) {
    return len >= 8 && memcmp(bytes, PW_AOT_MAGIC, 8) == 0;
}

/* Loads Wasm bytes, or an artifact when `artifact` is set (native code the
 * caller asked for explicitly). */
static int module_load(pw_runtime *rt, const char *name, const uint8_t *bytes, size_t len,
                       int artifact, pw_module **out, char *err, size_t errlen) {
    size_t nfuncs;
    const pw_host_func *funcs = pw_core_host_funcs(&nfuncs);
    const uint8_t *code = NULL;
    size_t code_len = 0;
    if (is_artifact(bytes, len) && !artifact) {
        snprintf(err, errlen,
                 "module \"%s\" refused: this is a pwasm compile artifact, "
                 "which holds native code; load it as precompiled, with its "
                 "SHA-256",
                 name);
        return PW_ELOAD;
    }
    if (artifact && !is_artifact(bytes, len)) {
        snprintf(err, errlen, "module \"%s\" refused: not a pwasm compile artifact", name);
        return PW_ELOAD;
    }
    if (artifact) {
        if (len < PW_AOT_HEADER) {
            snprintf(err, errlen, "module \"%s\" refused: truncated artifact", name);
            return PW_ELOAD;
        }
        unsigned char table[32];
        pw_engine_table_hash(funcs, nfuncs, table);
        uint64_t wlen = get_u64(bytes + PW_AOT_WASM_LEN);
        if (pw_get_u32(bytes + 8) != PW_AOT_VERSION ||
            memcmp(bytes + PW_AOT_TABLE_HASH, table, 32) != 0) {
            snprintf(err, errlen,
                     "module \"%s\" refused: compiled by another version of "
                     "pwasm (run pwasm compile again)",
                     name);
            return PW_ELOAD;
        }
        if (wlen > len - PW_AOT_HEADER) {
            snprintf(err, errlen, "module \"%s\" refused: truncated artifact", name);
            return PW_ELOAD;
        }
        code = bytes + PW_AOT_HEADER + wlen;
        code_len = len - PW_AOT_HEADER - (size_t)wlen;
        bytes += PW_AOT_HEADER;
        len = (size_t)wlen;
    }
    if (rt->max_module_bytes && len > rt->max_module_bytes) {
        snprintf(err, errlen, "module \"%s\" refused: %zu bytes, over the limit of %llu", name,
                 len, (unsigned long long)rt->max_module_bytes);
        return PW_ELOAD;
    }
    pw_wasm_info info;
    char perr[256];
    if (pw_wasm_parse(bytes, len, &info, perr, sizeof perr) != 0) {
        snprintf(err, errlen, "module \"%s\" refused: %s", name, perr);
        return PW_ELOAD;
    }
    int abi, rc = PW_ELOAD;
    const char *alloc;
    if (check_limits(rt, &info, name, err, errlen) != 0 ||
        check_module(&info, name, &abi, &alloc, err, errlen) != 0)
        goto done;
    pw_module *m = calloc(1, sizeof *m);
    if (!m || !(m->name = strdup(name))) {
        free(m);
        snprintf(err, errlen, "out of memory");
        rc = PW_ENOMEM;
        goto done;
    }
    int erc = code ? pw_wmod_load_code(&rt->ecfg, name, &info, funcs, nfuncs, code, code_len,
                                       &m->wmod, err, errlen)
                   : pw_wmod_load(&rt->ecfg, name, bytes, len, &info, funcs, nfuncs, &m->wmod, err,
                                  errlen);
    if (erc != 0) {
        free(m->name);
        free(m);
        rc = erc == -2 ? PW_ECOMPILE : PW_ELOAD;
        goto done;
    }
    m->rt = rt;
    m->limits = rt->limits;
    m->funcs = funcs;
    m->abi = abi;
    mark_imports(m, &info, funcs, nfuncs);
    /* Looked up without a signature (checked above): called with the
     * arity exported. */
#define PW_CALLBACK(id, export, sig_0_1_0, sig_0_2_x)                                             \
    m->has_cb[PW_CB_##id] = pw_wmod_func(m->wmod, export, NULL, &m->cb[PW_CB_##id]) == 0;
#include "core/callbacks.def"
    m->has_cb[PW_CB_MALLOC] = pw_wmod_func(m->wmod, alloc, "i:i", &m->cb[PW_CB_MALLOC]) == 0;
    *out = m;
    rc = PW_OK;
done:
    pw_wasm_info_free(&info);
    return rc;
}

int pw_module_load(pw_runtime *rt, const char *name, const uint8_t *bytes, size_t len,
                   pw_module **out, char *err, size_t errlen) {
    return module_load(rt, name, bytes, len, 0, out, err, errlen);
}

/* Reads a module file: a regular file only (a FIFO would block, a device
 * never end), opened without blocking, of at most `max` bytes (0: any). */
static int read_file(const char *name, const char *path, uint64_t max, uint8_t **out,
                     size_t *outlen, char *err, size_t errlen) {
    int fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0) {
        snprintf(err, errlen, "module \"%s\": cannot open %s: %s", name, path, strerror(errno));
        return PW_EIO;
    }
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        snprintf(err, errlen, "module \"%s\": %s is not a regular file", name, path);
        close(fd);
        return PW_EIO;
    }
    if (max && (uint64_t)st.st_size > max) {
        snprintf(err, errlen, "module \"%s\": %s is %llu bytes, over the limit of %llu", name,
                 path, (unsigned long long)st.st_size, (unsigned long long)max);
        close(fd);
        return PW_EIO;
    }
    /* The size may change while we read: never read past max + 1. */
    size_t cap = (size_t)st.st_size + 1, len = 0;
    uint8_t *buf = malloc(cap);
    if (!buf) {
        close(fd);
        snprintf(err, errlen, "out of memory");
        return PW_ENOMEM;
    }
    for (;;) {
        ssize_t r = read(fd, buf + len, cap - len);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0) {
            snprintf(err, errlen, "module \"%s\": cannot read %s: %s", name, path,
                     strerror(errno));
            free(buf);
            close(fd);
            return PW_EIO;
        }
        if (r == 0)
            break;
        len += (size_t)r;
        if (len == cap) {
            if (max && len > max) {
                snprintf(err, errlen,
                         "module \"%s\": %s grew over the limit of %llu "
                         "bytes while being read",
                         name, path, (unsigned long long)max);
                free(buf);
                close(fd);
                return PW_EIO;
            }
            uint8_t *b = realloc(buf, cap * 2);
            if (!b) {
                free(buf);
                close(fd);
                snprintf(err, errlen, "out of memory");
                return PW_ENOMEM;
            }
            buf = b;
            cap *= 2;
        }
    }
    close(fd);
    *out = buf;
    *outlen = len;
    return PW_OK;
}

int pw_module_compile(pw_runtime *rt, const char *name, const char *path, const char *out_path,
                      char *err, size_t errlen) {
    uint8_t *bytes, *code = NULL;
    size_t len, code_len = 0;
    int rc = read_file(name, path, rt->max_module_bytes, &bytes, &len, err, errlen);
    if (rc != PW_OK)
        return rc;
    pw_wasm_info info;
    char perr[256], so_path[4096], tmp_out[4096];
    int abi;
    const char *alloc;
    if (pw_wasm_parse(bytes, len, &info, perr, sizeof perr) != 0) {
        snprintf(err, errlen, "module \"%s\" refused: %s", name, perr);
        free(bytes);
        return PW_ELOAD;
    }
    rc = PW_ELOAD;
    if (check_limits(rt, &info, name, err, errlen) != 0 ||
        check_module(&info, name, &abi, &alloc, err, errlen) != 0)
        goto done;
    size_t nfuncs;
    const pw_host_func *funcs = pw_core_host_funcs(&nfuncs);
    snprintf(so_path, sizeof so_path, "%s.so.tmp", out_path);
    int erc = pw_wmod_compile_to(&rt->ecfg, name, bytes, len, &info, funcs, nfuncs, so_path, err,
                                 errlen);
    if (erc != 0) {
        rc = erc == -2 ? PW_ECOMPILE : PW_ELOAD;
        goto done;
    }
    rc = read_file(name, so_path, 0, &code, &code_len, err, errlen);
    unlink(so_path);
    if (rc != PW_OK)
        goto done;
    uint8_t head[PW_AOT_HEADER];
    memcpy(head, PW_AOT_MAGIC, 8);
    for (int i = 0; i < 4; i++)
        head[8 + i] = (uint8_t)(PW_AOT_VERSION >> (8 * i));
    pw_engine_table_hash(funcs, nfuncs, head + PW_AOT_TABLE_HASH);
    for (int i = 0; i < 8; i++)
        head[PW_AOT_WASM_LEN + i] = (uint8_t)((uint64_t)len >> (8 * i));
    snprintf(tmp_out, sizeof tmp_out, "%s.tmp", out_path);
    FILE *f = fopen(tmp_out, "wb");
    rc = PW_EIO;
    if (!f) {
        snprintf(err, errlen, "cannot write %s: %s", tmp_out, strerror(errno));
        goto done;
    }
    int ok = fwrite(head, 1, sizeof head, f) == sizeof head && fwrite(bytes, 1, len, f) == len &&
             fwrite(code, 1, code_len, f) == code_len;
    if (fclose(f) != 0 || !ok || rename(tmp_out, out_path) != 0) {
        snprintf(err, errlen, "cannot write %s: %s", out_path, strerror(errno));
        unlink(tmp_out);
        goto done;
    }
    rc = PW_OK;
done:
    pw_wasm_info_free(&info);
    free(bytes);
    free(code);
    return rc;
}

int pw_module_load_file(pw_runtime *rt, const char *name, const char *path, pw_module **out,
                        char *err, size_t errlen) {
    uint8_t *buf;
    size_t len;
    int rc = read_file(name, path, rt->max_module_bytes, &buf, &len, err, errlen);
    if (rc != PW_OK)
        return rc;
    rc = module_load(rt, name, buf, len, 0, out, err, errlen);
    free(buf);
    return rc;
}

/* 0 if the bytes read from `path` (the ones then loaded: no second read)
 * have the SHA-256 sha256_hex (64 hex digits, either case), else -1 with
 * both digests in err. */
static int digest_ok(const char *name, const char *path, const uint8_t *buf, size_t len,
                     const char *sha256_hex, char *err, size_t errlen) {
    unsigned char md[32];
    unsigned int mdlen = 0;
    char hex[65];
    EVP_Digest(buf, len, md, &mdlen, EVP_sha256(), NULL);
    for (int i = 0; i < 32; i++)
        snprintf(hex + 2 * i, 3, "%02x", md[i]);
    if (strlen(sha256_hex) != 64 || strncasecmp(hex, sha256_hex, 64) != 0) {
        snprintf(err, errlen,
                 "module \"%s\" refused: %s has SHA-256 %s, not the "
                 "expected %.64s",
                 name, path, hex, sha256_hex);
        return -1;
    }
    return 0;
}

int pw_module_load_file_digest(pw_runtime *rt, const char *name, const char *path,
                               const char *sha256_hex, pw_module **out, char *err, size_t errlen) {
    uint8_t *buf;
    size_t len;
    int rc = read_file(name, path, rt->max_module_bytes, &buf, &len, err, errlen);
    if (rc != PW_OK)
        return rc;
    if (sha256_hex && digest_ok(name, path, buf, len, sha256_hex, err, errlen) != 0)
        rc = PW_ELOAD;
    else
        rc = module_load(rt, name, buf, len, 0, out, err, errlen);
    free(buf);
    return rc;
}

int pw_module_load_precompiled(pw_runtime *rt, const char *name, const char *path,
                               const char *sha256_hex, pw_module **out, char *err, size_t errlen) {
    uint8_t *buf;
    size_t len;
    /* An artifact holds the module and its code: allow for both. */
    uint64_t max = rt->max_module_bytes ? rt->max_module_bytes * 2 + (64u << 20) : 0;
    int rc = read_file(name, path, max, &buf, &len, err, errlen);
    if (rc != PW_OK)
        return rc;
    if (sha256_hex && digest_ok(name, path, buf, len, sha256_hex, err, errlen) != 0) {
        free(buf);
        return PW_ELOAD;
    }
    rc = module_load(rt, name, buf, len, 1, out, err, errlen);
    free(buf);
    return rc;
}

void pw_module_free(pw_module *m) {
    if (!m)
        return;
    pw_wmod_free(m->wmod);
    free(m->imports);
    free(m->name);
    free(m);
}

/* A field of the module's own limits: lim's when set, else the runtime's. */
#define PW_LIMIT(f) (lim->f ? lim->f : m->rt->limits.f)

int pw_module_set_limits(pw_module *m, const pw_limits *lim, uint32_t max_call_ms,
                         uint64_t max_memory_bytes) {
    if (!m || !lim)
        return PW_EINVAL;
    m->limits = (pw_limits){
        .max_header_name_bytes = PW_LIMIT(max_header_name_bytes),
        .max_header_value_bytes = PW_LIMIT(max_header_value_bytes),
        .max_callback_bytes = PW_LIMIT(max_callback_bytes),
        .max_log_lines_per_sec = PW_LIMIT(max_log_lines_per_sec),
        .max_log_bytes_per_sec = PW_LIMIT(max_log_bytes_per_sec),
        .max_callouts = PW_LIMIT(max_callouts),
        .max_map_pairs = PW_LIMIT(max_map_pairs),
        .max_map_bytes = PW_LIMIT(max_map_bytes),
        .max_buffer_bytes = PW_LIMIT(max_buffer_bytes),
        .brake_traps = PW_LIMIT(brake_traps),
        .brake_window_ms = PW_LIMIT(brake_window_ms),
        .brake_backoff_ms = PW_LIMIT(brake_backoff_ms),
        .brake_max_backoff_ms = PW_LIMIT(brake_max_backoff_ms),
    };
    uint32_t pages = 0, call_ms = 0;
    if (max_memory_bytes) {
        uint64_t n = max_memory_bytes / 65536;
        pages = (uint32_t)(n > 65535 ? 65535 : n ? n : 1);
    }
    if (max_call_ms)
        call_ms = max_call_ms == UINT32_MAX ? 0 : max_call_ms;
    pw_wmod_set_limits(m->wmod, pages ? pages : m->rt->ecfg.max_pages,
                       max_call_ms ? call_ms : m->rt->ecfg.max_call_ms);
    return PW_OK;
}

#undef PW_LIMIT

const char *pw_module_name(const pw_module *m) {
    return m->name;
}

const char *pw_module_abi_version(const pw_module *m) {
    const char *v = pw_abi_name(m->abi);
    return v ? v : "unknown";
}
