/*
 * split.c -- cuts wasm2c's output into translation units (see split.h).
 *
 * wasm2c 1.0.32 writes one file laid out as
 *   [0, a)  includes, macros and static inline helpers      -> every part
 *   [a, b)  s_module_initialized, func_types, init_func_types -> part0,
 *           and one forward declaration per function         -> every part
 *   [b, c)  init_globals, data and element segments, init_*  -> part0
 *   [c, d)  the functions, `static T w2c_NAME(Z_plug_instance_t* instance,
 *           ...) {` to a `}` line                            -> parts 1..n-1
 *   [d, e)  exports, instantiation, free                     -> part0
 * Anything else (another wasm2c layout) is not split: the caller compiles
 * the file whole, as before. Functions that use a segment (memory.init,
 * table.init) go to part0 with the segments.
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/split.h"

_Static_assert(PW_SPLIT_MAX_PARTS <= 32, "a part is a bit of func.ref_parts");

typedef struct line {
    const char *s;
    size_t n; /* with its '\n' */
} line;

typedef struct func {
    size_t start, end; /* lines [start, end) */
    const char *name;  /* "w2c_..." inside the start line */
    size_t namelen;
    size_t bytes;
    int part;
    int small;          /* copied, static, into each other part that calls it */
    int pinned;         /* named by part0's own code (exports, element segments):
                           one global definition, no copy in part0 */
    uint32_t ref_parts; /* bit p: part p references it */
} func;

typedef struct edge {
    uint32_t from, to; /* function indexes: `from` references `to` */
} edge;

typedef struct split {
    char *buf;
    line *lines;
    size_t nlines;
    func *funcs;
    size_t nfuncs;
    size_t a, b, c, d;
    uint32_t *hash; /* open addressing: function index + 1, 0 empty */
    size_t hcap;
    edge *edges;
    size_t nedges, edgecap;
} split;

static int starts(const line *l, const char *p) {
    size_t n = strlen(p);
    return l->n >= n && memcmp(l->s, p, n) == 0;
}

static int ends(const line *l, const char *p) {
    size_t n = strlen(p);
    return l->n >= n && memcmp(l->s + l->n - n, p, n) == 0;
}

static int is_ident(char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_';
}

/* The name before the first '(' of a declaration or definition line
 * ("static u32 w2c_f(Z_plug_instance_t* ...") when it is a w2c_ name. */
static int func_name(const line *l, const char **name, size_t *len) {
    const char *open = memchr(l->s, '(', l->n);
    if (!open)
        return -1;
    const char *p = open;
    while (p > l->s && is_ident(p[-1]))
        p--;
    if (open - p < 5 || memcmp(p, "w2c_", 4) != 0 || p == l->s || p[-1] != ' ')
        return -1;
    *name = p;
    *len = (size_t)(open - p);
    return 0;
}

/* The last line of a declaration or definition header starting at line i
 * (wasm2c wraps long parameter lists onto lines indented by 4), ending in
 * `suffix`; 0 when there is none. */
static size_t header_end(const split *s, size_t i, const char *suffix) {
    for (size_t k = i; k < s->nlines && k < i + 64; k++) {
        const line *l = &s->lines[k];
        if (k > i && !starts(l, "    "))
            return 0;
        if (ends(l, suffix))
            return k;
        if (ends(l, ";\n") || ends(l, "{\n"))
            return 0;
    }
    return 0;
}

static int is_func_start(const split *s, size_t i) {
    const line *l = &s->lines[i];
    const char *n;
    size_t len;
    return starts(l, "static ") && memmem(l->s, l->n, "(Z_plug_instance_t* instance", 28) &&
           func_name(l, &n, &len) == 0 && header_end(s, i, ") {\n") != 0;
}

/* A forward declaration of a function: the index of its last line, or 0. */
static size_t decl_end(const split *s, size_t i) {
    const line *l = &s->lines[i];
    const char *n;
    size_t len;
    if (!starts(l, "static ") || !memmem(l->s, l->n, "(Z_plug_instance_t*", 19) ||
        func_name(l, &n, &len) != 0)
        return 0;
    return header_end(s, i, ");\n");
}

