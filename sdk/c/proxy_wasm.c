/*
 * proxy_wasm.c -- the pwasm C SDK: ABI marker, allocator, helpers and (unless
 * built with -DPW_NO_DISPATCH) the exported callbacks that dispatch to the
 * plugin's `pw_plugin` table. See proxy_wasm.h and README.md.
 */
#include "proxy_wasm.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#ifdef __wasm__
#define PW_EXPORT(name) __attribute__((export_name(#name)))
#else
#define PW_EXPORT(name)
#endif

/* ------------------------------------------------------------------------ */
/* Module integration (docs/ABI.md §1.2, §1.4).                            */
/* ------------------------------------------------------------------------ */

/* ABI version marker: never called, its presence selects ABI 0.2.1. */
PW_EXPORT(proxy_abi_version_0_2_1) void proxy_abi_version_0_2_1(void) {}

/* The host asks for exactly `size` bytes per returned value. One hidden byte
 * more is reserved and set to NUL so returned text can be used as a C string;
 * the host never sees it. Returns 0 on failure (the host then answers
 * INVALID_MEMORY_ACCESS). */
static char *spare_raw_take(size_t size);
static int spare_raw_offered;

PW_EXPORT(proxy_on_memory_allocate) void *proxy_on_memory_allocate(size_t size) {
    if (size == SIZE_MAX)
        return NULL;
    if (spare_raw_offered) {
        spare_raw_offered = 0;
        char *spare = spare_raw_take(size);
        if (spare)
            return spare;
    }
    char *p = malloc(size + 1);
    if (p)
        p[size] = '\0';
    return p;
}

/* ------------------------------------------------------------------------ */
/* Formatting.                                                              */
/* ------------------------------------------------------------------------ */

struct pw_out {
    char *buf;
    size_t size; /* capacity including the NUL */
    size_t len;  /* length of the full output, written or not */
};

static void out_char(struct pw_out *o, char c) {
    if (o->len + 1 < o->size)
        o->buf[o->len] = c;
    o->len++;
}

static void out_repeat(struct pw_out *o, char c, int n) {
    while (n-- > 0)
        out_char(o, c);
}

static void out_bytes(struct pw_out *o, const char *s, size_t n) {
    if (o->len + n < o->size) { /* fits: no check per byte */
        char *d = o->buf + o->len;
        o->len += n;
        while (n--)
            *d++ = *s++;
        return;
    }
    while (n--)
        out_char(o, *s++);
}

#define FL_LEFT 1u
#define FL_ZERO 2u
#define FL_PLUS 4u
#define FL_SPACE 8u
#define FL_ALT 16u

/* One field: [sign/prefix][zero or space padding][digits], honouring the
 * width, the '-' flag and (for integers) the precision as a minimum number
 * of digits. `digits` is already converted. */
static void out_field(struct pw_out *o, const char *prefix, const char *digits, size_t ndigits,
                      int precision, int width, unsigned flags) {
    size_t plen = strlen(prefix);
    int zeros = precision > (int)ndigits ? precision - (int)ndigits : 0;
    int pad = width - (int)(plen + ndigits) - zeros;
    if (pad < 0)
        pad = 0;
    if (!(flags & FL_LEFT) && !(flags & FL_ZERO))
        out_repeat(o, ' ', pad);
    out_bytes(o, prefix, plen);
    if (!(flags & FL_LEFT) && (flags & FL_ZERO))
        out_repeat(o, '0', pad);
    out_repeat(o, '0', zeros);
    out_bytes(o, digits, ndigits);
    if (flags & FL_LEFT)
        out_repeat(o, ' ', pad);
}

/* Digits of v in `base`, written backwards from the end of buf[64]. */
static size_t utoa_rev(char *end, unsigned long long v, unsigned base, int upper) {
    const char *set = upper ? "0123456789ABCDEF" : "0123456789abcdef";
    size_t n = 0;
    do {
        *--end = set[v % base];
        v /= base;
        n++;
    } while (v);
    return n;
}

static void out_integer(struct pw_out *o, unsigned long long v, int negative, unsigned base,
                        int upper, int precision, int width, unsigned flags) {
    char buf[64];
    char *end = buf + sizeof buf;
    size_t n = (precision == 0 && v == 0) ? 0 : utoa_rev(end, v, base, upper);
    const char *prefix = "";
    if (negative)
        prefix = "-";
    else if (base == 10 && (flags & FL_PLUS))
        prefix = "+";
    else if (base == 10 && (flags & FL_SPACE))
        prefix = " ";
    else if (base == 16 && (flags & FL_ALT) && v)
        prefix = upper ? "0X" : "0x";
    else if (base == 8 && (flags & FL_ALT) && (n == 0 || end[-(long)n] != '0'))
        prefix = "0";
    if (precision >= 0)
        flags &= ~FL_ZERO;
    out_field(o, prefix, end - n, n, precision, width, flags);
}

/* Fixed-point doubles, good enough for logs: values below 1e19 as %f does
 * (up to 17 decimals, ties to even), larger ones as d.ddde+NN. */
static void out_double(struct pw_out *o, double d, int precision, int width, unsigned flags) {
    char buf[96];
    size_t n = 0;
    const char *prefix = "";
    if (d != d) {
        out_field(o, "", "nan", 3, -1, width, flags & ~FL_ZERO);
        return;
    }
    if (__builtin_signbit(d)) {
        prefix = "-";
        d = -d;
    } else if (flags & FL_PLUS) {
        prefix = "+";
    } else if (flags & FL_SPACE) {
        prefix = " ";
    }
    if (d > 1.7976931348623157e308) {
        out_field(o, prefix, "inf", 3, -1, width, flags & ~FL_ZERO);
        return;
    }
    if (precision < 0)
        precision = 6;
    if (precision > 17)
        precision = 17;
    int exp10 = 0;
    if (d >= 1e19) {
        while (d >= 10) {
            d /= 10;
            exp10++;
        }
    }
    double scale = 1;
    for (int i = 0; i < precision; i++)
        scale *= 10;
    unsigned long long ip = (unsigned long long)d;
    double scaled = (d - (double)ip) * scale;
    unsigned long long fp = (unsigned long long)scaled;
    double rest = scaled - (double)fp;
    if (rest > 0.5 || (rest == 0.5 && ((precision ? fp : ip) & 1))) {
        if (precision == 0 || (double)++fp >= scale) { /* carry into the integer part */
            fp = 0;
            ip++;
        }
    }
    char tmp[24];
    size_t k = utoa_rev(tmp + sizeof tmp, ip, 10, 0);
    memcpy(buf, tmp + sizeof tmp - k, k);
    n = k;
    if (precision > 0 || (flags & FL_ALT))
        buf[n++] = '.';
    if (precision > 0) {
        k = utoa_rev(tmp + sizeof tmp, fp, 10, 0);
        memset(buf + n, '0', (size_t)precision - k);
        memcpy(buf + n + precision - k, tmp + sizeof tmp - k, k);
        n += (size_t)precision;
    }
    if (exp10) {
        buf[n++] = 'e';
        buf[n++] = '+';
        k = utoa_rev(tmp + sizeof tmp, (unsigned)exp10, 10, 0);
        memcpy(buf + n, tmp + sizeof tmp - k, k);
        n += k;
    }
    out_field(o, prefix, buf, n, -1, width, flags);
}

