/*
 * trace.c -- hostcalls as `pwasm run --trace` prints them, like strace:
 *
 *   proxy_get_header_map_value(map=request_headers, key="x-id") -> Ok, value="42"
 *   proxy_http_call(upstream="auth", ...) -> Unimplemented (not implemented in pwasm yet)
 *
 * Arguments are decoded from the plugin's memory (strings, serialized maps,
 * property paths); values the host returned through out-pointers are read
 * back after the call.
 */
#include <string.h>

#include "cli.h"

const uint8_t *guest_memory(pw_vm *vm, uint64_t *size) {
    size_t n = 0;
    const uint8_t *base = vm ? pw_vm_memory(vm, &n) : NULL;
    *size = n;
    return base;
}

/* Arguments are decoded as the registry says (pw_hostcall_info.arguments
 * in pwasm.h: a kind letter and a name per parameter). */

static const char *enum_name(char code, uint64_t v) {
    static const char *const maps[] = {"request_headers",
                                       "request_trailers",
                                       "response_headers",
                                       "response_trailers",
                                       "grpc_initial_metadata",
                                       "grpc_trailing_metadata",
                                       "http_call_response_headers",
                                       "http_call_response_trailers"};
    static const char *const bufs[] = {
        "request_body",     "response_body",           "downstream_data",
        "upstream_data",    "http_call_response_body", "grpc_receive_buffer",
        "vm_configuration", "plugin_configuration",    "call_data"};
    static const char *const streams[] = {"request", "response", "downstream", "upstream"};
    static const char *const metrics[] = {"counter", "gauge", "histogram"};
    switch (code) {
    case 'L':
        return v < 6 ? log_level_name((int)v) : NULL;
    case 'M':
        return v < 8 ? maps[v] : NULL;
    case 'B':
        return v < 9 ? bufs[v] : NULL;
    case 'S':
        return v < 4 ? streams[v] : NULL;
    case 'T':
        return v < 3 ? metrics[v] : NULL;
    }
    return NULL;
}

/* [ptr, ptr+len) of guest memory, or NULL. */
static const uint8_t *mem(pw_vm *vm, uint64_t ptr, uint64_t len) {
    uint64_t size;
    const uint8_t *base = guest_memory(vm, &size);
    if (!base || ptr > size || len > size - ptr)
        return NULL;
    return base + ptr;
}

