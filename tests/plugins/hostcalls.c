/*
 * hostcalls.wasm (raw exports, no SDK dispatch): one hostcall test per
 * request, for the core's unit tests. proxy_on_request_headers reads the
 * request header `x-test` (with proxy_get_header_map_value) and runs the test
 * of that name, then logs at INFO exactly one line
 *
 *   result: <name> <status>[ <value>]
 *
 * <status> is the decimal proxy_status_t of the hostcall under test (a WASI
 * errno for wasi_*), <value> what the test read back, as listed below. An
 * unknown name logs `result: <name> unknown`; no x-test header, nothing.
 *
 *   log_badptr            proxy_log(INFO, 0xFFFFFF00, 512)              -> 6
 *   get_header_badptr     get_header_map_value, key (0xFFFFFF00, 512)  -> 6
 *   get_header_missing    get_header_map_value("x-pwasm-missing")      -> 1
 *   get_pairs             get_header_map_pairs(request headers)
 *                         value: "<count> k=v k=v ..." (in map order)
 *   add_header            add_header_map_value("x-added", "yes"), then read it
 *                         value: the value read ("yes")
 *   replace_header        replace_header_map_value("x-test", "replaced"),
 *                         then read x-test; value: "replaced"
 *   remove_header         remove_header_map_value("x-test"), then read it;
 *                         value: "get=<status of the read>" (get=1)
 *   set_pairs             set_header_map_pairs({a: 1, b: 22}), then as
 *                         get_pairs; value: "2 a=1 b=22"
 *   time                  get_current_time_nanoseconds; value: the ns (> 0)
 *   log_level             get_log_level; value: the level
 *   property_name         get_property("plugin_name"); value: the bytes
 *   property_root_id      get_property("plugin_root_id")
 *   property_vm_id        get_property("plugin_vm_id")
 *   property_path         get_property("request\0path") (12 bytes)
 *   property_trailing_nul get_property("request\0path\0") (13 bytes, C++ SDK form)
 *   property_unknown      get_property("pwasm_no_such_property")        -> 1
 *   config                get_buffer_bytes(PLUGIN_CONFIGURATION, 0, 0xFFFFFFFF)
 *   config_clamp          get_buffer_bytes(PLUGIN_CONFIGURATION, 2, 0xFFFFFFFF)
 *   buffer_bad_type       get_buffer_bytes(9, 0, 16)                     -> 2
 *   out_badptr            get_header_map_value("x-test") with both return
 *                         pointers at 0xFFFFFFF0 / 0xFFFFFFF8            -> 6
 *   local_response        send_local_response(401, body "nope", headers
 *                         {x-why: test}, grpc -1); returns Pause     -> 0
 *   unimplemented         set_shared_data("k", "v", cas 0) status, then
 *                         http_call, call_foreign_function("pwasm_none"),
 *                         clear_route_cache; value: "http_call=<status>
 *                         foreign=<status> route=<status>"
 *   effective_ctx_bad     set_effective_context(9999)                    -> 2
 *   wasi_write            fd_write(1, "hello from wasi\n") errno; value:
 *                         "nwritten=<n> fd2=<errno> fd7=<errno>" where fd 2
 *                         gets "hello from wasi stderr\n" (expect 0 16 0 8)
 *   random                random_get(16 bytes) errno; value: the bytes in hex
 *
 * Limits (default pw_limits; statuses 0 Ok, 2 BadArgument, 28 WASI EINVAL):
 *   limit_name            add_header_map_value with an 8 KiB name, then a
 *                         1 MiB one; value "8k=<st>"               -> 2
 *   limit_value           replace_header_map_value(x-big) with 64 KiB and
 *                         64 KiB + 1 values, then 200 times with 10 MB;
 *                         value "64k=<st> 64k+1=<st> ok=<n> bad=<n>"  -> last
 *   limit_budget          replace_header_map_value(x-big, 64 KiB) 1000
 *                         times; value "ok=<n> bad=<n>"           -> last
 *   limit_pairs           set_header_map_pairs({x-big: 100 KiB})   -> 2
 *   limit_body            set_buffer_bytes(request body, prepend 1 MiB)
 *                         40 times; value "ok=<n>"                 -> last
 *   limit_property        set_property("x", 1 MiB) 40 times; as limit_body
 *   limit_local_body      send_local_response(200, 33 MiB body)    -> 2
 *   limit_random          random_get(65537) errno, then random_get(64 KiB)
 *                         until it fails; value "calls=<n> errno=<e>"
 *   local_bad_status      send_local_response of 100 101 199 600 999 0, and
 *                         204 / 304 with a body; value "<code>=<st> ..."
 *                         (the last: "304+body=<st>")              -> last
 *   local_204             send_local_response(204, no body); returns Pause
 *   local_big_body        send_local_response(200, 1 MiB of 'b'); Pause
 *   status_write          writes of :status in the response headers:
 *                         replace 100, add 101, set_pairs {:status: 100},
 *                         replace 600, 20, 2000, 200; value
 *                         "100=<st> add101=<st> pairs100=<st> 600=<st>
 *                         20=<st> 2000=<st> 200=<st>"              -> last
 *   log_forge             proxy_log("a\nb\r\0c\td\x1b[31m") at INFO
 *   log_long              proxy_log of 10000 'x'
 *   log_flood             proxy_log("flood <i>") 100000 times at INFO
 *   wasi_forge            fd_write(1, "l1\nl2\n"), then fd_write(2) of
 *                         10000 'y' and "\n" in two iovecs
 *
 * Values are raw bytes (%.*s), empty values leave out the value. Every test
 * returns Continue except local_response, local_204 and local_big_body.
 * proxy_on_vm_start and proxy_on_configure return 1. The ABI marker and the allocator come from
 * the SDK (proxy_wasm_raw.o).
 */
