/*
 * wasm_load -- the load path of a module up to wasm2c: the reader
 * (pw_wasm_parse), the Proxy-Wasm checks (pw_check_proxy_wasm), pwasm
 * inspect's reader (pw_module_info_read), and, when the module links
 * against the host table, the glue C file (pw_engine_write_glue, to
 * /dev/null). Any input must be refused with a message or accepted, never
 * crash, leak or read out of bounds.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/core.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char err[PW_ERRLEN];
    pw_wasm_info info;
    if (pw_wasm_parse(data, size, &info, err, sizeof err) == 0) {
        /* What the parser promises its users. */
        for (uint32_t i = 0; i < info.nimports; i++)
            if (info.imports[i].kind == PW_EXTERN_FUNC && !strchr(info.imports[i].sig, ':'))
                abort();
        for (uint32_t i = 0; i < info.nexports; i++)
            if (info.exports[i].kind == PW_EXTERN_FUNC && !strchr(info.exports[i].sig, ':'))
                abort();
        char pretty[256];
        for (uint32_t i = 0; i < info.nimports; i++)
            pw_sig_pretty(info.imports[i].sig, pretty, sizeof pretty);
        int abi;
        const char *alloc;
        if (pw_check_proxy_wasm(&info, &abi, &alloc, err, sizeof err) == 0) {
            size_t nfuncs;
            const pw_host_func *funcs = pw_core_host_funcs(&nfuncs);
            pw_engine_write_glue("/dev/null", "fuzz", &info, funcs, nfuncs, err, sizeof err);
        }
        pw_wasm_info_free(&info);
    }
    pw_module_info mi;
    if (pw_module_info_read(data, size, &mi, err, sizeof err) == 0)
        pw_module_info_free(&mi);
    const uint8_t *w;
    size_t wl;
    pw_artifact_wasm(data, size, &w, &wl);
    return 0;
}
