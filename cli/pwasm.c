/*
 * pwasm -- command-line tool on the pwasm host library.
 *
 * This version has one subcommand, `inspect`; run, test, bench and compile
 * come with the CLI issue.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/core.h"
#include "engine/wasm_parse.h"
#include "pwasm.h"

static void usage(FILE *f)
{
    fputs("usage: pwasm inspect PLUGIN.wasm\n"
          "\n"
          "  inspect   print the module's Proxy-Wasm ABI version, start\n"
          "            function, allocator, memory limits, imports (and\n"
          "            whether this host provides each) and exports\n",
          f);
}

static int read_file(const char *path, uint8_t **out, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return -1;
    size_t cap = 1 << 16, n = 0;
    uint8_t *b = malloc(cap);
    for (;;) {
        if (n == cap) {
            uint8_t *nb = realloc(b, cap *= 2);
            if (!nb) {
                free(b);
                fclose(f);
                return -1;
            }
            b = nb;
        }
        size_t r = fread(b + n, 1, cap - n, f);
        if (!r)
            break;
        n += r;
    }
    fclose(f);
    *out = b;
    *len = n;
    return 0;
}

static const char *kind_name(int k)
{
    static const char *names[] = {"func", "table", "memory", "global", "tag"};
    return k >= 0 && k < 5 ? names[k] : "?";
}

static int cmd_inspect(const char *path)
{
    uint8_t *bytes;
    size_t len;
    if (read_file(path, &bytes, &len) != 0) {
        fprintf(stderr, "pwasm: cannot read %s\n", path);
        return 2;
    }
    pw_wasm_info info;
    char err[PW_ERRLEN], sig[256];
    if (pw_wasm_parse(bytes, len, &info, err, sizeof err) != 0) {
        fprintf(stderr, "pwasm: %s: %s\n", path, err);
        free(bytes);
        return 1;
    }
    static const char *markers[] = {"proxy_abi_version_0_2_1",
                                    "proxy_abi_version_0_2_0",
                                    "proxy_abi_version_0_1_0"};
    const char *abi = "none (not a Proxy-Wasm module)";
    for (int i = 0; i < 3; i++)
        if (pw_wasm_find_export(&info, markers[i], PW_EXTERN_FUNC)) {
            abi = i == 0 ? "0.2.1" : i == 1 ? "0.2.0" : "0.1.0";
            break;
        }
    const char *start = pw_wasm_find_export(&info, "_initialize", PW_EXTERN_FUNC)
                            ? "_initialize (reactor)"
                        : pw_wasm_find_export(&info, "_start", PW_EXTERN_FUNC)
                            ? "_start (command)"
                        : info.has_start ? "start section"
                                         : "none";
    const char *alloc =
        pw_wasm_find_export(&info, "proxy_on_memory_allocate", PW_EXTERN_FUNC)
            ? "proxy_on_memory_allocate"
        : pw_wasm_find_export(&info, "malloc", PW_EXTERN_FUNC) ? "malloc"
                                                               : "none";
    printf("file:       %s (%zu bytes)\n", path, len);
    printf("abi:        %s\n", abi);
    printf("start:      %s\n", start);
    printf("allocator:  %s\n", alloc);
    if (info.has_memory || info.imports_memory) {
        printf("memory:     %u pages initial", info.mem_initial);
        if (info.mem_max != UINT32_MAX)
            printf(", %u max", info.mem_max);
        printf("%s\n", info.imports_memory ? " (imported)" : "");
    }
    size_t nfuncs;
    const pw_host_func *funcs = pw_core_host_funcs(&nfuncs);
    int missing = 0;
    printf("imports:    %u\n", info.nimports);
    for (uint32_t i = 0; i < info.nimports; i++) {
        const pw_wasm_import *im = &info.imports[i];
        const char *status = "not provided";
        if (im->kind == PW_EXTERN_FUNC) {
            for (size_t j = 0; j < nfuncs; j++)
                if (!strcmp(funcs[j].module, im->module) &&
                    !strcmp(funcs[j].name, im->name)) {
                    status = strcmp(funcs[j].sig, im->sig) ? "wrong signature"
                                                           : "ok";
                    break;
                }
        }
        missing += strcmp(status, "ok") != 0;
        printf("  %-6s %s.%s %s  [%s]\n", kind_name(im->kind), im->module,
               im->name,
               im->kind == PW_EXTERN_FUNC ? pw_sig_pretty(im->sig, sig, sizeof sig)
                                          : "",
               status);
    }
    printf("exports:    %u\n", info.nexports);
    for (uint32_t i = 0; i < info.nexports; i++) {
        const pw_wasm_export *ex = &info.exports[i];
        printf("  %-6s %s %s\n", kind_name(ex->kind), ex->name,
               ex->kind == PW_EXTERN_FUNC ? pw_sig_pretty(ex->sig, sig, sizeof sig)
                                          : "");
    }
    printf("host:       %s\n", missing ? "cannot run it (imports above)"
                                       : "provides every import");
    pw_wasm_info_free(&info);
    free(bytes);
    return missing ? 1 : 0;
}

int main(int argc, char **argv)
{
    if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
        usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    if (!strcmp(argv[1], "inspect")) {
        if (argc != 3 || !strcmp(argv[2], "--help")) {
            usage(argc == 3 ? stdout : stderr);
            return argc == 3 ? 0 : 2;
        }
        return cmd_inspect(argv[2]);
    }
    fprintf(stderr, "pwasm: unknown command \"%s\"\n", argv[1]);
    usage(stderr);
    return 2;
}