#include <stdlib.h>
#include <string.h>
#include <wasi/api.h>

#include "proxy_wasm.h"

#define EXPORT(name) __attribute__((export_name(#name)))
#define BAD_PTR ((const char *)(uintptr_t)0xFFFFFF00u)
#define REQ PROXY_MAP_HTTP_REQUEST_HEADERS

/* The <value> of the current result line. */
static char value[4096];
static size_t value_len;

__attribute__((format(printf, 1, 2))) static void put(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    int n = pw_vsnprintf(value + value_len, sizeof value - value_len, fmt, ap);
    va_end(ap);
    value_len += (size_t)n;
    if (value_len >= sizeof value)
        value_len = sizeof value - 1;
}

/* Appends " " before every part but the first. */
#define SEP() (value_len ? " " : "")

static proxy_status_t read_header(const char *name) {
    char *v = NULL;
    size_t n = 0;
    proxy_status_t st = proxy_get_header_map_value(REQ, name, strlen(name), &v, &n);
    if (st == PROXY_RESULT_OK)
        put("%s%.*s", SEP(), (int)n, v ? v : "");
    free(v);
    return st;
}

static proxy_status_t put_pairs(void) {
    char *raw = NULL;
    size_t size = 0;
    pw_pair_t *pairs;
    size_t count;
    proxy_status_t st = proxy_get_header_map_pairs(REQ, &raw, &size);
    if (st != PROXY_RESULT_OK) {
        free(raw);
        return st;
    }
    if (pw_pairs_parse(raw, size, &pairs, &count) != PROXY_RESULT_OK) {
        put("%smalformed", SEP());
    } else {
        put("%s%zu", SEP(), count);
        for (size_t i = 0; i < count; i++)
            put(" %.*s=%.*s", (int)pairs[i].key_len, pairs[i].key, (int)pairs[i].value_len,
                pairs[i].value);
        free(pairs);
    }
    free(raw);
    return st;
}

static proxy_status_t get_property(const char *path, size_t len) {
    char *v = NULL;
    size_t n = 0;
    proxy_status_t st = proxy_get_property(path, len, &v, &n);
    if (st == PROXY_RESULT_OK && n)
        put("%s%.*s", SEP(), (int)n, v);
    free(v);
    return st;
}

static proxy_status_t get_config(uint32_t start) {
    char *v = NULL;
    size_t n = 0;
    proxy_status_t st =
        proxy_get_buffer_bytes(PROXY_BUFFER_PLUGIN_CONFIGURATION, start, 0xFFFFFFFFu, &v, &n);
    if (st == PROXY_RESULT_OK && n)
        put("%s%.*s", SEP(), (int)n, v);
    free(v);
    return st;
}

