/* util.c -- buffers, arenas, files, escaping, regexes, diffs, names. */
#include <errno.h>
#include <regex.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "cli.h"

/* ------------------------------------------------------------- memory */

static void oom(void) {
    fputs("pwasm: out of memory\n", stderr);
    exit(2);
}

void *xmalloc(size_t n) {
    void *p = malloc(n ? n : 1);
    if (!p)
        oom();
    return p;
}

void *xrealloc(void *p, size_t n) {
    p = realloc(p, n ? n : 1);
    if (!p)
        oom();
    return p;
}

char *xstrdup(const char *s) {
    size_t n = strlen(s) + 1;
    return memcpy(xmalloc(n), s, n);
}

/* ------------------------------------------------------------- buffers */

static void buf_grow(buf *b, size_t more) {
    if (b->len + more + 1 <= b->cap)
        return;
    size_t cap = b->cap ? b->cap : 64;
    while (cap < b->len + more + 1)
        cap *= 2;
    b->p = xrealloc(b->p, cap);
    b->cap = cap;
}

void buf_put(buf *b, const void *data, size_t len) {
    buf_grow(b, len);
    if (len)
        memcpy(b->p + b->len, data, len);
    b->len += len;
    b->p[b->len] = 0;
}

void buf_puts(buf *b, const char *s) {
    buf_put(b, s, strlen(s));
}

void buf_printf(buf *b, const char *fmt, ...) {
    char small[256];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(small, sizeof small, fmt, ap);
    va_end(ap);
    if (n < 0)
        return;
    if ((size_t)n < sizeof small) {
        buf_put(b, small, (size_t)n);
        return;
    }
    buf_grow(b, (size_t)n);
    va_start(ap, fmt);
    vsnprintf(b->p + b->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    b->len += (size_t)n;
}

void buf_clear(buf *b) {
    b->len = 0;
    if (b->p)
        b->p[0] = 0;
}

void buf_free(buf *b) {
    free(b->p);
    *b = (buf){0};
}

/* Length of the well-formed UTF-8 sequence at s[0..n) (RFC 3629: no
 * overlongs, surrogates or code points past U+10FFFF), 0 if none. */
static size_t utf8_len(const unsigned char *s, size_t n) {
    size_t len = s[0] >= 0xc2 && s[0] <= 0xdf   ? 2
                 : s[0] >= 0xe0 && s[0] <= 0xef ? 3
                 : s[0] >= 0xf0 && s[0] <= 0xf4 ? 4
                                                : 0;
    if (!len || len > n)
        return 0;
    unsigned char lo = s[0] == 0xe0 ? 0xa0 : s[0] == 0xf0 ? 0x90 : 0x80;
    unsigned char hi = s[0] == 0xed ? 0x9f : s[0] == 0xf4 ? 0x8f : 0xbf;
    if (s[1] < lo || s[1] > hi)
        return 0;
    for (size_t i = 2; i < len; i++)
        if (s[i] < 0x80 || s[i] > 0xbf)
            return 0;
    return len;
}

/* Text stays as it is, UTF-8 included; any other byte >= 0x80 is written
 * as \xHH, so that the output is always valid UTF-8. */
static void escape(buf *b, const char *s, size_t len, size_t max, int all) {
    size_t n = max && len > max ? max : len;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c >= 0x80) {
            size_t u = utf8_len((const unsigned char *)s + i, n - i);
            if (u) {
                buf_put(b, &s[i], u);
                i += u - 1;
            } else {
                buf_printf(b, "\\x%02x", c);
            }
            continue;
        }
        if (c == '\n')
            buf_puts(b, "\\n");
        else if (c == '\t')
            buf_puts(b, "\\t");
        else if (c == '\r')
            buf_puts(b, "\\r");
        else if (all && (c == '\\' || c == '"'))
            buf_printf(b, "\\%c", c);
        else if (c < 0x20 || c == 0x7f)
            buf_printf(b, "\\x%02x", c);
        else
            buf_put(b, &s[i], 1);
    }
    if (n < len)
        buf_printf(b, "...(%zu bytes)", len);
}

