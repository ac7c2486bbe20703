/*
 * inspect.c -- `pwasm inspect PLUGIN.wasm`: what a module is and whether
 * this host can run it, without running it.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "engine/wasm_parse.h" /* internal: no public module reader yet */

static const char *kind_name(int k) {
    static const char *names[] = {"func", "table", "memory", "global", "tag"};
    return k >= 0 && k < 5 ? names[k] : "?";
}

/* Import areas, in the order they are printed (REFERENCE.md §3.1). */
static const struct area {
    const char *title;
    const char *names; /* space-separated, '*' suffix = prefix match */
} areas[] = {
    {"logging, time, timers", "proxy_log proxy_get_log_level proxy_get_current_time_nanoseconds "
                              "proxy_set_tick_period_milliseconds"},
    {"configuration and buffers",
     "proxy_get_configuration proxy_get_buffer_bytes proxy_get_buffer_status "
     "proxy_set_buffer_bytes"},
    {"header maps", "proxy_get_header_map* proxy_set_header_map* proxy_add_header_map* "
                    "proxy_replace_header_map* proxy_remove_header_map*"},
    {"properties", "proxy_get_property proxy_set_property"},
    {"stream control, local responses",
     "proxy_continue_* proxy_close_stream proxy_clear_route_cache proxy_send_local_response"},
    {"HTTP and gRPC call-outs", "proxy_http_call proxy_grpc_* proxy_get_status"},
    {"shared data and queues", "proxy_*_shared_data proxy_*_shared_queue"},
    {"metrics", "proxy_*_metric"},
    {"contexts, foreign functions",
     "proxy_set_effective_context proxy_done proxy_call_foreign_function"},
    {"Emscripten", "emscripten_notify_memory_growth pthread_equal"},
};
#define NAREAS (sizeof areas / sizeof *areas)

/* 1 if name matches one word of the list ('*' is a wildcard). */
static int word_match(const char *list, const char *name) {
    const char *p = list;
    while (*p) {
        size_t n = strcspn(p, " ");
        char pat[96];
        snprintf(pat, sizeof pat, "%.*s", (int)n, p);
        char *star = strchr(pat, '*');
        if (star) {
            size_t pre = (size_t)(star - pat), suf = strlen(star + 1), len = strlen(name);
            if (len >= pre + suf && !strncmp(name, pat, pre) &&
                !strcmp(name + len - suf, star + 1))
                return 1;
        } else if (!strcmp(pat, name)) {
            return 1;
        }
        p += n;
        while (*p == ' ')
            p++;
    }
    return 0;
}

static size_t area_of(const pw_wasm_import *im) {
    if (!strcmp(im->module, "wasi_snapshot_preview1") || !strcmp(im->module, "wasi_unstable"))
        return NAREAS; /* WASI */
    if (!strcmp(im->module, "env"))
        for (size_t i = 0; i < NAREAS; i++)
            if (word_match(areas[i].names, im->name))
                return i;
    return NAREAS + 1; /* other */
}

static int has_export(const pw_wasm_info *in, const char *name) {
    return pw_wasm_find_export(in, name, PW_EXTERN_FUNC) != NULL;
}

static int has_import(const pw_wasm_info *in, const char *module, const char *name) {
    for (uint32_t i = 0; i < in->nimports; i++)
        if ((!module || !strcmp(in->imports[i].module, module)) &&
            !strcmp(in->imports[i].name, name))
            return 1;
    return 0;
}

/* Which SDK built the module, from the traits REFERENCE.md §9 lists. */
static const char *sdk_guess(const pw_wasm_info *in, const char **why) {
    int pa = has_export(in, "proxy_on_memory_allocate"), ma = has_export(in, "malloc");
    int init = has_export(in, "_initialize"), start = has_export(in, "_start");
    int wasi = 0;
    for (uint32_t i = 0; i < in->nimports; i++)
        wasi |= !strncmp(in->imports[i].module, "wasi", 4);
    if (pa && ma && has_export(in, "free") && has_export(in, "calloc") &&
        has_export(in, "realloc")) {
        *why = "exports malloc, free, calloc, realloc and proxy_on_memory_allocate";
        return "Go (TinyGo SDK)";
    }
    if (has_export(in, "proxy_on_grpc_trailing_metadata") ||
        (ma && in->has_start && !init && !start)) {
        *why = "malloc allocator, a start section and no _initialize/_start";
        return "AssemblyScript (solo-io/proxy-runtime)";
    }
    if (has_import(in, "env", "emscripten_notify_memory_growth") ||
        (ma && has_export(in, "proxy_validate_configuration"))) {
        *why = "malloc allocator, Emscripten imports or proxy_validate_configuration";
        return "C++ (proxy-wasm-cpp-sdk, Emscripten)";
    }
    if (pa && (has_import(in, NULL, "poll_oneoff") || has_import(in, NULL, "sched_yield"))) {
        *why = "proxy_on_memory_allocate and the Go runtime's WASI imports";
        return "Go (proxy-wasm-go-sdk)";
    }
    if (pa &&
        (has_export(in, "proxy_on_foreign_function") || has_export(in, "proxy_on_grpc_receive"))) {
        *why = "proxy_on_memory_allocate and every callback exported, gRPC included";
        return "Rust (proxy-wasm-rust-sdk)";
    }
    if (ma && !wasi) {
        *why = "a malloc allocator and no WASI imports (wasm32-unknown-unknown)";
        return "Rust (proxy-wasm-rust-sdk, wasm32-unknown-unknown)";
    }
    if (pa && init && has_export(in, "proxy_abi_version_0_2_1")) {
        *why = "ABI 0.2.1, proxy_on_memory_allocate, _initialize, no gRPC callbacks";
        return "C (pwasm C SDK)";
    }
    *why = "no known combination of exports";
    return "unknown";
}