static proxy_status_t t_log_badptr(void) {
    return proxy_log(PROXY_LOG_INFO, BAD_PTR, 512);
}

static proxy_status_t t_get_header_badptr(void) {
    char *v = NULL;
    size_t n = 0;
    return proxy_get_header_map_value(REQ, BAD_PTR, 512, &v, &n);
}

static proxy_status_t t_get_header_missing(void) {
    return read_header("x-pwasm-missing");
}

static proxy_status_t t_add_header(void) {
    proxy_status_t st = proxy_add_header_map_value(REQ, "x-added", 7, "yes", 3);
    return st != PROXY_RESULT_OK ? st : read_header("x-added");
}

static proxy_status_t t_replace_header(void) {
    proxy_status_t st = proxy_replace_header_map_value(REQ, "x-test", 6, "replaced", 8);
    return st != PROXY_RESULT_OK ? st : read_header("x-test");
}

static proxy_status_t t_remove_header(void) {
    char *v = NULL;
    size_t n = 0;
    proxy_status_t st = proxy_remove_header_map_value(REQ, "x-test", 6);
    put("get=%d", proxy_get_header_map_value(REQ, "x-test", 6, &v, &n));
    free(v);
    return st;
}

static proxy_status_t t_set_pairs(void) {
    pw_pair_t pairs[] = {pw_pair("a", "1"), pw_pair("b", "22")};
    char *data;
    size_t size;
    proxy_status_t st = pw_pairs_serialize(pairs, 2, &data, &size);
    if (st != PROXY_RESULT_OK)
        return st;
    st = proxy_set_header_map_pairs(REQ, data, size);
    free(data);
    return st != PROXY_RESULT_OK ? st : put_pairs();
}

static proxy_status_t t_time(void) {
    uint64_t ns = 0;
    proxy_status_t st = proxy_get_current_time_nanoseconds(&ns);
    put("%llu", (unsigned long long)ns);
    return st;
}

static proxy_status_t t_log_level(void) {
    uint32_t level = 0;
    proxy_status_t st = proxy_get_log_level(&level);
    put("%u", level);
    return st;
}

static proxy_status_t t_property_name(void) {
    return get_property("plugin_name", 11);
}

static proxy_status_t t_property_root_id(void) {
    return get_property("plugin_root_id", 14);
}

static proxy_status_t t_property_vm_id(void) {
    return get_property("plugin_vm_id", 12);
}

static proxy_status_t t_property_path(void) {
    return get_property("request\0path", 12);
}

static proxy_status_t t_property_trailing_nul(void) {
    return get_property("request\0path\0", 13);
}

static proxy_status_t t_property_unknown(void) {
    return get_property("pwasm_no_such_property", 22);
}

static proxy_status_t t_config(void) {
    return get_config(0);
}

static proxy_status_t t_config_clamp(void) {
    return get_config(2);
}

static proxy_status_t t_buffer_bad_type(void) {
    char *v = NULL;
    size_t n = 0;
    return proxy_get_buffer_bytes((proxy_buffer_type_t)9, 0, 16, &v, &n);
}

static proxy_status_t t_out_badptr(void) {
    return proxy_get_header_map_value(REQ, "x-test", 6, (char **)(uintptr_t)0xFFFFFFF0u,
                                      (size_t *)(uintptr_t)0xFFFFFFF8u);
}

static proxy_status_t t_local_response(void) {
    pw_pair_t headers[] = {pw_pair("x-why", "test")};
    char *map;
    size_t map_size;
    proxy_status_t st = pw_pairs_serialize(headers, 1, &map, &map_size);
    if (st != PROXY_RESULT_OK)
        return st;
    st = proxy_send_local_response(401, NULL, 0, "nope", 4, map, map_size, PROXY_GRPC_STATUS_NONE);
    free(map);
    return st;
}