enum { LEN_INT, LEN_CHAR, LEN_SHORT, LEN_LONG, LEN_LLONG, LEN_SIZE, LEN_MAX, LEN_PTRDIFF };

static unsigned long long arg_unsigned(va_list *ap, int len) {
    switch (len) {
    case LEN_CHAR: return (unsigned char)va_arg(*ap, unsigned);
    case LEN_SHORT: return (unsigned short)va_arg(*ap, unsigned);
    case LEN_LONG: return va_arg(*ap, unsigned long);
    case LEN_LLONG: return va_arg(*ap, unsigned long long);
    case LEN_SIZE: return va_arg(*ap, size_t);
    case LEN_MAX: return va_arg(*ap, uintmax_t);
    case LEN_PTRDIFF: return (unsigned long long)va_arg(*ap, ptrdiff_t);
    default: return va_arg(*ap, unsigned);
    }
}

static long long arg_signed(va_list *ap, int len) {
    switch (len) {
    case LEN_CHAR: return (signed char)va_arg(*ap, int);
    case LEN_SHORT: return (short)va_arg(*ap, int);
    case LEN_LONG: return va_arg(*ap, long);
    case LEN_LLONG: return va_arg(*ap, long long);
    case LEN_SIZE: return (long long)va_arg(*ap, size_t);
    case LEN_MAX: return va_arg(*ap, intmax_t);
    case LEN_PTRDIFF: return va_arg(*ap, ptrdiff_t);
    default: return va_arg(*ap, int);
    }
}

/* Reads a decimal number or `*` (taking an int argument). */
static int read_count(const char **fmt, va_list *ap) {
    int n = 0;
    if (**fmt == '*') {
        (*fmt)++;
        return va_arg(*ap, int);
    }
    while (**fmt >= '0' && **fmt <= '9')
        n = n * 10 + (*(*fmt)++ - '0');
    return n;
}

static int read_length(const char **fmt) {
    switch (*(*fmt)++) {
    case 'h':
        if (**fmt == 'h') {
            (*fmt)++;
            return LEN_CHAR;
        }
        return LEN_SHORT;
    case 'l':
        if (**fmt == 'l') {
            (*fmt)++;
            return LEN_LLONG;
        }
        return LEN_LONG;
    case 'z': return LEN_SIZE;
    case 'j': return LEN_MAX;
    case 't': return LEN_PTRDIFF;
    default: (*fmt)--; return LEN_INT;
    }
}

/* One conversion after its flags, width, precision and length. */
static void out_conversion(struct pw_out *o, char conv, int len, int precision, int width,
                           unsigned flags, va_list *ap) {
    switch (conv) {
    case 'd':
    case 'i': {
        long long v = arg_signed(ap, len);
        unsigned long long mag = v < 0 ? 0ull - (unsigned long long)v : (unsigned long long)v;
        out_integer(o, mag, v < 0, 10, 0, precision, width, flags);
        break;
    }
    case 'u': out_integer(o, arg_unsigned(ap, len), 0, 10, 0, precision, width, flags); break;
    case 'o': out_integer(o, arg_unsigned(ap, len), 0, 8, 0, precision, width, flags); break;
    case 'x':
    case 'X':
        out_integer(o, arg_unsigned(ap, len), 0, 16, conv == 'X', precision, width, flags);
        break;
    case 'p':
        out_integer(o, (uintptr_t)va_arg(*ap, void *), 0, 16, 0, precision, width, flags | FL_ALT);
        break;
    case 'c': {
        char c = (char)va_arg(*ap, int);
        out_field(o, "", &c, 1, -1, width, flags & ~FL_ZERO);
        break;
    }
    case 's': {
        const char *s = va_arg(*ap, const char *);
        if (!s)
            s = "(null)";
        size_t n = 0;
        while ((precision < 0 || n < (size_t)precision) && s[n])
            n++;
        out_field(o, "", s, n, -1, width, flags & ~FL_ZERO);
        break;
    }
    case 'f':
    case 'F':
    case 'e':
    case 'E':
    case 'g':
    case 'G':
    case 'a':
    case 'A': out_double(o, va_arg(*ap, double), precision, width, flags); break;
    default: /* unknown conversion: show it, consume nothing */
        out_char(o, '%');
        out_char(o, conv);
    }
}

/* Whether fmt has only plain conversions: %u, %d, %i, %s and %% without
 * flags, width, precision or length, the most common ones. */
static int plain_format(const char *fmt) {
    for (; *fmt; fmt++) {
        if (*fmt != '%')
            continue;
        char c = *++fmt;
        if (c != 'u' && c != 'd' && c != 'i' && c != 's' && c != '%')
            return 0;
    }
    return 1;
}

/* pw_vsnprintf for a plain_format() fmt, its state in locals (the general
 * path keeps it in memory, behind the pointer its helpers take): decimal
 * digits by 32-bit division by a constant, no field padding. */
static int plain_vsnprintf(char *buf, size_t size, const char *fmt, va_list ap) {
    size_t len = 0;
    char digits[11];
    for (; *fmt; fmt++) {
        const char *s = fmt;
        size_t n = 1;
        if (*fmt == '%') {
            char c = *++fmt;
            if (c == 's') {
                s = va_arg(ap, const char *);
                if (!s)
                    s = "(null)";
                n = strlen(s);
            } else if (c != '%') {
                uint32_t v;
                int negative = 0;
                if (c == 'u') {
                    v = (uint32_t)va_arg(ap, unsigned);
                } else {
                    int i = va_arg(ap, int);
                    negative = i < 0;
                    v = negative ? 0u - (uint32_t)i : (uint32_t)i;
                }
                char *end = digits + sizeof digits, *p = end;
                do {
                    *--p = (char)('0' + v % 10);
                    v /= 10;
                } while (v);
                if (negative)
                    *--p = '-';
                s = p;
                n = (size_t)(end - p);
            } else {
                s = fmt; /* "%%": the second '%' */
            }
        }
        for (size_t i = 0; i < n; i++, len++)
            if (len + 1 < size)
                buf[len] = s[i];
    }
    if (size)
        buf[len < size ? len : size - 1] = '\0';
    return len > INT32_MAX ? INT32_MAX : (int)len;
}

int pw_vsnprintf(char *buf, size_t size, const char *fmt, va_list ap_in) {
    if (plain_format(fmt)) {
        va_list ap;
        va_copy(ap, ap_in);
        int n = plain_vsnprintf(buf, size, fmt, ap);
        va_end(ap);
        return n;
    }
    struct pw_out o = {buf, size, 0};
    va_list ap;
    va_copy(ap, ap_in);
    while (*fmt) {
        if (*fmt != '%') {
            out_char(&o, *fmt++);
            continue;
        }
        fmt++;
        if (*fmt == '%') {
            out_char(&o, *fmt++);
            continue;
        }
        unsigned flags = 0;
        for (;; fmt++) {
            if (*fmt == '-')
                flags |= FL_LEFT;
            else if (*fmt == '0')
                flags |= FL_ZERO;
            else if (*fmt == '+')
                flags |= FL_PLUS;
            else if (*fmt == ' ')
                flags |= FL_SPACE;
            else if (*fmt == '#')
                flags |= FL_ALT;
            else
                break;
        }
        int width = read_count(&fmt, &ap);
        if (width < 0) {
            flags |= FL_LEFT;
            width = -width;
        }
        int precision = -1;
        if (*fmt == '.') {
            fmt++;
            precision = read_count(&fmt, &ap);
            if (precision < 0)
                precision = -1;
        }
        int len = read_length(&fmt);
        if (!*fmt)
            break;
        out_conversion(&o, *fmt++, len, precision, width, flags, &ap);
    }
    va_end(ap);
    if (size)
        buf[o.len < size ? o.len : size - 1] = '\0';
    return o.len > INT32_MAX ? INT32_MAX : (int)o.len;
}