static uint32_t le32(const uint8_t *p) {
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static int get_u32(pw_vm *vm, uint64_t ptr, uint32_t *v) {
    const uint8_t *p = mem(vm, ptr, 4);
    if (!p)
        return -1;
    *v = le32(p);
    return 0;
}

/* As mem(), or says why not in out. */
static const uint8_t *guest(buf *out, pw_vm *vm, uint64_t ptr, uint64_t len) {
    const uint8_t *p = mem(vm, ptr, len);
    if (!p)
        buf_printf(out, "<bad pointer 0x%llx+%llu>", (unsigned long long)ptr,
                   (unsigned long long)len);
    return p;
}

static void put_string(buf *out, pw_vm *vm, uint64_t ptr, uint64_t len) {
    const uint8_t *p = guest(out, vm, ptr, len);
    if (!p)
        return;
    buf_puts(out, "\"");
    buf_escape(out, (const char *)p, len, 120);
    buf_puts(out, "\"");
}

/* §6.1 serialized pairs, decoded without trusting them. */
static void put_pairs(buf *out, pw_vm *vm, uint64_t ptr, uint64_t len) {
    const uint8_t *p = guest(out, vm, ptr, len);
    if (!p)
        return;
    if (len <= 1 || (len == 4 && !p[0] && !p[1] && !p[2] && !p[3])) {
        buf_puts(out, "{}");
        return;
    }
    uint32_t n = le32(p);
    uint64_t at = 4 + 8 * (uint64_t)n;
    if (len < 4 || at > len) {
        buf_printf(out, "<malformed pairs, %llu bytes>", (unsigned long long)len);
        return;
    }
    buf_puts(out, "{");
    for (uint32_t i = 0; i < n; i++) {
        const uint8_t *l = p + 4 + 8 * i;
        uint32_t kl = le32(l), vl = le32(l + 4);
        if (at + kl + 1 + vl + 1 > len) {
            buf_puts(out, "<truncated>");
            break;
        }
        if (i == 8) {
            buf_printf(out, "... (%u pairs)", n);
            break;
        }
        buf_puts(out, i ? ", \"" : "\"");
        buf_escape(out, (const char *)p + at, kl, 60);
        buf_puts(out, "\": \"");
        buf_escape(out, (const char *)p + at + kl + 1, vl, 60);
        buf_puts(out, "\"");
        at += (uint64_t)kl + 1 + vl + 1;
    }
    buf_puts(out, "}");
}

/* "request.path" from "request\0path" (one trailing NUL dropped). */
static void put_path(buf *out, pw_vm *vm, uint64_t ptr, uint64_t len) {
    const uint8_t *p = guest(out, vm, ptr, len);
    if (!p)
        return;
    if (len && !p[len - 1])
        len--;
    buf_puts(out, "\"");
    for (uint64_t i = 0; i < len; i++)
        if (p[i])
            buf_escape(out, (const char *)p + i, 1, 0);
        else
            buf_puts(out, ".");
    buf_puts(out, "\"");
}

static void put_iovecs(buf *out, pw_vm *vm, uint64_t ptr, uint64_t n) {
    buf_puts(out, "\"");
    for (uint64_t i = 0; i < n && i < 16; i++) {
        uint32_t base, len;
        if (get_u32(vm, ptr + 8 * i, &base) || get_u32(vm, ptr + 8 * i + 4, &len))
            break;
        const uint8_t *p = mem(vm, base, len);
        if (p)
            buf_escape(out, (const char *)p, len, 120);
    }
    buf_puts(out, "\"");
}

static const char *wasi_errno_name(uint64_t e) {
    switch (e) {
    case 0:
        return "SUCCESS";
    case 8:
        return "BADF";
    case 21:
        return "FAULT";
    case 28:
        return "INVAL";
    case 44:
        return "NOENT";
    case 52:
        return "NOSYS";
    case 58:
        return "NOTSUP";
    case 76:
        return "NOTCAPABLE";
    }
    return "?";
}

void trace_format(buf *out, pw_vm *vm, const char *module, const char *name, const uint64_t *args,
                  size_t nargs, uint64_t result) {
    int env = !strcmp(module, "env");
    const pw_hostcall_info *hc = pw_hostcall_find(module, name);
    const char *params = hc ? hc->arguments : NULL;
    if (!env)
        buf_printf(out, "%s.", module);
    buf_printf(out, "%s(", name);
    /* Out-parameters are printed after the result, once we know it. */
    buf outs = {0};
    int ok = env ? result == PROXY_RESULT_OK : result == 0;
    size_t a = 0;
    int first = 1;
    const char *p = params;
    while (p && *p && a < nargs) {
        char code = *p;
        const char *pname = p + 2, *end = strchr(pname, ',');
        int nl = (int)(end ? end - pname : (long)strlen(pname));
        p = end ? end + 1 : pname + nl;
        int two = strchr("spPoOV", code) != NULL;
        if (two && a + 1 >= nargs)
            break;
        uint64_t v = args[a], w = two ? args[a + 1] : 0;
        a += two ? 2 : 1;
        if (strchr("uUoO", code)) {
            if (!ok)
                continue;
            buf_printf(&outs, ", %.*s=", nl, pname);
            uint32_t u, u2;
            if (code == 'u') {
                if (get_u32(vm, v, &u))
                    buf_puts(&outs, "<bad pointer>");
                else
                    buf_printf(&outs, "%u", u);
            } else if (code == 'U') {
                const uint8_t *q = mem(vm, v, 8);
                uint64_t x = 0;
                for (int i = 0; q && i < 8; i++)
                    x |= (uint64_t)q[i] << (8 * i);
                if (q)
                    buf_printf(&outs, "%llu", (unsigned long long)x);
                else
                    buf_puts(&outs, "<bad pointer>");
            } else if (get_u32(vm, v, &u) || get_u32(vm, w, &u2)) {
                buf_puts(&outs, "<bad pointer>");
            } else if (code == 'o') {
                put_string(&outs, vm, u, u2);
            } else {
                put_pairs(&outs, vm, u, u2);
            }
            continue;
        }
        buf_printf(out, "%s%.*s=", first ? "" : ", ", nl, pname);
        first = 0;
        const char *en;
        switch (code) {
        case 's':
            /* The one string whose NULL pointer means something: a
             * delete (the Rust SDK's remove_shared_data). */
            if (v == 0 && !strcmp(name, "proxy_set_shared_data") && nl == 5 &&
                !strncmp(pname, "value", 5))
                buf_puts(out, "NULL");
            else
                put_string(out, vm, v, w);
            break;
        case 'p':
            put_pairs(out, vm, v, w);
            break;
        case 'P':
            put_path(out, vm, v, w);
            break;
        case 'V':
            put_iovecs(out, vm, v, w);
            break;
        case 'x':
            buf_printf(out, "0x%llx", (unsigned long long)v);
            break;
        case 'D':
            buf_printf(out, "%lld", (long long)v);
            break;
        case 'g':
            buf_printf(out, "%d", (int32_t)(uint32_t)v);
            break;
        case 'L':
        case 'M':
        case 'B':
        case 'S':
        case 'T':
            en = enum_name(code, v);
            if (en)
                buf_puts(out, en);
            else
                buf_printf(out, "%llu", (unsigned long long)v);
            break;
        default:
            buf_printf(out, "%llu", (unsigned long long)v);
        }
    }
    /* Unknown functions, or arguments left over: print them raw. */
    for (; a < nargs; a++) {
        buf_printf(out, "%s%llu", first ? "" : ", ", (unsigned long long)args[a]);
        first = 0;
    }
    buf_puts(out, ")");
    if (hc && hc->signature[strlen(hc->signature) - 1] == ':') { /* no result */
        buf_puts(out, " -> ()");
    } else if (env) {
        const char *sn = status_name((uint32_t)result);
        if (!strncmp(name, "proxy_", 6) || sn) {
            buf_printf(out, " -> %s", sn ? sn : "?");
            if (!sn)
                buf_printf(out, " (%llu)", (unsigned long long)result);
        } else {
            buf_printf(out, " -> %llu", (unsigned long long)result);
        }
        if (result == PROXY_RESULT_UNIMPLEMENTED && !strncmp(name, "proxy_", 6))
            buf_puts(out, " (not implemented in pwasm yet)");
    } else {
        buf_printf(out, " -> errno %llu (%s)", (unsigned long long)result,
                   wasi_errno_name(result));
    }
    if (outs.len)
        buf_put(out, outs.p, outs.len);
    buf_free(&outs);
}

void trace_property(buf *out, pw_vm *vm, const uint64_t *args, uint64_t result) {
    put_path(out, vm, args[0], args[1]);
    const char *sn = status_name((uint32_t)result);
    buf_printf(out, " -> %s", sn ? sn : "?");
    uint32_t p, n;
    if (result == PROXY_RESULT_OK && !get_u32(vm, args[2], &p) && !get_u32(vm, args[3], &n)) {
        buf_puts(out, " ");
        put_string(out, vm, p, n);
    }
}