void buf_escape(buf *b, const char *s, size_t len, size_t max) {
    escape(b, s, len, max, 1);
}

void buf_escape_ctl(buf *b, const char *s, size_t len, size_t max) {
    escape(b, s, len, max, 0);
}

void buf_json_str(buf *b, const char *s, size_t len) {
    buf_puts(b, "\"");
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '"' || c == '\\')
            buf_printf(b, "\\%c", c);
        else if (c == '\n')
            buf_puts(b, "\\n");
        else if (c == '\t')
            buf_puts(b, "\\t");
        else if (c == '\r')
            buf_puts(b, "\\r");
        else if (c < 0x20 || c == 0x7f)
            buf_printf(b, "\\u%04x", c);
        else
            buf_put(b, &s[i], 1);
    }
    buf_puts(b, "\"");
}

/* -------------------------------------------------------------- arenas */

struct arena_block {
    struct arena_block *next;
    size_t used, cap;
    max_align_t data[];
};

void *arena_alloc(arena *a, size_t n) {
    n = (n + sizeof(max_align_t) - 1) & ~(sizeof(max_align_t) - 1);
    struct arena_block *b = a->head;
    if (!b || b->cap - b->used < n) {
        /* Reuse a kept block after a reset when it is big enough. */
        size_t cap = n > 16384 ? n : 16384;
        b = xmalloc(sizeof *b + cap);
        b->cap = cap;
        b->used = 0;
        b->next = a->head;
        a->head = b;
    }
    void *p = (char *)b->data + b->used;
    b->used += n;
    return p;
}

pw_str arena_dup(arena *a, const char *s, size_t len) {
    char *p = arena_alloc(a, len + 1);
    if (len)
        memcpy(p, s, len);
    p[len] = 0;
    return (pw_str){p, len};
}

char *arena_strdup(arena *a, const char *s) {
    return (char *)arena_dup(a, s, strlen(s)).data;
}

void arena_reset(arena *a) {
    /* Keep the newest block (usually large enough for the next round). */
    struct arena_block *b = a->head;
    if (!b)
        return;
    struct arena_block *rest = b->next;
    b->next = NULL;
    b->used = 0;
    while (rest) {
        struct arena_block *n = rest->next;
        free(rest);
        rest = n;
    }
}

void arena_free(arena *a) {
    arena_reset(a);
    free(a->head);
    a->head = NULL;
}

/* --------------------------------------------------------------- files */

int read_file(const char *path, uint8_t **out, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f)
        return -1;
    size_t cap = 1 << 16, n = 0;
    uint8_t *b = xmalloc(cap);
    for (;;) {
        if (n + 1 >= cap)
            b = xrealloc(b, cap *= 2);
        size_t r = fread(b + n, 1, cap - n - 1, f);
        if (!r)
            break;
        n += r;
    }
    int bad = ferror(f);
    fclose(f);
    if (bad) {
        free(b);
        errno = EIO;
        return -1;
    }
    b[n] = 0;
    *out = b;
    *len = n;
    return 0;
}

int read_arg_value(const char *arg, char **out, size_t *len, char *err, size_t errlen) {
    if (arg[0] != '@') {
        *out = xstrdup(arg);
        *len = strlen(arg);
        return 0;
    }
    uint8_t *data;
    if (read_file(arg + 1, &data, len) != 0) {
        snprintf(err, errlen, "cannot read %s: %s", arg + 1, strerror(errno));
        return -1;
    }
    *out = (char *)data;
    return 0;
}

/* -------------------------------------------------------------- regexes */

int regex_find(const char *pattern, const char *text, size_t len, char *err, size_t errlen) {
    regex_t re;
    int rc = regcomp(&re, pattern, REG_EXTENDED | REG_NOSUB);
    if (rc != 0) {
        char msg[256];
        regerror(rc, &re, msg, sizeof msg);
        snprintf(err, errlen, "bad regular expression \"%s\": %s", pattern, msg);
        return -1;
    }
    regmatch_t m[1] = {{.rm_so = 0, .rm_eo = (regoff_t)len}};
    rc = regexec(&re, text, 1, m, REG_STARTEND);
    regfree(&re);
    return rc == 0;
}