int pw_snprintf(char *buf, size_t size, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    int n = pw_vsnprintf(buf, size, fmt, ap);
    va_end(ap);
    return n;
}

/* ------------------------------------------------------------------------ */
/* Logging, time.                                                           */
/* ------------------------------------------------------------------------ */

proxy_status_t pw_log(proxy_log_level_t level, const char *msg) {
    return proxy_log(level, msg, strlen(msg));
}

proxy_status_t pw_vlogf(proxy_log_level_t level, const char *fmt, va_list ap) {
    uint32_t host_level;
    if (proxy_get_log_level(&host_level) == PROXY_RESULT_OK && (uint32_t)level < host_level)
        return PROXY_RESULT_OK;
    char small[256];
    int n = pw_vsnprintf(small, sizeof small, fmt, ap);
    if ((size_t)n < sizeof small)
        return proxy_log(level, small, (size_t)n);
    char *big = malloc((size_t)n + 1);
    if (!big)
        return proxy_log(level, small, sizeof small - 1); /* truncated beats nothing */
    pw_vsnprintf(big, (size_t)n + 1, fmt, ap);
    proxy_status_t st = proxy_log(level, big, (size_t)n);
    free(big);
    return st;
}

proxy_status_t pw_logf(proxy_log_level_t level, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    proxy_status_t st = pw_vlogf(level, fmt, ap);
    va_end(ap);
    return st;
}

proxy_status_t pw_get_log_level(proxy_log_level_t *level) {
    uint32_t v = 0;
    proxy_status_t st = proxy_get_log_level(&v);
    *level = (proxy_log_level_t)v;
    return st;
}

proxy_status_t pw_get_current_time_ns(uint64_t *ns) {
    *ns = 0;
    return proxy_get_current_time_nanoseconds(ns);
}

/* ------------------------------------------------------------------------ */
/* Values returned by the host (§1.4).                                      */
/* ------------------------------------------------------------------------ */

/* After a hostcall that returned (data, size): on failure or for an empty
 * value, report (NULL, 0). Nothing is freed: a conforming host allocates only
 * for non-empty values on success (§1.4), and freeing a pointer a broken host
 * wrote anyway could corrupt the heap, where a leak cannot. */
static proxy_status_t returned(proxy_status_t st, char **data, size_t *size) {
    if (st != PROXY_RESULT_OK || *size == 0) {
        *data = NULL;
        *size = 0;
    }
    return st;
}

proxy_status_t pw_get_buffer(proxy_buffer_type_t type, uint32_t start, uint32_t max_size,
                             char **data, size_t *size) {
    *data = NULL;
    *size = 0;
    return returned(proxy_get_buffer_bytes(type, start, max_size, data, size), data, size);
}

proxy_status_t pw_get_buffer_status(proxy_buffer_type_t type, size_t *size, uint32_t *flags) {
    *size = 0;
    *flags = 0;
    return proxy_get_buffer_status(type, size, flags);
}

proxy_status_t pw_set_buffer(proxy_buffer_type_t type, uint32_t start, uint32_t len,
                             const char *data, size_t data_len) {
    return proxy_set_buffer_bytes(type, start, len, data_len ? data : NULL, data_len);
}

proxy_status_t pw_prepend_buffer(proxy_buffer_type_t type, const char *data, size_t data_len) {
    return pw_set_buffer(type, 0, 0, data, data_len);
}

proxy_status_t pw_append_buffer(proxy_buffer_type_t type, const char *data, size_t data_len) {
    return pw_set_buffer(type, PW_BUFFER_END, 0, data, data_len);
}

proxy_status_t pw_replace_buffer(proxy_buffer_type_t type, const char *data, size_t data_len) {
    return pw_set_buffer(type, 0, PW_BUFFER_END, data, data_len);
}

proxy_status_t pw_get_plugin_config(char **data, size_t *size) {
    return pw_get_buffer(PROXY_BUFFER_PLUGIN_CONFIGURATION, 0, UINT32_MAX, data, size);
}

proxy_status_t pw_get_vm_config(char **data, size_t *size) {
    return pw_get_buffer(PROXY_BUFFER_VM_CONFIGURATION, 0, UINT32_MAX, data, size);
}

/* ------------------------------------------------------------------------ */
/* Header maps.                                                             */
/* ------------------------------------------------------------------------ */

proxy_status_t pw_get_header(proxy_map_type_t map, const char *name, char **value, size_t *size) {
    *value = NULL;
    *size = 0;
    proxy_status_t st = proxy_get_header_map_value(map, name, strlen(name), value, size);
    return returned(st, value, size);
}

proxy_status_t pw_add_header(proxy_map_type_t map, const char *name, const char *value) {
    return proxy_add_header_map_value(map, name, strlen(name), value, strlen(value));
}

proxy_status_t pw_replace_header(proxy_map_type_t map, const char *name, const char *value) {
    return proxy_replace_header_map_value(map, name, strlen(name), value, strlen(value));
}

proxy_status_t pw_remove_header(proxy_map_type_t map, const char *name) {
    return proxy_remove_header_map_value(map, name, strlen(name));
}

static uint32_t load_u32(const char *p) {
    const unsigned char *b = (const unsigned char *)p;
    return (uint32_t)b[0] | (uint32_t)b[1] << 8 | (uint32_t)b[2] << 16 | (uint32_t)b[3] << 24;
}

static void store_u32(char *p, uint32_t v) {
    unsigned char *b = (unsigned char *)p;
    b[0] = (unsigned char)v;
    b[1] = (unsigned char)(v >> 8);
    b[2] = (unsigned char)(v >> 16);
    b[3] = (unsigned char)(v >> 24);
}

/* A plugin mostly reads one map at a time (pw_get_headers, then
 * pw_pairs_free): the SDK keeps a spare buffer for the serialised map
 * (raw, up to PW_SPARE_RAW bytes) and a spare array of up to PW_SPARE_PAIRS
 * pairs, each lent to one pw_pairs_t at a time and given back by
 * pw_pairs_free: reading a map then costs no malloc and no free. A map
 * read while they are lent, or larger, is malloc'ed as before. */
#define PW_SPARE_PAIRS 64
#define PW_SPARE_RAW (16u << 10)
static pw_pair_t *spare_pairs;
static int spare_lent;
static char *spare_raw;
static size_t spare_raw_cap;
static int spare_raw_lent;

