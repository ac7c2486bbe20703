/* yaml.c -- YAML documents (libyaml) with FILE:LINE:COL errors. */
#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

/* Reads the document from f, or from buf (len bytes) when f is NULL. */
static int load(ydoc *d, const char *path, FILE *f, const unsigned char *buf, size_t len,
                char *err, size_t errlen) {
    yaml_parser_t p;
    yaml_parser_initialize(&p);
    if (f)
        yaml_parser_set_input_file(&p, f);
    else
        yaml_parser_set_input_string(&p, buf, len);
    int ok = yaml_parser_load(&p, &d->doc);
    if (!ok) {
        const yaml_mark_t *m = &p.problem_mark;
        int n = snprintf(err, errlen, "%s:%zu:%zu: %s", path, m->line + 1, m->column + 1,
                         p.problem ? p.problem : "invalid YAML");
        if (p.context && n > 0 && (size_t)n < errlen)
            snprintf(err + n, errlen - (size_t)n, " (%s at line %zu, column %zu)", p.context,
                     p.context_mark.line + 1, p.context_mark.column + 1);
    }
    yaml_parser_delete(&p);
    if (!ok)
        return -1;
    d->loaded = 1;
    if (!yroot(d)) {
        snprintf(err, errlen, "%s:1:1: empty document", path);
        return -1;
    }
    return 0;
}

static void set_path(ydoc *d, const char *path) {
    memset(d, 0, sizeof *d);
    d->path = xstrdup(path);
    const char *slash = strrchr(path, '/');
    d->dir = slash ? strndup(path, (size_t)(slash - path)) : xstrdup(".");
    if (!d->dir)
        d->dir = xstrdup(".");
}

int ydoc_load(ydoc *d, const char *path, char *err, size_t errlen) {
    set_path(d, path);
    FILE *f = fopen(path, "rb");
    if (!f) {
        snprintf(err, errlen, "%s: cannot open: %s", path, strerror(errno));
        return -1;
    }
    int rc = load(d, path, f, NULL, 0, err, errlen);
    fclose(f);
    return rc;
}

int ydoc_load_buffer(ydoc *d, const char *path, const void *buf, size_t len, char *err,
                     size_t errlen) {
    set_path(d, path);
    return load(d, path, NULL, buf, len, err, errlen);
}

void ydoc_free(ydoc *d) {
    if (d->loaded)
        yaml_document_delete(&d->doc);
    free(d->path);
    free(d->dir);
    memset(d, 0, sizeof *d);
}

yaml_node_t *yroot(ydoc *d) {
    return yaml_document_get_root_node(&d->doc);
}

yaml_node_t *ynode(ydoc *d, int id) {
    return yaml_document_get_node(&d->doc, id);
}

yaml_node_t *ymap_get(ydoc *d, yaml_node_t *map, const char *key) {
    if (!map || map->type != YAML_MAPPING_NODE)
        return NULL;
    for (yaml_node_pair_t *p = map->data.mapping.pairs.start; p < map->data.mapping.pairs.top;
         p++) {
        yaml_node_t *k = ynode(d, p->key);
        if (k && k->type == YAML_SCALAR_NODE && !strcmp((char *)k->data.scalar.value, key))
            return ynode(d, p->value);
    }
    return NULL;
}

const char *yscalar(yaml_node_t *n, size_t *len) {
    if (!n || n->type != YAML_SCALAR_NODE)
        return NULL;
    if (len)
        *len = n->data.scalar.length;
    return (const char *)n->data.scalar.value;
}

const char *ytag(yaml_node_t *n) {
    const char *t = (const char *)n->tag;
    if (!t)
        return NULL;
    /* libyaml fills in the default tags for untagged nodes. */
    if (!strcmp(t, YAML_DEFAULT_SCALAR_TAG) || !strcmp(t, YAML_DEFAULT_MAPPING_TAG) ||
        !strcmp(t, YAML_DEFAULT_SEQUENCE_TAG))
        return NULL;
    return t;
}

int ynull(yaml_node_t *n) {
    if (!n)
        return 1;
    if (n->type != YAML_SCALAR_NODE || n->data.scalar.style != YAML_PLAIN_SCALAR_STYLE)
        return 0;
    const char *t = ytag(n);
    if (t && strcmp(t, "tag:yaml.org,2002:null"))
        return 0;
    const char *s = (const char *)n->data.scalar.value;
    return !*s || !strcmp(s, "~") || !strcmp(s, "null") || !strcmp(s, "Null") ||
           !strcmp(s, "NULL");
}

int yerr(ydoc *d, yaml_node_t *n, char *err, size_t errlen, const char *fmt, ...) {
    char msg[PW_ERRLEN];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (n)
        snprintf(err, errlen, "%s:%zu:%zu: %s", d->path, n->start_mark.line + 1,
                 n->start_mark.column + 1, msg);
    else
        snprintf(err, errlen, "%s: %s", d->path, msg);
    return -1;
}

