/*
 * sdk_format.wasm (C SDK, with dispatch): pw_snprintf, the SDK's formatter,
 * on formats of both its paths -- the plain one (%u %d %i %s %% alone) and
 * the general one (flags, width, precision, length) -- and on buffers too
 * small. on_configure logs each result as `N "TEXT"` (N: the length the
 * whole output needs); tests/conformance/sdk_format.yaml checks the lines.
 */
#include <limits.h>

#include "proxy_wasm.h"

#define SHOW(size, ...)                                                                            \
    do {                                                                                           \
        char buf[64] = "untouched";                                                                \
        int n = pw_snprintf(buf, (size), __VA_ARGS__);                                            \
        pw_logf(PROXY_LOG_INFO, "fmt %d \"%s\"", n, (size) ? buf : "-");                          \
    } while (0)

static int on_configure(uint32_t root_id, size_t config_size) {
    (void)root_id;
    (void)config_size;
    SHOW(64, "%u/%u", 20u, 700u);
    SHOW(64, "%d %i %u", INT_MIN, -7, UINT_MAX);
    SHOW(64, "[%s][%s] 100%%", "ab", "");
    SHOW(4, "%d|%s", -1234, "ab");
    SHOW(1, "%u", 5u);
    SHOW(0, "%s", "abc");
    SHOW(64, "%5u|%-3d|%05d|%.3s|%x|%lu", 7u, 1, 42, "abcdef", 255u, 123456789ul);
    SHOW(6, "%+d %3s", 12, "x");
    return 1;
}

const pw_plugin_t pw_plugin = {
    .on_configure = on_configure,
};