/* For proxy_on_memory_allocate while pw_get_headers offers the spare: the
 * spare, grown to size + 1 bytes (the hidden NUL), or NULL. */
static char *spare_raw_take(size_t size) {
    if (spare_raw_lent || size >= PW_SPARE_RAW)
        return NULL;
    if (size + 1 > spare_raw_cap) {
        size_t cap = (size + 1 + 255) & ~(size_t)255;
        char *p = malloc(cap);
        if (!p)
            return NULL;
        free(spare_raw);
        spare_raw = p;
        spare_raw_cap = cap;
    }
    spare_raw_lent = 1;
    spare_raw[size] = '\0';
    return spare_raw;
}

static void raw_release(char *raw) {
    if (raw && raw == spare_raw)
        spare_raw_lent = 0;
    else
        free(raw);
}

static pw_pair_t *pairs_alloc(size_t n, int spare) {
    if (spare && !spare_lent && n <= PW_SPARE_PAIRS) {
        if (!spare_pairs)
            spare_pairs = malloc(PW_SPARE_PAIRS * sizeof *spare_pairs);
        if (spare_pairs) {
            spare_lent = 1;
            return spare_pairs;
        }
    }
    return malloc(n * sizeof(pw_pair_t));
}

static void pairs_release(pw_pair_t *p) {
    if (p && p == spare_pairs)
        spare_lent = 0;
    else
        free(p);
}

static proxy_status_t parse_pairs(const char *data, size_t size, pw_pair_t **pairs,
                                  size_t *count, int spare) {
    *pairs = NULL;
    *count = 0;
    if (!data || size == 0 || (size == 1 && data[0] == '\0'))
        return PROXY_RESULT_OK;
    if (size < 4)
        return PROXY_RESULT_PARSE_FAILURE;
    uint64_t n = load_u32(data);
    if (n == 0)
        return size == 4 ? PROXY_RESULT_OK : PROXY_RESULT_PARSE_FAILURE;
    if (n > (size - 4) / 8)
        return PROXY_RESULT_PARSE_FAILURE;
    pw_pair_t *out = pairs_alloc((size_t)n, spare);
    if (!out)
        return PROXY_RESULT_INTERNAL_FAILURE;
    uint64_t pos = 4 + 8 * n; /* first string */
    for (uint64_t i = 0; i < n; i++) {
        uint64_t klen = load_u32(data + 4 + 8 * i);
        uint64_t vlen = load_u32(data + 8 + 8 * i);
        if (pos + klen + 1 + vlen + 1 > size || data[pos + klen] != '\0' ||
            data[pos + klen + 1 + vlen] != '\0') {
            pairs_release(out);
            return PROXY_RESULT_PARSE_FAILURE;
        }
        out[i].key = data + pos;
        out[i].key_len = (size_t)klen;
        out[i].value = data + pos + klen + 1;
        out[i].value_len = (size_t)vlen;
        pos += klen + 1 + vlen + 1;
    }
    if (pos != size) {
        pairs_release(out);
        return PROXY_RESULT_PARSE_FAILURE;
    }
    *pairs = out;
    *count = (size_t)n;
    return PROXY_RESULT_OK;
}

proxy_status_t pw_pairs_parse(const char *data, size_t size, pw_pair_t **pairs, size_t *count) {
    return parse_pairs(data, size, pairs, count, 0); /* malloc'ed: the caller frees it */
}

proxy_status_t pw_pairs_serialize(const pw_pair_t *pairs, size_t count, char **data,
                                  size_t *size) {
    *data = NULL;
    *size = 0;
    uint64_t total = 4;
    for (size_t i = 0; i < count; i++)
        total += 8 + (uint64_t)pairs[i].key_len + 1 + pairs[i].value_len + 1;
    if (count > UINT32_MAX || total > SIZE_MAX / 2)
        return PROXY_RESULT_BAD_ARGUMENT;
    char *out = malloc((size_t)total);
    if (!out)
        return PROXY_RESULT_INTERNAL_FAILURE;
    store_u32(out, (uint32_t)count);
    char *s = out + 4 + 8 * count;
    for (size_t i = 0; i < count; i++) {
        store_u32(out + 4 + 8 * i, (uint32_t)pairs[i].key_len);
        store_u32(out + 8 + 8 * i, (uint32_t)pairs[i].value_len);
        memcpy(s, pairs[i].key, pairs[i].key_len);
        s += pairs[i].key_len;
        *s++ = '\0';
        memcpy(s, pairs[i].value, pairs[i].value_len);
        s += pairs[i].value_len;
        *s++ = '\0';
    }
    *data = out;
    *size = (size_t)total;
    return PROXY_RESULT_OK;
}

/* Completes a pw_pairs_t whose raw (size bytes) a getter returned with st. */
static proxy_status_t pairs_from(proxy_status_t st, size_t size, pw_pairs_t *out) {
    out->pairs = NULL;
    out->count = 0;
    if (st == PROXY_RESULT_OK)
        st = parse_pairs(out->raw, size, &out->pairs, &out->count, 1);
    if (st != PROXY_RESULT_OK)
        pw_pairs_free(out);
    return st;
}

proxy_status_t pw_get_headers(proxy_map_type_t map, pw_pairs_t *out) {
    size_t size = 0;
    out->raw = NULL;
    int lent = spare_raw_lent;
    spare_raw_offered = !lent;
    proxy_status_t st = proxy_get_header_map_pairs(map, &out->raw, &size);
    spare_raw_offered = 0;
    st = returned(st, &out->raw, &size);
    if (!lent && spare_raw_lent && out->raw != spare_raw)
        spare_raw_lent = 0; /* taken by the host, but not returned */
    return pairs_from(st, size, out);
}

proxy_status_t pw_set_headers(proxy_map_type_t map, const pw_pair_t *pairs, size_t count) {
    char *data;
    size_t size;
    proxy_status_t st = pw_pairs_serialize(pairs, count, &data, &size);
    if (st != PROXY_RESULT_OK)
        return st;
    st = proxy_set_header_map_pairs(map, data, size);
    free(data);
    return st;
}

void pw_pairs_free(pw_pairs_t *p) {
    pairs_release(p->pairs);
    raw_release(p->raw);
    p->pairs = NULL;
    p->raw = NULL;
    p->count = 0;
}

/* ------------------------------------------------------------------------ */
/* Local responses, properties, contexts, stream control.                  */
/* ------------------------------------------------------------------------ */

proxy_status_t pw_send_local_response(uint32_t status, const char *body, size_t body_len,
                                      const pw_pair_t *headers, size_t nheaders) {
    char *map;
    size_t map_size;
    proxy_status_t st = pw_pairs_serialize(headers, nheaders, &map, &map_size);
    if (st != PROXY_RESULT_OK)
        return st;
    st = proxy_send_local_response(status, NULL, 0, body, body_len, map, map_size,
                                   PROXY_GRPC_STATUS_NONE);
    free(map);
    return st;
}