/* --------------------------------------------------------------- diffs */

typedef struct line {
    const char *p;
    size_t len;
} line;

static size_t split_lines(const char *s, size_t len, line **out) {
    size_t n = 0, cap = 8;
    line *v = xmalloc(cap * sizeof *v);
    size_t start = 0;
    for (size_t i = 0; i <= len; i++) {
        if (i == len || s[i] == '\n') {
            if (i == len && start == len && n > 0)
                break; /* text ending with a newline: no empty last line */
            if (n == cap)
                v = xrealloc(v, (cap *= 2) * sizeof *v);
            v[n++] = (line){s + start, i - start};
            start = i + 1;
        }
    }
    *out = v;
    return n;
}

static void diff_line(buf *out, const char *indent, const char *mark, line l) {
    buf_printf(out, "%s%s", indent, mark);
    buf_escape(out, l.p, l.len, 200);
    buf_puts(out, "\n");
}

void diff_lines(buf *out, const char *indent, const char *expected, size_t elen,
                const char *actual, size_t alen) {
    line *a, *b;
    size_t n = split_lines(expected, elen, &a), m = split_lines(actual, alen, &b);
    /* Longest common subsequence; texts in tests are small. Beyond 2000
     * lines, print both sides whole. */
    if (n > 2000 || m > 2000) {
        for (size_t i = 0; i < n; i++)
            diff_line(out, indent, "- ", a[i]);
        for (size_t j = 0; j < m; j++)
            diff_line(out, indent, "+ ", b[j]);
        free(a);
        free(b);
        return;
    }
    uint32_t *t = calloc((n + 1) * (m + 1), sizeof *t);
    if (!t) {
        free(a);
        free(b);
        return;
    }
#define T(i, j) t[(i) * (m + 1) + (j)]
#define EQ(i, j) (a[i].len == b[j].len && !memcmp(a[i].p, b[j].p, a[i].len))
    for (size_t i = n; i-- > 0;)
        for (size_t j = m; j-- > 0;)
            T(i, j) = EQ(i, j) ? T(i + 1, j + 1) + 1
                               : (T(i + 1, j) > T(i, j + 1) ? T(i + 1, j) : T(i, j + 1));
    size_t i = 0, j = 0;
    while (i < n || j < m) {
        if (i < n && j < m && EQ(i, j)) {
            diff_line(out, indent, "  ", a[i]);
            i++;
            j++;
        } else if (i < n && (j == m || T(i + 1, j) >= T(i, j + 1))) {
            diff_line(out, indent, "- ", a[i++]);
        } else {
            diff_line(out, indent, "+ ", b[j++]);
        }
    }
#undef T
#undef EQ
    free(t);
    free(a);
    free(b);
}

/* --------------------------------------------------------------- names */

const char *status_name(uint32_t st) {
    static const char *const names[] = {
        "Ok",           "NotFound",       "BadArgument",         "SerializationFailure",
        "ParseFailure", "BadExpression",  "InvalidMemoryAccess", "Empty",
        "CasMismatch",  "ResultMismatch", "InternalFailure",     "BrokenConnection",
        "Unimplemented"};
    return st < sizeof names / sizeof *names ? names[st] : NULL;
}

static const char *const level_names[] = {"trace", "debug", "info", "warn", "error", "critical"};

const char *log_level_name(int level) {
    return level >= 0 && level < 6 ? level_names[level] : "?";
}

int log_level_parse(const char *s) {
    for (int i = 0; i < 6; i++)
        if (!strcasecmp(s, level_names[i]))
            return i;
    if (!strcasecmp(s, "warning"))
        return PROXY_LOG_WARN;
    return -1;
}

static const char *const action_names[] = {"continue", "pause", "local_response", "error",
                                           "pause_no_buffer"};

const char *action_name(pw_action a) {
    return (unsigned)a < 5 ? action_names[a] : "?";
}

int action_parse(const char *s) {
    for (int i = 0; i < 5; i++)
        if (!strcmp(s, action_names[i]))
            return i;
    return -1;
}