static proxy_status_t t_unimplemented(void) {
    proxy_status_t st = proxy_set_shared_data("k", 1, "v", 1, 0);
    pw_pair_t headers[] = {pw_pair(":method", "GET"), pw_pair(":path", "/"),
                           pw_pair(":authority", "pwasm.test")};
    char *map;
    size_t map_size;
    uint32_t token = 0;
    proxy_status_t call = pw_pairs_serialize(headers, 3, &map, &map_size);
    if (call == PROXY_RESULT_OK) {
        call = proxy_http_call("127.0.0.1:1", 11, map, map_size, NULL, 0, NULL, 0, 1000, &token);
        free(map);
    }
    char *res = NULL;
    size_t res_size = 0;
    proxy_status_t foreign = proxy_call_foreign_function("pwasm_none", 10, "", 0, &res, &res_size);
    put("http_call=%d foreign=%d route=%d", call, foreign, proxy_clear_route_cache());
    return st;
}

static proxy_status_t t_effective_ctx_bad(void) {
    return proxy_set_effective_context(9999);
}

static __wasi_errno_t wasi_write(__wasi_fd_t fd, const char *text, __wasi_size_t *written) {
    __wasi_ciovec_t iov = {(const uint8_t *)text, strlen(text)};
    *written = 0;
    return __wasi_fd_write(fd, &iov, 1, written);
}

static proxy_status_t t_wasi_write(void) {
    __wasi_size_t n1, n2, n7;
    __wasi_errno_t e1 = wasi_write(1, "hello from wasi\n", &n1);
    __wasi_errno_t e2 = wasi_write(2, "hello from wasi stderr\n", &n2);
    __wasi_errno_t e7 = wasi_write(7, "hello from wasi fd 7\n", &n7);
    put("nwritten=%lu fd2=%u fd7=%u", (unsigned long)n1, e2, e7);
    return (proxy_status_t)e1;
}

static proxy_status_t t_random(void) {
    uint8_t buf[16] = {0};
    __wasi_errno_t e = __wasi_random_get(buf, sizeof buf);
    for (size_t i = 0; i < sizeof buf; i++)
        put("%02x", buf[i]);
    return (proxy_status_t)e;
}

/* ------------------------------------------------------------ limits */

#define RESP PROXY_MAP_HTTP_RESPONSE_HEADERS

/* n bytes of c (malloc'ed). */
static char *filled(size_t n, char c) {
    char *p = malloc(n ? n : 1);
    if (p)
        memset(p, c, n);
    return p;
}

/* Makes `call` `times` times, leaves its last status in st, puts
 * "ok=<n> bad=<n>". */
#define REPEAT(times, call)                                                              \
    do {                                                                                 \
        int ok_ = 0, bad_ = 0;                                                           \
        for (int i_ = 0; i_ < (times); i_++) {                                           \
            st = (call);                                                                 \
            if (st == PROXY_RESULT_OK)                                                   \
                ok_++;                                                                   \
            else                                                                         \
                bad_++;                                                                  \
        }                                                                                \
        put("%sok=%d bad=%d", SEP(), ok_, bad_);                                         \
    } while (0)

static proxy_status_t t_limit_name(void) {
    char *name = filled(1 << 20, 'n');
    put("8k=%d", proxy_add_header_map_value(REQ, name, 8192, "v", 1));
    proxy_status_t st = proxy_add_header_map_value(REQ, name, 1 << 20, "v", 1);
    free(name);
    return st;
}

static proxy_status_t t_limit_value(void) {
    size_t big = 10u << 20;
    char *v = filled(big, 'v');
    proxy_status_t st;
    put("64k=%d", proxy_replace_header_map_value(REQ, "x-big", 5, v, 65536));
    put(" 64k+1=%d", proxy_replace_header_map_value(REQ, "x-big", 5, v, 65537));
    REPEAT(200, proxy_replace_header_map_value(REQ, "x-big", 5, v, big));
    free(v);
    return st;
}

static proxy_status_t t_limit_budget(void) {
    char *v = filled(65536, 'v');
    proxy_status_t st;
    REPEAT(1000, proxy_replace_header_map_value(REQ, "x-big", 5, v, 65536));
    free(v);
    return st;
}