proxy_status_t pw_property_path(const char *const *path, size_t nsegments, char **out,
                                size_t *len) {
    *out = NULL;
    *len = 0;
    if (nsegments == 0)
        return PROXY_RESULT_BAD_ARGUMENT;
    size_t total = nsegments - 1; /* separators */
    for (size_t i = 0; i < nsegments; i++)
        total += strlen(path[i]);
    char *joined = malloc(total + 1);
    if (!joined)
        return PROXY_RESULT_INTERNAL_FAILURE;
    char *p = joined;
    for (size_t i = 0; i < nsegments; i++) {
        size_t n = strlen(path[i]);
        memcpy(p, path[i], n);
        p += n;
        *p++ = '\0'; /* after the last one: not counted, not sent */
    }
    *out = joined;
    *len = total;
    return PROXY_RESULT_OK;
}

proxy_status_t pw_get_property(const char *const *path, size_t nsegments, char **value,
                               size_t *size) {
    char *joined;
    size_t len;
    *value = NULL;
    *size = 0;
    proxy_status_t st = pw_property_path(path, nsegments, &joined, &len);
    if (st != PROXY_RESULT_OK)
        return st;
    st = proxy_get_property(joined, len, value, size);
    free(joined);
    return returned(st, value, size);
}

proxy_status_t pw_get_property_string(const char *const *path, size_t nsegments, char **value,
                                      size_t *len) {
    proxy_status_t st = pw_get_property(path, nsegments, value, len);
    if (st == PROXY_RESULT_OK && !*value) {
        *value = calloc(1, 1);
        if (!*value)
            return PROXY_RESULT_INTERNAL_FAILURE;
    }
    return st; /* the allocator NUL-terminated non-empty values */
}

/* Fetches a property that must be exactly `want` bytes into out[want]. */
static proxy_status_t get_fixed(const char *const *path, size_t nsegments, unsigned char *out,
                                size_t want) {
    char *value;
    size_t size;
    proxy_status_t st = pw_get_property(path, nsegments, &value, &size);
    if (st == PROXY_RESULT_OK && size != want)
        st = PROXY_RESULT_PARSE_FAILURE;
    if (st == PROXY_RESULT_OK)
        memcpy(out, value, want);
    free(value);
    return st;
}

static uint64_t load_u64(const unsigned char *b) {
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--)
        v = v << 8 | b[i];
    return v;
}

proxy_status_t pw_get_property_uint64(const char *const *path, size_t nsegments, uint64_t *value) {
    unsigned char b[8];
    *value = 0;
    proxy_status_t st = get_fixed(path, nsegments, b, 8);
    if (st == PROXY_RESULT_OK)
        *value = load_u64(b);
    return st;
}

proxy_status_t pw_get_property_int64(const char *const *path, size_t nsegments, int64_t *value) {
    uint64_t u;
    proxy_status_t st = pw_get_property_uint64(path, nsegments, &u);
    *value = (int64_t)u; /* two's complement (wasm32 and every target we build for) */
    return st;
}

proxy_status_t pw_get_property_double(const char *const *path, size_t nsegments, double *value) {
    uint64_t u;
    proxy_status_t st = pw_get_property_uint64(path, nsegments, &u);
    memcpy(value, &u, sizeof *value);
    return st;
}

proxy_status_t pw_get_property_bool(const char *const *path, size_t nsegments, int *value) {
    unsigned char b = 0;
    proxy_status_t st = get_fixed(path, nsegments, &b, 1);
    *value = b != 0;
    return st;
}

proxy_status_t pw_get_property_pairs(const char *const *path, size_t nsegments, pw_pairs_t *out) {
    size_t size;
    proxy_status_t st = pw_get_property(path, nsegments, &out->raw, &size);
    return pairs_from(st, size, out);
}

proxy_status_t pw_set_property(const char *const *path, size_t nsegments, const char *value,
                               size_t len) {
    char *joined;
    size_t plen;
    proxy_status_t st = pw_property_path(path, nsegments, &joined, &plen);
    if (st != PROXY_RESULT_OK)
        return st;
    st = proxy_set_property(joined, plen, len ? value : NULL, len);
    free(joined);
    return st;
}

/* ------------------------------------------------------------------------ */
/* Shared data, shared queues, timer, metrics.                              */
/* ------------------------------------------------------------------------ */

proxy_status_t pw_get_shared_data(const char *key, char **value, size_t *size, uint32_t *cas) {
    uint32_t token = 0;
    *value = NULL;
    *size = 0;
    proxy_status_t st = proxy_get_shared_data(key, strlen(key), value, size, &token);
    if (cas)
        *cas = st == PROXY_RESULT_OK ? token : 0;
    return returned(st, value, size);
}

proxy_status_t pw_set_shared_data(const char *key, const char *value, size_t size, uint32_t cas) {
    /* A NULL pointer would delete: an empty value points somewhere. */
    return proxy_set_shared_data(key, strlen(key), value ? value : "", size, cas);
}

proxy_status_t pw_remove_shared_data(const char *key, uint32_t cas) {
    return proxy_set_shared_data(key, strlen(key), NULL, 0, cas);
}

proxy_status_t pw_get_shared_u64(const char *key, uint64_t *value, uint32_t *cas) {
    char *data;
    size_t size;
    *value = 0;
    proxy_status_t st = pw_get_shared_data(key, &data, &size, cas);
    if (st == PROXY_RESULT_OK && size != 8)
        st = PROXY_RESULT_PARSE_FAILURE;
    if (st == PROXY_RESULT_OK)
        *value = load_u64((const unsigned char *)data);
    free(data);
    return st;
}

proxy_status_t pw_shared_u64_add(const char *key, uint64_t delta, uint64_t *result) {
    proxy_status_t st = PROXY_RESULT_CAS_MISMATCH;
    for (int attempt = 0; attempt < PW_SHARED_RETRIES; attempt++) {
        uint64_t v;
        uint32_t cas;
        st = pw_get_shared_u64(key, &v, &cas);
        if (st == PROXY_RESULT_NOT_FOUND) {
            v = 0;
            cas = 0;
        } else if (st != PROXY_RESULT_OK) {
            return st;
        }
        v += delta;
        unsigned char b[8];
        for (int i = 0; i < 8; i++)
            b[i] = (unsigned char)(v >> (8 * i));
        st = pw_set_shared_data(key, (const char *)b, 8, cas);
        if (st == PROXY_RESULT_OK) {
            if (result)
                *result = v;
            return st;
        }
        if (st != PROXY_RESULT_CAS_MISMATCH)
            return st;
    }
    return st;
}

proxy_status_t pw_register_queue(const char *name, uint32_t *queue_id) {
    *queue_id = 0;
    return proxy_register_shared_queue(name, strlen(name), queue_id);
}

proxy_status_t pw_resolve_queue(const char *vm_id, const char *name, uint32_t *queue_id) {
    *queue_id = 0;
    if (!vm_id)
        vm_id = "";
    return proxy_resolve_shared_queue(vm_id, strlen(vm_id), name, strlen(name), queue_id);
}

proxy_status_t pw_enqueue(uint32_t queue_id, const char *data, size_t size) {
    return proxy_enqueue_shared_queue(queue_id, data ? data : "", size);
}

proxy_status_t pw_dequeue(uint32_t queue_id, char **data, size_t *size) {
    *data = NULL;
    *size = 0;
    return returned(proxy_dequeue_shared_queue(queue_id, data, size), data, size);
}

