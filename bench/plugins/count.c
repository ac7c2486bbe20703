/*
 * count: a request counter in shared data (benchmark scenario 8; scenario
 * 9 does the same with lua_shared_dict). In the response header filter,
 * one get + CAS set of the 8-byte counter "count" (again on CasMismatch:
 * another worker wrote meanwhile), and the new value as `x-count`. The key
 * is created when the plugin starts, so that every increment counts
 * (docs/ABI.md §6.4).
 */
#include <stdint.h>
#include <stdlib.h>

#include "proxy_wasm.h"

static int on_configure(uint32_t root_id, size_t size) {
    (void)root_id;
    (void)size;
    char *v = NULL;
    size_t n = 0;
    uint32_t cas = 0;
    if (proxy_get_shared_data("count", 5, &v, &n, &cas) == PROXY_RESULT_NOT_FOUND) {
        uint64_t zero = 0;
        proxy_set_shared_data("count", 5, (const char *)&zero, 8, 0);
    }
    free(v);
    return 1;
}

static proxy_action_t on_response_headers(uint32_t ctx, size_t nheaders, int end_of_stream) {
    (void)ctx;
    (void)nheaders;
    (void)end_of_stream;
    uint64_t count;
    proxy_status_t st;
    do {
        char *v = NULL;
        size_t n = 0;
        uint32_t cas = 0;
        count = 0;
        if (proxy_get_shared_data("count", 5, &v, &n, &cas) == PROXY_RESULT_OK && n == 8)
            memcpy(&count, v, 8);
        free(v);
        count++;
        st = proxy_set_shared_data("count", 5, (const char *)&count, 8, cas);
    } while (st == PROXY_RESULT_CAS_MISMATCH);
    char value[24];
    pw_snprintf(value, sizeof value, "%llu", (unsigned long long)count);
    pw_add_header(PROXY_MAP_HTTP_RESPONSE_HEADERS, "x-count", value);
    return PROXY_ACTION_CONTINUE;
}

const pw_plugin_t pw_plugin = {
    .on_configure = on_configure,
    .on_response_headers = on_response_headers,
};