static uint64_t hash_str(const char *s, size_t n) {
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < n; i++)
        h = (h ^ (unsigned char)s[i]) * 1099511628211ull;
    return h;
}

static long find_func(const split *s, const char *name, size_t len) {
    for (size_t i = hash_str(name, len) & (s->hcap - 1);; i = (i + 1) & (s->hcap - 1)) {
        uint32_t v = s->hash[i];
        if (!v)
            return -1;
        const func *f = &s->funcs[v - 1];
        if (f->namelen == len && memcmp(f->name, name, len) == 0)
            return (long)(v - 1);
    }
}

static int read_all(const char *path, split *s) {
    FILE *f = fopen(path, "rb");
    if (!f)
        return -1;
    size_t cap = 1 << 20, n = 0;
    s->buf = malloc(cap);
    while (s->buf) {
        if (n == cap) {
            char *b = realloc(s->buf, cap *= 2);
            if (!b) {
                free(s->buf);
                s->buf = NULL;
                break;
            }
            s->buf = b;
        }
        size_t r = fread(s->buf + n, 1, cap - n, f);
        n += r;
        if (r == 0)
            break;
    }
    int bad = ferror(f) || !s->buf;
    fclose(f);
    if (bad)
        return -1;
    size_t nl = 0;
    for (size_t i = 0; i < n; i++)
        nl += s->buf[i] == '\n';
    s->lines = malloc((nl + 1) * sizeof *s->lines);
    if (!s->lines)
        return -1;
    const char *p = s->buf, *e = s->buf + n;
    while (p < e) {
        const char *q = memchr(p, '\n', (size_t)(e - p));
        size_t len = q ? (size_t)(q - p + 1) : (size_t)(e - p);
        s->lines[s->nlines++] = (line){p, len};
        p += len;
    }
    return 0;
}

/* Finds the regions and the functions; 0, or -1 when the layout is not
 * the one expected (or out of memory). */
static int parse(split *s) {
    size_t i = 0, n = s->nlines;
    while (i < n && !starts(&s->lines[i], "static bool s_module_initialized = false;"))
        i++;
    s->a = i;
    while (i < n && !starts(&s->lines[i], "static void init_globals("))
        i++;
    s->b = i;
    while (i < n && !is_func_start(s, i)) {
        /* Only segments and their initialisers live here. */
        const line *l = &s->lines[i];
        if (starts(l, "static ") && !starts(l, "static void init_") &&
            !starts(l, "static const u8 data_segment_data_") &&
            !starts(l, "static const wasm_elem_segment_expr_t elem_segment_exprs_"))
            return -1;
        i++;
    }
    s->c = i;
    if (s->a >= n || s->b >= n || s->c >= n)
        return -1;
    size_t cap = 1024;
    s->funcs = malloc(cap * sizeof *s->funcs);
    if (!s->funcs)
        return -1;
    for (;;) {
        while (i < n && s->lines[i].n == 1)
            i++;
        if (i >= n || !is_func_start(s, i))
            break;
        size_t j = i + 1;
        while (j < n && !(s->lines[j].n == 2 && s->lines[j].s[0] == '}'))
            j++;
        if (j >= n)
            return -1;
        if (s->nfuncs == cap) {
            func *f = realloc(s->funcs, (cap *= 2) * sizeof *f);
            if (!f)
                return -1;
            s->funcs = f;
        }
        func *f = &s->funcs[s->nfuncs++];
        memset(f, 0, sizeof *f);
        f->start = i;
        f->end = j + 1;
        func_name(&s->lines[i], &f->name, &f->namelen);
        for (size_t k = i; k < j + 1; k++)
            f->bytes += s->lines[k].n;
        i = j + 1;
    }
    s->d = i;
    if (i >= n || !(starts(&s->lines[i], "/* export: ") ||
                    starts(&s->lines[i], "static void init_instance_import(") ||
                    starts(&s->lines[i], "void Z_plug_init_module(")))
        return -1;
    for (s->hcap = 16; s->hcap < s->nfuncs * 2; s->hcap *= 2)
        ;
    s->hash = calloc(s->hcap, sizeof *s->hash);
    if (!s->hash)
        return -1;
    for (size_t k = 0; k < s->nfuncs; k++) {
        func *f = &s->funcs[k];
        if (find_func(s, f->name, f->namelen) >= 0)
            return -1;
        size_t h = hash_str(f->name, f->namelen) & (s->hcap - 1);
        while (s->hash[h])
            h = (h + 1) & (s->hcap - 1);
        s->hash[h] = (uint32_t)k + 1;
    }
    /* Every forward declaration names a function defined here. */
    for (size_t k = s->a; k < s->b; k++) {
        const char *nm;
        size_t len;
        if (decl_end(s, k) &&
            (func_name(&s->lines[k], &nm, &len) != 0 || find_func(s, nm, len) < 0))
            return -1;
    }
    return 0;
}

