/*
 * json_lite.h -- a small JSON reader for plugin configurations, shared by
 * the stream examples (redis_guard, sni_router). Header-only: include it in
 * one .c file. It reads objects, arrays, strings (escapes \" \\ \/ \n \t \r;
 * not \u), non-negative integers; anything else is an error. Usage:
 *
 *   jl_t j = jl_start(text);
 *   for (int first = 1; jl_more(&j, '}', &first);) {
 *       char *key = jl_key(&j);           // "name": consumed up to the value
 *       ... jl_string / jl_uint / nested jl_more(&j, ']', ...) on the value
 *       free(key);
 *   }
 *   if (j.err) ...                         // the first error, a C string
 */
#ifndef EXAMPLES_JSON_LITE_H
#define EXAMPLES_JSON_LITE_H

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    const char *p;
    const char *err;
} jl_t;

static inline void jl_skip(jl_t *j) {
    while (*j->p == ' ' || *j->p == '\t' || *j->p == '\n' || *j->p == '\r')
        j->p++;
}

static inline int jl_fail(jl_t *j, const char *why) {
    if (!j->err)
        j->err = why;
    return 0;
}

/* The reader at `text`, which must open an object ('{' consumed). */
static inline jl_t jl_start(const char *text) {
    jl_t j = {text ? text : "", NULL};
    jl_skip(&j);
    if (*j.p == '{')
        j.p++;
    else
        jl_fail(&j, "expected a JSON object");
    return j;
}

/* Consumes `c` after blanks, or fails. */
static inline int jl_expect(jl_t *j, char c, const char *why) {
    jl_skip(j);
    if (j->err || *j->p != c)
        return jl_fail(j, why);
    j->p++;
    return 1;
}

/* Inside an object or array already opened: 1 while another member or
 * element follows (its ',' consumed), 0 at `close` (consumed) or on error. */
static inline int jl_more(jl_t *j, char close, int *first) {
    jl_skip(j);
    if (j->err)
        return 0;
    if (*j->p == close) {
        j->p++;
        return 0;
    }
    if (!*first && !jl_expect(j, ',', "expected ',' between members"))
        return 0;
    *first = 0;
    jl_skip(j);
    return 1;
}

/* A string (malloc'ed, NUL-terminated) or NULL on error. */
static inline char *jl_string(jl_t *j) {
    jl_skip(j);
    if (j->err || *j->p != '"')
        return jl_fail(j, "expected a string"), NULL;
    const char *s = ++j->p;
    while (*j->p && *j->p != '"')
        j->p += *j->p == '\\' && j->p[1] ? 2 : 1;
    if (*j->p != '"')
        return jl_fail(j, "unterminated string"), NULL;
    char *out = malloc((size_t)(j->p - s) + 1), *w = out;
    if (!out)
        return jl_fail(j, "out of memory"), NULL;
    for (const char *r = s; r < j->p; r++) {
        if (*r != '\\') {
            *w++ = *r;
            continue;
        }
        switch (*++r) {
        case 'n': *w++ = '\n'; break;
        case 't': *w++ = '\t'; break;
        case 'r': *w++ = '\r'; break;
        case '"': case '\\': case '/': *w++ = *r; break;
        default: free(out); return jl_fail(j, "unsupported escape in a string"), NULL;
        }
    }
    *w = 0;
    j->p++;
    return out;
}

/* A member's key and its ':'; NULL on error. */
static inline char *jl_key(jl_t *j) {
    char *k = jl_string(j);
    if (k && !jl_expect(j, ':', "expected ':' after a key")) {
        free(k);
        return NULL;
    }
    return k;
}

/* A non-negative integer up to `max`. */
static inline int jl_uint(jl_t *j, uint64_t max, uint64_t *v) {
    jl_skip(j);
    if (j->err || *j->p < '0' || *j->p > '9')
        return jl_fail(j, "expected a non-negative integer");
    uint64_t n = 0;
    for (; *j->p >= '0' && *j->p <= '9'; j->p++) {
        n = n * 10 + (uint64_t)(*j->p - '0');
        if (n > max)
            return jl_fail(j, "number too large");
    }
    *v = n;
    return 1;
}

/* After the last member: only blanks may follow. */
static inline int jl_end(jl_t *j) {
    jl_skip(j);
    return j->err || *j->p ? jl_fail(j, "text after the JSON object") : 1;
}

#endif