int cmd_inspect(int argc, char **argv) {
    if (wants_help(argc, argv)) {
        usage(stdout, "inspect");
        return 0;
    }
    if (argc != 2) {
        usage(stderr, "inspect");
        return 2;
    }
    const char *path = argv[1];
    uint8_t *bytes;
    size_t len;
    if (read_file(path, &bytes, &len) != 0) {
        fprintf(stderr, "pwasm: cannot read %s: %s\n", path, strerror(errno));
        return 2;
    }
    const uint8_t *wasm = bytes;
    size_t wasm_len = len;
    int artifact = pw_artifact_wasm(bytes, len, &wasm, &wasm_len);
    if (artifact < 0) {
        fprintf(stderr, "pwasm: %s: truncated pwasm compile artifact\n", path);
        free(bytes);
        return 1;
    }
    pw_wasm_info info;
    char err[PW_ERRLEN], sig[256];
    if (pw_wasm_parse(wasm, wasm_len, &info, err, sizeof err) != 0) {
        fprintf(stderr, "pwasm: %s: %s\n", path, err);
        free(bytes);
        return 1;
    }
    static const char *markers[] = {"proxy_abi_version_0_2_1", "proxy_abi_version_0_2_0",
                                    "proxy_abi_version_0_1_0"};
    const char *abi = "none (not a Proxy-Wasm module)";
    for (int i = 0; i < 3; i++)
        if (has_export(&info, markers[i])) {
            abi = i == 0 ? "0.2.1" : i == 1 ? "0.2.0" : "0.1.0";
            break;
        }
    const char *start = has_export(&info, "_initialize") ? "_initialize (reactor)"
                        : has_export(&info, "_start")    ? "_start (command)"
                        : info.has_start                 ? "start section"
                                                         : "none";
    const char *alloc = has_export(&info, "proxy_on_memory_allocate") ? "proxy_on_memory_allocate"
                        : has_export(&info, "malloc")                 ? "malloc"
                                                                      : "none";
    const char *why, *sdk = sdk_guess(&info, &why);
    printf("file:       %s (%zu bytes%s)\n", path, len,
           artifact ? ", pwasm compile artifact" : "");
    printf("abi:        %s\n", abi);
    printf("sdk:        %s (guessed: %s)\n", sdk, why);
    printf("start:      %s\n", start);
    printf("allocator:  %s\n", alloc);
    if (info.has_memory || info.imports_memory) {
        printf("memory:     %u pages initial (%llu KiB)", info.mem_initial,
               (unsigned long long)info.mem_initial * 64);
        if (info.mem_max != UINT32_MAX)
            printf(", %u max (%llu KiB)", info.mem_max, (unsigned long long)info.mem_max * 64);
        else
            printf(", no max (this host allows 1 GiB)");
        printf("%s\n", info.imports_memory ? " (imported)" : "");
    } else {
        printf("memory:     none\n");
    }
    printf("functions:  %u defined\n", info.nfuncs);

    size_t nfuncs;
    const pw_hostcall_info *funcs = pw_hostcalls(&nfuncs);
    int missing = 0, unimpl = 0;
    printf("imports:    %u\n", info.nimports);
    for (size_t a = 0; a <= NAREAS + 1; a++) {
        int title = 0;
        for (uint32_t i = 0; i < info.nimports; i++) {
            const pw_wasm_import *im = &info.imports[i];
            if (area_of(im) != a)
                continue;
            if (!title)
                printf("  %s:\n", a < NAREAS ? areas[a].title : a == NAREAS ? "WASI" : "other");
            title = 1;
            const char *status = "not provided";
            int later = 0;
            if (im->kind == PW_EXTERN_FUNC) {
                for (size_t j = 0; j < nfuncs; j++)
                    if (!strcmp(funcs[j].module, im->module) && !strcmp(funcs[j].name, im->name)) {
                        status = strcmp(funcs[j].signature, im->sig) ? "wrong signature" : "ok";
                        later = !funcs[j].implemented && !strcmp(status, "ok");
                        break;
                    }
            }
            missing += strcmp(status, "ok") != 0;
            unimpl += later;
            printf("    %-6s %s.%s %s  [%s]%s\n", kind_name(im->kind), im->module, im->name,
                   im->kind == PW_EXTERN_FUNC ? pw_sig_pretty(im->sig, sig, sizeof sig) : "",
                   status, later ? " returns Unimplemented in this version" : "");
        }
    }
    printf("exports:    %u\n", info.nexports);
    for (uint32_t i = 0; i < info.nexports; i++) {
        const pw_wasm_export *ex = &info.exports[i];
        printf("  %-6s %s%s%s\n", kind_name(ex->kind), ex->name,
               ex->kind == PW_EXTERN_FUNC ? " " : "",
               ex->kind == PW_EXTERN_FUNC ? pw_sig_pretty(ex->sig, sig, sizeof sig) : "");
    }
    if (missing)
        printf("host:       cannot run it (%d import%s above not provided)\n", missing,
               missing == 1 ? "" : "s");
    else if (unimpl)
        printf("host:       provides every import (%d not implemented yet: they return "
               "Unimplemented)\n",
               unimpl);
    else
        printf("host:       provides every import\n");
    pw_wasm_info_free(&info);
    free(bytes);
    return missing ? 1 : 0;
}