int ycheck_keys(ydoc *d, yaml_node_t *map, const char *const *allowed, const char *what, char *err,
                size_t errlen) {
    if (!map || map->type != YAML_MAPPING_NODE)
        return yerr(d, map, err, errlen, "%s must be a mapping", what);
    for (yaml_node_pair_t *p = map->data.mapping.pairs.start; p < map->data.mapping.pairs.top;
         p++) {
        yaml_node_t *k = ynode(d, p->key);
        const char *key = yscalar(k, NULL);
        if (!key)
            return yerr(d, k, err, errlen, "%s: keys must be strings", what);
        int ok = 0;
        for (const char *const *a = allowed; *a && !ok; a++)
            ok = !strcmp(*a, key);
        if (!ok) {
            buf b = {0};
            for (const char *const *a = allowed; *a; a++)
                buf_printf(&b, "%s%s", a == allowed ? "" : ", ", *a);
            yerr(d, k, err, errlen, "unknown key \"%s\" in %s (expected one of: %s)", key, what,
                 b.p ? b.p : "");
            buf_free(&b);
            return -1;
        }
    }
    return 0;
}

/* ${VAR} and ${VAR:-default}, the only shell syntax understood. */
static void expand(buf *out, const char *p) {
    while (*p) {
        const char *close;
        if (p[0] == '$' && p[1] == '{' && (close = strchr(p, '}'))) {
            const char *name = p + 2;
            const char *dflt = strstr(name, ":-");
            size_t nlen = (size_t)((dflt && dflt < close ? dflt : close) - name);
            char var[256];
            snprintf(var, sizeof var, "%.*s", (int)nlen, name);
            const char *v = getenv(var);
            if (v && *v)
                buf_puts(out, v);
            else if (dflt && dflt < close)
                buf_put(out, dflt + 2, (size_t)(close - dflt - 2));
            p = close + 1;
        } else {
            buf_put(out, p++, 1);
        }
    }
}

char *ypath(ydoc *d, const char *p) {
    buf e = {0}, r = {0};
    expand(&e, p);
    if (e.p && e.p[0] != '/' && strcmp(d->dir, "."))
        buf_printf(&r, "%s/%s", d->dir, e.p);
    else
        buf_puts(&r, e.p ? e.p : "");
    buf_free(&e);
    return r.p;
}

/* A plain scalar that JSON can carry as it is: a number, true, false, null. */
static int json_literal(yaml_node_t *n) {
    if (n->data.scalar.style != YAML_PLAIN_SCALAR_STYLE || ytag(n))
        return 0;
    const char *s = (const char *)n->data.scalar.value;
    if (!strcmp(s, "true") || !strcmp(s, "false") || !strcmp(s, "null"))
        return 1;
    char *end;
    errno = 0;
    strtod(s, &end);
    return *s && !*end && errno == 0 && strspn(s, "0123456789+-.eE") == strlen(s);
}

static int to_json(ydoc *d, yaml_node_t *n, buf *out, int depth, char *err, size_t errlen) {
    if (depth > 64)
        return yerr(d, n, err, errlen, "configuration nested too deeply");
    switch (n->type) {
    case YAML_SCALAR_NODE:
        if (ynull(n))
            buf_puts(out, "null");
        else if (json_literal(n))
            buf_puts(out, (const char *)n->data.scalar.value);
        else
            buf_json_str(out, (const char *)n->data.scalar.value, n->data.scalar.length);
        return 0;
    case YAML_SEQUENCE_NODE:
        buf_puts(out, "[");
        for (yaml_node_item_t *i = n->data.sequence.items.start; i < n->data.sequence.items.top;
             i++) {
            if (i != n->data.sequence.items.start)
                buf_puts(out, ",");
            if (to_json(d, ynode(d, *i), out, depth + 1, err, errlen))
                return -1;
        }
        buf_puts(out, "]");
        return 0;
    case YAML_MAPPING_NODE:
        buf_puts(out, "{");
        for (yaml_node_pair_t *p = n->data.mapping.pairs.start; p < n->data.mapping.pairs.top;
             p++) {
            yaml_node_t *k = ynode(d, p->key);
            if (!yscalar(k, NULL))
                return yerr(d, k, err, errlen, "configuration keys must be strings");
            if (p != n->data.mapping.pairs.start)
                buf_puts(out, ",");
            buf_json_str(out, (const char *)k->data.scalar.value, k->data.scalar.length);
            buf_puts(out, ":");
            if (to_json(d, ynode(d, p->value), out, depth + 1, err, errlen))
                return -1;
        }
        buf_puts(out, "}");
        return 0;
    default:
        return yerr(d, n, err, errlen, "unexpected YAML node");
    }
}

int yconfig(ydoc *d, yaml_node_t *n, char **out, size_t *len, char *err, size_t errlen) {
    if (n->type == YAML_SCALAR_NODE) {
        size_t l;
        const char *s = yscalar(n, &l);
        if (ynull(n))
            l = 0;
        *out = xmalloc(l + 1);
        memcpy(*out, s, l);
        (*out)[l] = 0;
        *len = l;
        return 0;
    }
    buf b = {0};
    if (to_json(d, n, &b, 0, err, errlen)) {
        buf_free(&b);
        return -1;
    }
    *out = b.p;
    *len = b.len;
    return 0;
}

int yuint(ydoc *d, yaml_node_t *n, uint64_t *out, char *err, size_t errlen) {
    const char *s = yscalar(n, NULL);
    char *end;
    errno = 0;
    if (!s || !*s || *s == '-')
        return yerr(d, n, err, errlen, "expected a non-negative integer");
    unsigned long long v = strtoull(s, &end, 10);
    if (*end || errno)
        return yerr(d, n, err, errlen, "expected a non-negative integer, got \"%s\"", s);
    *out = v;
    return 0;
}