static proxy_status_t t_limit_pairs(void) {
    char *v = filled(100 << 10, 'v');
    pw_pair_t pairs[] = {{"x-big", 5, v, 100 << 10}};
    char *data;
    size_t size;
    proxy_status_t st = pw_pairs_serialize(pairs, 1, &data, &size);
    free(v);
    if (st != PROXY_RESULT_OK)
        return st;
    st = proxy_set_header_map_pairs(REQ, data, size);
    free(data);
    return st;
}

static proxy_status_t t_limit_body(void) {
    char *v = filled(1 << 20, 'b');
    proxy_status_t st;
    REPEAT(40, proxy_set_buffer_bytes(PROXY_BUFFER_HTTP_REQUEST_BODY, 0, 0, v, 1 << 20));
    free(v);
    return st;
}

static proxy_status_t t_limit_property(void) {
    char *v = filled(1 << 20, 'p');
    proxy_status_t st;
    REPEAT(40, proxy_set_property("x", 1, v, 1 << 20));
    free(v);
    return st;
}

static proxy_status_t local_of(size_t n) {
    char *body = filled(n, 'b');
    proxy_status_t st =
        proxy_send_local_response(200, NULL, 0, body, n, NULL, 0, PROXY_GRPC_STATUS_NONE);
    free(body);
    return st;
}

static proxy_status_t t_limit_local_body(void) {
    return local_of(33u << 20);
}

static proxy_status_t t_limit_random(void) {
    uint8_t *buf = malloc(65537);
    __wasi_errno_t first = __wasi_random_get(buf, 65537), e;
    int calls = 0;
    while ((e = __wasi_random_get(buf, 65536)) == 0 && calls < 100000)
        calls++;
    put("calls=%d errno=%u", calls, e);
    free(buf);
    return (proxy_status_t)first;
}

static proxy_status_t local(uint32_t code, const char *body) {
    return proxy_send_local_response(code, NULL, 0, body, strlen(body), NULL, 0,
                                     PROXY_GRPC_STATUS_NONE);
}

static proxy_status_t t_local_bad_status(void) {
    static const uint32_t codes[] = {100, 101, 199, 600, 999, 0};
    for (size_t i = 0; i < sizeof codes / sizeof *codes; i++)
        put("%s%u=%d", SEP(), codes[i], local(codes[i], ""));
    put(" 204+body=%d", local(204, "x"));
    proxy_status_t st = local(304, "x");
    put(" 304+body=%d", st);
    return st;
}

static proxy_status_t t_local_204(void) {
    return local(204, "");
}

static proxy_status_t t_local_big_body(void) {
    return local_of(1u << 20);
}

static proxy_status_t status_to(const char *v) {
    return proxy_replace_header_map_value(RESP, ":status", 7, v, strlen(v));
}

static proxy_status_t t_status_write(void) {
    put("100=%d", status_to("100"));
    put(" add101=%d", proxy_add_header_map_value(RESP, ":status", 7, "101", 3));
    pw_pair_t pairs[] = {pw_pair(":status", "100"), pw_pair("x-a", "1")};
    char *data;
    size_t size;
    proxy_status_t st = pw_pairs_serialize(pairs, 2, &data, &size);
    if (st == PROXY_RESULT_OK)
        st = proxy_set_header_map_pairs(RESP, data, size);
    put(" pairs100=%d", st);
    put(" 600=%d", status_to("600"));
    put(" 20=%d", status_to("20"));
    put(" 2000=%d", status_to("2000"));
    st = status_to("200");
    put(" 200=%d", st);
    return st;
}

static proxy_status_t t_log_forge(void) {
    static const char msg[] = "a\nb\r\0c\td\x1b[31m";
    return proxy_log(PROXY_LOG_INFO, msg, sizeof msg - 1);
}

static proxy_status_t t_log_long(void) {
    char *x = filled(10000, 'x');
    proxy_status_t st = proxy_log(PROXY_LOG_INFO, x, 10000);
    free(x);
    return st;
}

static proxy_status_t t_log_flood(void) {
    char line[32];
    for (int i = 0; i < 100000; i++) {
        int n = pw_snprintf(line, sizeof line, "flood %d", i);
        proxy_log(PROXY_LOG_INFO, line, (size_t)n);
    }
    return PROXY_RESULT_OK;
}