proxy_status_t pw_set_tick_period(uint32_t period_ms) {
    return proxy_set_tick_period_milliseconds(period_ms);
}

proxy_status_t pw_define_metric(proxy_metric_type_t type, const char *name, uint32_t *metric_id) {
    *metric_id = 0;
    return proxy_define_metric(type, name, strlen(name), metric_id);
}

proxy_status_t pw_increment_metric(uint32_t metric_id, int64_t delta) {
    return proxy_increment_metric(metric_id, delta);
}

proxy_status_t pw_record_metric(uint32_t metric_id, uint64_t value) {
    return proxy_record_metric(metric_id, value);
}

proxy_status_t pw_get_metric(uint32_t metric_id, uint64_t *value) {
    *value = 0;
    return proxy_get_metric(metric_id, value);
}

/* The context the host is running now (the dispatch sets it before each
 * callback; 0 without dispatch), and which context made each outstanding
 * call-out: its answer comes to the root, the plugin wants the caller. */
static uint32_t cur_ctx;

struct call_slot {
    uint32_t token, ctx;
    int unary; /* a unary gRPC call: proxy_grpc_close cancels it */
};
static struct call_slot *calls;
static size_t ncalls, calls_cap;

static void call_note(uint32_t token, int unary) {
    if (ncalls == calls_cap) {
        size_t cap = calls_cap ? calls_cap * 2 : 8;
        struct call_slot *n = realloc(calls, cap * sizeof *n);
        if (!n) {
            pw_logf(PROXY_LOG_ERROR, "pwasm sdk: cannot record call %u", token);
            return;
        }
        calls = n;
        calls_cap = cap;
    }
    calls[ncalls++] = (struct call_slot){token, cur_ctx, unary};
}

/* The context that made call `token` (0: unknown); forgotten when `done`. */
static uint32_t call_owner(uint32_t token, int done) {
    for (size_t i = 0; i < ncalls; i++)
        if (calls[i].token == token) {
            uint32_t ctx = calls[i].ctx;
            if (done)
                calls[i] = calls[--ncalls];
            return ctx;
        }
    return 0;
}

proxy_status_t pw_set_effective_context(uint32_t context_id) {
    proxy_status_t st = proxy_set_effective_context(context_id);
    if (st == PROXY_RESULT_OK)
        cur_ctx = context_id;
    return st;
}

proxy_status_t pw_http_call_with_trailers(const char *upstream, const pw_pair_t *headers,
                                          size_t nheaders, const char *body, size_t body_len,
                                          const pw_pair_t *trailers, size_t ntrailers,
                                          uint32_t timeout_ms, uint32_t *token) {
    char *map, *tmap = NULL;
    size_t map_size, tmap_size = 0;
    *token = 0;
    proxy_status_t st = pw_pairs_serialize(headers, nheaders, &map, &map_size);
    if (st != PROXY_RESULT_OK)
        return st;
    if (ntrailers) {
        st = pw_pairs_serialize(trailers, ntrailers, &tmap, &tmap_size);
        if (st != PROXY_RESULT_OK) {
            free(map);
            return st;
        }
    }
    st = proxy_http_call(upstream, strlen(upstream), map, map_size, body, body_len, tmap,
                         tmap_size, timeout_ms, token);
    free(map);
    free(tmap);
    if (st == PROXY_RESULT_OK)
        call_note(*token, 0);
    return st;
}

proxy_status_t pw_http_call(const char *upstream, const pw_pair_t *headers, size_t nheaders,
                            const char *body, size_t body_len, uint32_t timeout_ms,
                            uint32_t *token) {
    return pw_http_call_with_trailers(upstream, headers, nheaders, body, body_len, NULL, 0,
                                      timeout_ms, token);
}

static proxy_status_t grpc_start(const char *upstream, const char *service, const char *method,
                                 const pw_pair_t *metadata, size_t nmetadata,
                                 const char *message, size_t message_len, uint32_t timeout_ms,
                                 int stream, uint32_t *token) {
    char *map;
    size_t map_size;
    *token = 0;
    proxy_status_t st = pw_pairs_serialize(metadata, nmetadata, &map, &map_size);
    if (st != PROXY_RESULT_OK)
        return st;
    if (stream)
        st = proxy_grpc_stream(upstream, strlen(upstream), service, strlen(service), method,
                               strlen(method), map, map_size, token);
    else
        st = proxy_grpc_call(upstream, strlen(upstream), service, strlen(service), method,
                             strlen(method), map, map_size, message, message_len, timeout_ms,
                             token);
    free(map);
    if (st == PROXY_RESULT_OK)
        call_note(*token, !stream);
    return st;
}

proxy_status_t pw_grpc_call(const char *upstream, const char *service, const char *method,
                            const pw_pair_t *metadata, size_t nmetadata, const char *message,
                            size_t message_len, uint32_t timeout_ms, uint32_t *token) {
    return grpc_start(upstream, service, method, metadata, nmetadata, message, message_len,
                      timeout_ms, 0, token);
}

proxy_status_t pw_grpc_stream(const char *upstream, const char *service, const char *method,
                              const pw_pair_t *metadata, size_t nmetadata, uint32_t *token) {
    return grpc_start(upstream, service, method, metadata, nmetadata, NULL, 0, 0, 1, token);
}

proxy_status_t pw_grpc_send(uint32_t token, const char *message, size_t len, int end_of_stream) {
    return proxy_grpc_send(token, message, len, end_of_stream ? 1 : 0);
}

proxy_status_t pw_grpc_close(uint32_t token) {
    proxy_status_t st = proxy_grpc_close(token);
    if (st == PROXY_RESULT_OK) /* a unary call is cancelled: nothing follows */
        for (size_t i = 0; i < ncalls; i++)
            if (calls[i].token == token && calls[i].unary) {
                calls[i] = calls[--ncalls];
                break;
            }
    return st;
}

proxy_status_t pw_grpc_cancel(uint32_t token) {
    proxy_status_t st = proxy_grpc_cancel(token);
    if (st == PROXY_RESULT_OK)
        call_owner(token, 1);
    return st;
}

proxy_status_t pw_call_foreign(const char *name, const char *args, size_t len, char **result,
                               size_t *result_len) {
    *result = NULL;
    *result_len = 0;
    return proxy_call_foreign_function(name, strlen(name), args, len, result, result_len);
}

/* A protobuf varint of v at p; its length. */
static size_t pb_varint(char *p, size_t v) {
    size_t n = 0;
    do {
        p[n++] = (char)((v & 0x7f) | (v > 0x7f ? 0x80 : 0));
        v >>= 7;
    } while (v);
    return n;
}

proxy_status_t pw_set_envoy_filter_state(const char *path, const char *value) {
    /* SetEnvoyFilterStateArguments { string path = 1; string value = 2; } */
    size_t lp = strlen(path), lv = strlen(value);
    char *pb = malloc(lp + lv + 2 * 11);
    if (!pb)
        return PROXY_RESULT_INTERNAL_FAILURE;
    size_t n = 0;
    pb[n++] = 0x0a;
    n += pb_varint(pb + n, lp);
    memcpy(pb + n, path, lp);
    n += lp;
    pb[n++] = 0x12;
    n += pb_varint(pb + n, lv);
    memcpy(pb + n, value, lv);
    n += lv;
    char *res = NULL;
    size_t rlen = 0;
    proxy_status_t st = proxy_call_foreign_function("set_envoy_filter_state", 22, pb, n, &res,
                                                    &rlen);
    free(pb);
    free(res);
    return st;
}

