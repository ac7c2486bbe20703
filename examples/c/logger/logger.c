/*
 * logger: writes one line per request at INFO from on_log, built from
 * properties (docs/ABI.md §7):
 *
 *   logger: GET /path 200 1234us from 127.0.0.1:5555 to 127.0.0.1:8081
 *
 * i.e. request.method, request.path, response.code (int64), request.duration
 * (int64 ns, printed in whole µs), source.address, upstream.address. A
 * property the host does not have, an empty one, or one whose value has the
 * wrong size for its type prints as "-". Spaces, control characters, `\`
 * and bytes above 0x7e are written as \xHH and values longer than 256 bytes
 * are cut with "...", so a request is always exactly one line.
 *
 * Plugin configuration: none (ignored).
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "proxy_wasm.h"

#define FIELD_MAX 256                 /* bytes of a value kept, before escaping */
#define FIELD_BUF (4 * FIELD_MAX + 4) /* each byte as \xHH, then "..." and NUL */

/* A string property escaped and cut into buf[FIELD_BUF], or "-". */
static const char *text(const char *const *path, size_t nsegments, char *buf) {
    char *value = NULL;
    size_t len = 0;
    if (pw_get_property_string(path, nsegments, &value, &len) != PROXY_RESULT_OK || len == 0) {
        free(value);
        return "-";
    }
    size_t w = 0;
    for (size_t i = 0; i < len && i < FIELD_MAX; i++) {
        unsigned char c = (unsigned char)value[i];
        if (c > ' ' && c <= '~' && c != '\\')
            buf[w++] = (char)c;
        else
            w += (size_t)pw_snprintf(buf + w, 5, "\\x%02x", c);
    }
    memcpy(buf + w, len > FIELD_MAX ? "..." : "", len > FIELD_MAX ? 4 : 1);
    free(value);
    return buf;
}

static void on_log(uint32_t ctx) {
    (void)ctx;
    proxy_log_level_t level;
    if (pw_get_log_level(&level) == PROXY_RESULT_OK && level > PROXY_LOG_INFO)
        return; /* the line would be dropped: skip the hostcalls */
    static char method[FIELD_BUF], path[FIELD_BUF], source[FIELD_BUF], upstream[FIELD_BUF];
    char code[24] = "-", duration[24] = "-";
    int64_t v;
    if (pw_get_property_int64(PW_PATH("response", "code"), &v) == PROXY_RESULT_OK)
        pw_snprintf(code, sizeof code, "%lld", (long long)v);
    if (pw_get_property_int64(PW_PATH("request", "duration"), &v) == PROXY_RESULT_OK)
        pw_snprintf(duration, sizeof duration, "%lldus", (long long)(v / 1000));
    pw_logf(PROXY_LOG_INFO, "%s %s %s %s from %s to %s",
            text(PW_PATH("request", "method"), method), text(PW_PATH("request", "path"), path),
            code, duration, text(PW_PATH("source", "address"), source),
            text(PW_PATH("upstream", "address"), upstream));
}

const pw_plugin_t pw_plugin = {
    .on_log = on_log,
};