static proxy_status_t t_wasi_forge(void) {
    __wasi_size_t n;
    __wasi_errno_t e = wasi_write(1, "l1\nl2\n", &n);
    char *y = filled(10000, 'y');
    __wasi_ciovec_t iov[2] = {{(const uint8_t *)y, 10000}, {(const uint8_t *)"\n", 1}};
    __wasi_errno_t e2 = __wasi_fd_write(2, iov, 2, &n);
    free(y);
    put("fd2=%u nwritten=%lu", e2, (unsigned long)n);
    return (proxy_status_t)e;
}

static const struct test {
    const char *name;
    proxy_status_t (*run)(void);
} tests[] = {
    {"log_badptr", t_log_badptr},
    {"get_header_badptr", t_get_header_badptr},
    {"get_header_missing", t_get_header_missing},
    {"get_pairs", put_pairs},
    {"add_header", t_add_header},
    {"replace_header", t_replace_header},
    {"remove_header", t_remove_header},
    {"set_pairs", t_set_pairs},
    {"time", t_time},
    {"log_level", t_log_level},
    {"property_name", t_property_name},
    {"property_root_id", t_property_root_id},
    {"property_vm_id", t_property_vm_id},
    {"property_path", t_property_path},
    {"property_trailing_nul", t_property_trailing_nul},
    {"property_unknown", t_property_unknown},
    {"config", t_config},
    {"config_clamp", t_config_clamp},
    {"buffer_bad_type", t_buffer_bad_type},
    {"out_badptr", t_out_badptr},
    {"local_response", t_local_response},
    {"unimplemented", t_unimplemented},
    {"effective_ctx_bad", t_effective_ctx_bad},
    {"wasi_write", t_wasi_write},
    {"random", t_random},
    {"limit_name", t_limit_name},
    {"limit_value", t_limit_value},
    {"limit_budget", t_limit_budget},
    {"limit_pairs", t_limit_pairs},
    {"limit_body", t_limit_body},
    {"limit_property", t_limit_property},
    {"limit_local_body", t_limit_local_body},
    {"limit_random", t_limit_random},
    {"local_bad_status", t_local_bad_status},
    {"local_204", t_local_204},
    {"local_big_body", t_local_big_body},
    {"status_write", t_status_write},
    {"log_forge", t_log_forge},
    {"log_long", t_log_long},
    {"log_flood", t_log_flood},
    {"wasi_forge", t_wasi_forge},
};

EXPORT(proxy_on_vm_start) uint32_t proxy_on_vm_start(uint32_t root_id, uint32_t size) {
    (void)root_id;
    (void)size;
    return 1;
}

EXPORT(proxy_on_configure) uint32_t proxy_on_configure(uint32_t root_id, uint32_t size) {
    (void)root_id;
    (void)size;
    return 1;
}

EXPORT(proxy_on_request_headers)
uint32_t proxy_on_request_headers(uint32_t ctx, uint32_t nheaders, uint32_t eos) {
    (void)ctx;
    (void)nheaders;
    (void)eos;
    char *name = NULL;
    size_t len = 0;
    if (proxy_get_header_map_value(REQ, "x-test", 6, &name, &len) != PROXY_RESULT_OK || !name)
        return PROXY_ACTION_CONTINUE;
    const struct test *t = NULL;
    for (size_t i = 0; i < sizeof tests / sizeof tests[0]; i++)
        if (strlen(tests[i].name) == len && memcmp(tests[i].name, name, len) == 0)
            t = &tests[i];
    value_len = 0;
    value[0] = '\0';
    if (!t) {
        pw_logf(PROXY_LOG_INFO, "result: %.*s unknown", (int)len, name);
    } else {
        proxy_status_t st = t->run();
        pw_logf(PROXY_LOG_INFO, "result: %s %d%s%s", t->name, st, value_len ? " " : "", value);
    }
    free(name);
    int local = t && (t->run == t_local_response || t->run == t_local_204 ||
                      t->run == t_local_big_body);
    return local ? PROXY_ACTION_PAUSE : PROXY_ACTION_CONTINUE;
}