/* Records that lines [from, to) reference the w2c_ functions they name:
 * part 0's own lines (self < 0) as a part, a function's body (self >= 0)
 * as an edge from it. -1 when out of memory. */
static int note_refs(split *s, size_t from, size_t to, long self) {
    for (size_t k = from; k < to; k++) {
        const char *p = s->lines[k].s, *e = p + s->lines[k].n;
        while ((p = memmem(p, (size_t)(e - p), "w2c_", 4)) != NULL) {
            if (p > s->lines[k].s && is_ident(p[-1])) {
                p += 4;
                continue;
            }
            const char *q = p + 4;
            while (q < e && is_ident(*q))
                q++;
            long j = find_func(s, p, (size_t)(q - p));
            if (j >= 0 && self < 0) {
                s->funcs[j].ref_parts |= 1u;
                s->funcs[j].pinned = 1;
            } else if (j >= 0 && j != self) {
                if (s->nedges == s->edgecap) {
                    size_t cap = s->edgecap ? s->edgecap * 2 : 4096;
                    edge *e2 = realloc(s->edges, cap * sizeof *e2);
                    if (!e2)
                        return -1;
                    s->edges = e2;
                    s->edgecap = cap;
                }
                s->edges[s->nedges++] = (edge){(uint32_t)self, (uint32_t)j};
            }
            p = q;
        }
    }
    return 0;
}

/* Whether part p gets a static copy of f. */
static int copied_to(const func *f, int p) {
    return f->small && f->part != p && (f->ref_parts & (1u << p)) && !(p == 0 && f->pinned);
}

/* The parts where f's code is: its own, and those with a copy. */
static uint32_t present_in(const func *f) {
    uint32_t m = 1u << f->part;
    if (f->small)
        m |= f->ref_parts & ~(f->pinned ? 1u : 0u);
    return m;
}

/* Which parts reference each function, counting the copies of small
 * functions: a copy in part p references its callees from p. */
static void spread_refs(split *s) {
    for (int changed = 1; changed;) {
        changed = 0;
        for (size_t i = 0; i < s->nedges; i++) {
            const func *f = &s->funcs[s->edges[i].from];
            func *g = &s->funcs[s->edges[i].to];
            uint32_t from = present_in(f);
            if ((g->ref_parts | from) != g->ref_parts) {
                g->ref_parts |= from;
                changed = 1;
            }
        }
    }
}

static int uses_segment(const split *s, const func *f) {
    for (size_t k = f->start; k < f->end; k++)
        if (memmem(s->lines[k].s, s->lines[k].n, "data_segment_data_", 18) ||
            memmem(s->lines[k].s, s->lines[k].n, "elem_segment_exprs_", 19))
            return 1;
    return 0;
}

/* Static in its own part: no other part calls this definition. */
static int is_local(const func *f) {
    if (f->pinned && f->part != 0)
        return 0;
    return f->small || (f->ref_parts & ~(1u << f->part)) == 0;
}