proxy_status_t pw_get_status(uint32_t *code, char **message, size_t *len) {
    *code = 0;
    *message = NULL;
    *len = 0;
    return proxy_get_status(code, message, len);
}

proxy_status_t pw_continue_stream(proxy_stream_type_t type) {
    return proxy_continue_stream(type);
}

proxy_status_t pw_continue_request(void) {
    return proxy_continue_stream(PROXY_STREAM_HTTP_REQUEST);
}

proxy_status_t pw_continue_response(void) {
    return proxy_continue_stream(PROXY_STREAM_HTTP_RESPONSE);
}

proxy_status_t pw_close_stream(proxy_stream_type_t type) {
    return proxy_close_stream(type);
}

/* ------------------------------------------------------------------------ */
/* Text utilities.                                                          */
/* ------------------------------------------------------------------------ */

static int is_blank(char c) {
    return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

char *pw_trim(char *s) {
    while (is_blank(*s))
        s++;
    size_t n = strlen(s);
    while (n > 0 && is_blank(s[n - 1]))
        n--;
    s[n] = '\0';
    return s;
}

int pw_is_header_name(const char *s, size_t len) {
    if (len == 0)
        return 0;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        int alnum = (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
        if (!alnum && !strchr("!#$%&'*+-.^_`|~", c))
            return 0;
    }
    return 1;
}

#ifndef PW_NO_DISPATCH
/* ------------------------------------------------------------------------ */
/* Context table: context id -> root id and user data. Open addressing with */
/* linear probing; id 0 marks a free slot (the host never uses it, §8.1).   */
/* ------------------------------------------------------------------------ */

struct ctx_slot {
    uint32_t id;
    uint32_t root_id;
    void *data;
};

static struct ctx_slot *ctx_slots;
static size_t ctx_cap; /* power of two, or 0 */
static size_t ctx_count;

static size_t ctx_home(uint32_t id) {
    return (size_t)(id * 2654435761u) & (ctx_cap - 1);
}

static struct ctx_slot *ctx_find(uint32_t id) {
    if (id == 0 || ctx_cap == 0)
        return NULL;
    for (size_t i = ctx_home(id);; i = (i + 1) & (ctx_cap - 1)) {
        if (ctx_slots[i].id == id)
            return &ctx_slots[i];
        if (ctx_slots[i].id == 0)
            return NULL;
    }
}

static void ctx_place(struct ctx_slot s) {
    size_t i = ctx_home(s.id);
    while (ctx_slots[i].id != 0)
        i = (i + 1) & (ctx_cap - 1);
    ctx_slots[i] = s;
}

/* Keeps the load factor at most 1/2. */
static int ctx_grow(void) {
    size_t old_cap = ctx_cap;
    struct ctx_slot *old = ctx_slots;
    size_t cap = old_cap ? old_cap * 2 : 16;
    struct ctx_slot *slots = calloc(cap, sizeof *slots);
    if (!slots)
        return -1;
    ctx_slots = slots;
    ctx_cap = cap;
    for (size_t i = 0; i < old_cap; i++)
        if (old[i].id)
            ctx_place(old[i]);
    free(old);
    return 0;
}

static void ctx_insert(uint32_t id, uint32_t root_id) {
    struct ctx_slot *s = ctx_find(id);
    if (s) { /* the host repeated an id: start over */
        s->root_id = root_id;
        s->data = NULL;
        return;
    }
    if (id == 0 || ((ctx_count + 1) * 2 > ctx_cap && ctx_grow() != 0)) {
        pw_logf(PROXY_LOG_ERROR, "pwasm sdk: cannot record context %u", id);
        return;
    }
    struct ctx_slot n = {id, root_id, NULL};
    ctx_place(n);
    ctx_count++;
}

/* Removal with backward shift, so lookups never need tombstones. */
static void ctx_remove(uint32_t id) {
    struct ctx_slot *s = ctx_find(id);
    if (!s)
        return;
    size_t hole = (size_t)(s - ctx_slots);
    for (size_t i = (hole + 1) & (ctx_cap - 1); ctx_slots[i].id; i = (i + 1) & (ctx_cap - 1)) {
        size_t home = ctx_home(ctx_slots[i].id);
        /* The entry may move back into the hole unless its home lies
         * cyclically in (hole, i]. */
        if ((i > hole && (home <= hole || home > i)) || (i < hole && home <= hole && home > i)) {
            ctx_slots[hole] = ctx_slots[i];
            hole = i;
        }
    }
    ctx_slots[hole].id = 0;
    ctx_slots[hole].data = NULL;
    ctx_count--;
}

proxy_status_t pw_set_context_data(uint32_t context_id, void *data) {
    struct ctx_slot *s = ctx_find(context_id);
    if (!s)
        return PROXY_RESULT_NOT_FOUND;
    s->data = data;
    return PROXY_RESULT_OK;
}

void *pw_get_context_data(uint32_t context_id) {
    struct ctx_slot *s = ctx_find(context_id);
    return s ? s->data : NULL;
}

uint32_t pw_get_root_id(uint32_t context_id) {
    struct ctx_slot *s = ctx_find(context_id);
    return s ? s->root_id : 0;
}

static int is_root(uint32_t id) {
    return pw_get_root_id(id) == id;
}

/* ------------------------------------------------------------------------ */
/* Exported callbacks (docs/ABI.md §2), ABI 0.2.x arities.                 */
/* ------------------------------------------------------------------------ */

PW_EXPORT(proxy_on_context_create)
void proxy_on_context_create(uint32_t context_id, uint32_t parent_id) {
    cur_ctx = context_id;
    ctx_insert(context_id, parent_id ? parent_id : context_id);
    if (parent_id && pw_plugin.on_context_create)
        pw_plugin.on_context_create(context_id, parent_id);
}

PW_EXPORT(proxy_on_vm_start) uint32_t proxy_on_vm_start(uint32_t root_id, uint32_t size) {
    cur_ctx = root_id;
    return pw_plugin.on_vm_start ? pw_plugin.on_vm_start(root_id, size) != 0 : 1;
}

PW_EXPORT(proxy_on_configure) uint32_t proxy_on_configure(uint32_t root_id, uint32_t size) {
    cur_ctx = root_id;
    return pw_plugin.on_configure ? pw_plugin.on_configure(root_id, size) != 0 : 1;
}

PW_EXPORT(proxy_on_tick) void proxy_on_tick(uint32_t root_id) {
    cur_ctx = root_id;
    if (pw_plugin.on_tick)
        pw_plugin.on_tick(root_id);
}

PW_EXPORT(proxy_on_queue_ready) void proxy_on_queue_ready(uint32_t root_id, uint32_t queue_id) {
    cur_ctx = root_id;
    if (pw_plugin.on_queue_ready)
        pw_plugin.on_queue_ready(root_id, queue_id);
}

typedef proxy_action_t (*stream_cb)(uint32_t, size_t, int);

static uint32_t stream_call(stream_cb cb, uint32_t ctx, uint32_t n, uint32_t eos) {
    cur_ctx = ctx;
    return cb ? (uint32_t)cb(ctx, n, eos != 0) : PROXY_ACTION_CONTINUE;
}

PW_EXPORT(proxy_on_request_headers)
uint32_t proxy_on_request_headers(uint32_t ctx, uint32_t nheaders, uint32_t eos) {
    return stream_call(pw_plugin.on_request_headers, ctx, nheaders, eos);
}

PW_EXPORT(proxy_on_request_body)
uint32_t proxy_on_request_body(uint32_t ctx, uint32_t size, uint32_t eos) {
    return stream_call(pw_plugin.on_request_body, ctx, size, eos);
}

PW_EXPORT(proxy_on_response_headers)
uint32_t proxy_on_response_headers(uint32_t ctx, uint32_t nheaders, uint32_t eos) {
    return stream_call(pw_plugin.on_response_headers, ctx, nheaders, eos);
}

PW_EXPORT(proxy_on_response_body)
uint32_t proxy_on_response_body(uint32_t ctx, uint32_t size, uint32_t eos) {
    return stream_call(pw_plugin.on_response_body, ctx, size, eos);
}

typedef proxy_action_t (*trailers_cb)(uint32_t, size_t);

static uint32_t trailers_call(trailers_cb cb, uint32_t ctx, uint32_t n) {
    cur_ctx = ctx;
    return cb ? (uint32_t)cb(ctx, n) : PROXY_ACTION_CONTINUE;
}

PW_EXPORT(proxy_on_request_trailers)
uint32_t proxy_on_request_trailers(uint32_t ctx, uint32_t ntrailers) {
    return trailers_call(pw_plugin.on_request_trailers, ctx, ntrailers);
}

PW_EXPORT(proxy_on_response_trailers)
uint32_t proxy_on_response_trailers(uint32_t ctx, uint32_t ntrailers) {
    return trailers_call(pw_plugin.on_response_trailers, ctx, ntrailers);
}

PW_EXPORT(proxy_on_log) void proxy_on_log(uint32_t ctx) {
    cur_ctx = ctx;
    if (!is_root(ctx) && pw_plugin.on_log)
        pw_plugin.on_log(ctx);
}

PW_EXPORT(proxy_on_done) uint32_t proxy_on_done(uint32_t ctx) {
    cur_ctx = ctx;
    int (*cb)(uint32_t) = is_root(ctx) ? pw_plugin.on_root_done : pw_plugin.on_done;
    return cb ? cb(ctx) != 0 : 1;
}

PW_EXPORT(proxy_on_delete) void proxy_on_delete(uint32_t ctx) {
    cur_ctx = ctx;
    void (*cb)(uint32_t) = is_root(ctx) ? pw_plugin.on_root_delete : pw_plugin.on_delete;
    if (cb)
        cb(ctx);
    ctx_remove(ctx);
    /* its calls will not be answered (pwasm), or their answer is dropped */
    for (size_t i = 0; i < ncalls;)
        if (calls[i].ctx == ctx)
            calls[i] = calls[--ncalls];
        else
            i++;
}

/* The context that made call `token`, made effective; 0 when it is gone
 * (the answer is then dropped, as the Rust and Go SDKs do). */
static uint32_t call_context(uint32_t root_id, uint32_t token, int done) {
    uint32_t ctx = call_owner(token, done);
    if (!ctx || !ctx_find(ctx))
        return 0;
    cur_ctx = root_id;
    if (ctx != root_id && pw_set_effective_context(ctx) != PROXY_RESULT_OK)
        return 0;
    cur_ctx = ctx;
    return ctx;
}

PW_EXPORT(proxy_on_http_call_response)
void proxy_on_http_call_response(uint32_t root_id, uint32_t token, uint32_t nheaders,
                                 uint32_t body_size, uint32_t ntrailers) {
    uint32_t ctx = call_context(root_id, token, 1);
    if (ctx && pw_plugin.on_http_call_response)
        pw_plugin.on_http_call_response(ctx, token, nheaders, body_size, ntrailers);
}

PW_EXPORT(proxy_on_grpc_receive_initial_metadata)
void proxy_on_grpc_receive_initial_metadata(uint32_t root_id, uint32_t token, uint32_t n) {
    uint32_t ctx = call_context(root_id, token, 0);
    if (ctx && pw_plugin.on_grpc_initial_metadata)
        pw_plugin.on_grpc_initial_metadata(ctx, token, n);
}

PW_EXPORT(proxy_on_grpc_receive)
void proxy_on_grpc_receive(uint32_t root_id, uint32_t token, uint32_t size) {
    uint32_t ctx = call_context(root_id, token, 0);
    if (ctx && pw_plugin.on_grpc_receive)
        pw_plugin.on_grpc_receive(ctx, token, size);
}

PW_EXPORT(proxy_on_grpc_receive_trailing_metadata)
void proxy_on_grpc_receive_trailing_metadata(uint32_t root_id, uint32_t token, uint32_t n) {
    uint32_t ctx = call_context(root_id, token, 0);
    if (ctx && pw_plugin.on_grpc_trailing_metadata)
        pw_plugin.on_grpc_trailing_metadata(ctx, token, n);
}

PW_EXPORT(proxy_on_grpc_close)
void proxy_on_grpc_close(uint32_t root_id, uint32_t token, uint32_t status) {
    uint32_t ctx = call_context(root_id, token, 1);
    if (ctx && pw_plugin.on_grpc_close)
        pw_plugin.on_grpc_close(ctx, token, status);
}

/* TCP stream contexts (§8.3). */
PW_EXPORT(proxy_on_new_connection) uint32_t proxy_on_new_connection(uint32_t ctx) {
    cur_ctx = ctx;
    return pw_plugin.on_new_connection ? (uint32_t)pw_plugin.on_new_connection(ctx)
                                       : PROXY_ACTION_CONTINUE;
}

PW_EXPORT(proxy_on_downstream_data)
uint32_t proxy_on_downstream_data(uint32_t ctx, uint32_t size, uint32_t eos) {
    return stream_call(pw_plugin.on_downstream_data, ctx, size, eos);
}

PW_EXPORT(proxy_on_upstream_data)
uint32_t proxy_on_upstream_data(uint32_t ctx, uint32_t size, uint32_t eos) {
    return stream_call(pw_plugin.on_upstream_data, ctx, size, eos);
}

PW_EXPORT(proxy_on_downstream_connection_close)
void proxy_on_downstream_connection_close(uint32_t ctx, uint32_t peer) {
    cur_ctx = ctx;
    if (pw_plugin.on_downstream_close)
        pw_plugin.on_downstream_close(ctx, (proxy_peer_type_t)peer);
}

PW_EXPORT(proxy_on_upstream_connection_close)
void proxy_on_upstream_connection_close(uint32_t ctx, uint32_t peer) {
    cur_ctx = ctx;
    if (pw_plugin.on_upstream_close)
        pw_plugin.on_upstream_close(ctx, (proxy_peer_type_t)peer);
}
#endif /* PW_NO_DISPATCH */
