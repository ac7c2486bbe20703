/*
 * inspect.c -- `pwasm inspect PLUGIN.wasm`: what a module is and whether
 * this host can run it, without running it (pw_module_info_read; imports
 * grouped by the registry's areas).
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

static const char *kind_name(int k) {
    static const char *names[] = {"func", "table", "memory", "global", "tag"};
    return k >= 0 && k < 5 ? names[k] : "?";
}

static int has_export(const pw_module_info *in, const char *name) {
    for (size_t i = 0; i < in->nexports; i++)
        if (in->exports[i].kind == PW_KIND_FUNC && !strcmp(in->exports[i].name, name))
            return 1;
    return 0;
}

static int has_import(const pw_module_info *in, const char *module, const char *name) {
    for (size_t i = 0; i < in->nimports; i++)
        if ((!module || !strcmp(in->imports[i].module, module)) &&
            !strcmp(in->imports[i].name, name))
            return 1;
    return 0;
}

/* Which SDK built the module, from the traits docs/ABI.md §9 lists. */
static const char *sdk_guess(const pw_module_info *in, const char **why) {
    if (!in->abi_version) {
        *why = "no Proxy-Wasm ABI version marker";
        return "none";
    }
    int pa = has_export(in, "proxy_on_memory_allocate"), ma = has_export(in, "malloc");
    int init = has_export(in, "_initialize"), start = has_export(in, "_start");
    int wasi = 0;
    for (size_t i = 0; i < in->nimports; i++)
        wasi |= !strncmp(in->imports[i].module, "wasi", 4);
    if (pa && ma && has_export(in, "free") && has_export(in, "calloc") &&
        has_export(in, "realloc")) {
        *why = "exports malloc, free, calloc, realloc and proxy_on_memory_allocate";
        return "Go (TinyGo SDK)";
    }
    if (has_export(in, "proxy_on_grpc_trailing_metadata") ||
        (ma && in->has_start_section && !init && !start)) {
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
    /* The Rust SDK exports every callback, foreign functions included;
     * the pwasm C SDK exports the HTTP, gRPC and TCP ones only. */
    int rust = has_export(in, "proxy_on_foreign_function");
    if (pa && rust) {
        *why = "proxy_on_memory_allocate and every callback exported, foreign functions "
               "included";
        return "Rust (proxy-wasm-rust-sdk)";
    }
    if (ma && !wasi) {
        *why = "a malloc allocator and no WASI imports (wasm32-unknown-unknown)";
        return "Rust (proxy-wasm-rust-sdk, wasm32-unknown-unknown)";
    }
    if (pa && init && has_export(in, "proxy_abi_version_0_2_1")) {
        *why = "ABI 0.2.1, proxy_on_memory_allocate, _initialize, no foreign-function "
               "callback";
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
        return CLI_EXIT_LOAD;
    }
    pw_module_info info;
    char err[PW_ERRLEN], sig[256];
    if (pw_module_info_read(bytes, len, &info, err, sizeof err) != PW_OK) {
        fprintf(stderr, "pwasm: %s: %s\n", path, err);
        free(bytes);
        return CLI_EXIT_LOAD;
    }
    const char *start = info.has_start_section ? "start section" : "none";
    if (info.start)
        start = strcmp(info.start, "_initialize") ? "_start (command)" : "_initialize (reactor)";
    const char *why, *sdk = sdk_guess(&info, &why);
    printf("file:       %s (%zu bytes%s)\n", path, len,
           info.artifact ? ", pwasm compile artifact" : "");
    printf("abi:        %s\n",
           info.abi_version ? info.abi_version : "none (not a Proxy-Wasm module)");
    printf("sdk:        %s (guessed: %s)\n", sdk, why);
    printf("start:      %s\n", start);
    printf("allocator:  %s\n", info.allocator ? info.allocator : "none");
    if (info.has_memory || info.imports_memory) {
        printf("memory:     %u pages initial (%llu KiB)", info.memory_initial,
               (unsigned long long)info.memory_initial * 64);
        if (info.memory_max != UINT32_MAX)
            printf(", %u max (%llu KiB)", info.memory_max,
                   (unsigned long long)info.memory_max * 64);
        else
            printf(", no max (this host allows 1 GiB)");
        printf("%s\n", info.imports_memory ? " (imported)" : "");
    } else {
        printf("memory:     none\n");
    }
    printf("functions:  %u defined\n", info.nfunctions);

    static const char *const status_names[] = {
        [PW_IMPORT_OK] = "ok",
        [PW_IMPORT_UNIMPLEMENTED] = "ok",
        [PW_IMPORT_MISSING] = "not provided",
        [PW_IMPORT_WRONG_SIGNATURE] = "wrong signature",
    };
    printf("imports:    %zu\n", info.nimports);
    for (int a = 0; a < PW_AREA_COUNT; a++) {
        int title = 0;
        for (size_t i = 0; i < info.nimports; i++) {
            const pw_import_info *im = &info.imports[i];
            if (im->area != a)
                continue;
            if (!title)
                printf("  %s:\n", pw_area_name(a));
            title = 1;
            int later = im->status == PW_IMPORT_UNIMPLEMENTED;
            printf("    %-6s %s.%s %s  [%s]%s\n", kind_name(im->kind), im->module, im->name,
                   im->kind == PW_KIND_FUNC ? pw_signature_pretty(im->signature, sig, sizeof sig)
                                            : "",
                   status_names[im->status],
                   later ? " returns Unimplemented in this version" : "");
        }
    }
    printf("exports:    %zu\n", info.nexports);
    for (size_t i = 0; i < info.nexports; i++) {
        const pw_export_info *ex = &info.exports[i];
        printf(
            "  %-6s %s%s%s\n", kind_name(ex->kind), ex->name, ex->kind == PW_KIND_FUNC ? " " : "",
            ex->kind == PW_KIND_FUNC ? pw_signature_pretty(ex->signature, sig, sizeof sig) : "");
    }
    size_t missing = info.nmissing;
    if (info.problem[0])
        printf("host:       cannot run it as a Proxy-Wasm plugin: %s\n", info.problem);
    if (missing)
        printf("host:       cannot run it (%zu import%s above not provided)\n", missing,
               missing == 1 ? "" : "s");
    else if (info.problem[0])
        ; /* said above */
    else if (info.nunimplemented)
        printf("host:       provides every import (%zu not implemented yet: they return "
               "Unimplemented)\n",
               info.nunimplemented);
    else
        printf("host:       provides every import\n");
    int rc = missing || info.problem[0] ? 1 : 0;
    pw_module_info_free(&info);
    free(bytes);
    return rc;
}