static void put(FILE *o, const line *l, size_t skip) {
    fwrite(l->s + skip, 1, l->n - skip, o);
}

static int write_part(const split *s, const char *dir, int part) {
    char path[4200];
    snprintf(path, sizeof path, "%s/part%d.c", dir, part);
    FILE *o = fopen(path, "w");
    if (!o)
        return -1;
    for (size_t k = 0; k < s->a; k++)
        put(o, &s->lines[k], 0);
    for (size_t k = s->a; k < s->b; k++) {
        const line *l = &s->lines[k];
        size_t e = decl_end(s, k);
        if (e) {
            const char *nm;
            size_t len;
            func_name(l, &nm, &len);
            const func *f = &s->funcs[find_func(s, nm, len)];
            if (f->part == part || (f->ref_parts & (1u << part))) {
                int keep = f->part == part ? is_local(f) : copied_to(f, part);
                put(o, l, keep ? 0 : 7); /* without "static " */
                for (size_t m = k + 1; m <= e; m++)
                    put(o, &s->lines[m], 0);
            }
            k = e;
        } else if (starts(l, "static u32 func_types[")) {
            if (part != 0)
                fputs("extern ", o);
            put(o, l, 7);
        } else if (part == 0) {
            put(o, l, 0);
        }
    }
    if (part == 0)
        for (size_t k = s->b; k < s->c; k++)
            put(o, &s->lines[k], 0);
    for (size_t i = 0; i < s->nfuncs; i++) {
        const func *f = &s->funcs[i];
        if (f->part != part && !copied_to(f, part))
            continue;
        put(o, &s->lines[f->start], is_local(f) ? 0 : 7);
        for (size_t k = f->start + 1; k < f->end; k++)
            put(o, &s->lines[k], 0);
        fputc('\n', o);
    }
    if (part == 0)
        for (size_t k = s->d; k < s->nlines; k++)
            put(o, &s->lines[k], 0);
    int bad = ferror(o);
    return (fclose(o) != 0 || bad) ? -1 : 0;
}

int pw_split_output(const char *in, const char *dir, size_t part_bytes) {
    split s;
    memset(&s, 0, sizeof s);
    int rc = 0;
    if (read_all(in, &s) != 0) {
        rc = -1;
        goto out;
    }
    if (parse(&s) != 0)
        goto out; /* not the layout expected: one unit */
    size_t total = 0;
    for (size_t i = 0; i < s.nfuncs; i++)
        total += s.funcs[i].bytes;
    if (!part_bytes || total <= part_bytes || s.nfuncs < 2)
        goto out;
    size_t nf = (total + part_bytes - 1) / part_bytes;
    if (nf > PW_SPLIT_MAX_PARTS - 1)
        nf = PW_SPLIT_MAX_PARTS - 1;
    /* Consecutive functions, about total/nf bytes a part. */
    size_t acc = 0;
    for (size_t i = 0; i < s.nfuncs; i++) {
        func *f = &s.funcs[i];
        size_t p = 1 + acc * nf / total;
        int seg = uses_segment(&s, f);
        f->part = seg ? 0 : (int)p;
        f->small = !seg && f->bytes <= PW_SPLIT_SMALL_BYTES;
        acc += f->bytes;
    }
    int bad = note_refs(&s, s.b, s.c, -1) || note_refs(&s, s.d, s.nlines, -1);
    for (size_t i = 0; !bad && i < s.nfuncs; i++)
        bad = note_refs(&s, s.funcs[i].start + 1, s.funcs[i].end, (long)i);
    if (bad) {
        rc = -1;
        goto out;
    }
    spread_refs(&s);
    for (int p = 0; p <= (int)nf; p++)
        if (write_part(&s, dir, p) != 0) {
            rc = -1;
            goto out;
        }
    rc = (int)nf + 1;
out:
    if (rc == -1 && !errno)
        errno = EIO;
    free(s.edges);
    free(s.hash);
    free(s.funcs);
    free(s.lines);
    free(s.buf);
    return rc;
}
