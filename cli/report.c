/*
 * report.c -- the results of `pwasm test` for CI systems: JUnit XML
 * (--junit FILE, written at the end: the counts head each suite) and TAP
 * version 13 (--tap, on stdout as the tests run, the plan at the end).
 * docs/CLI.md "Reports for CI" describes both.
 */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"

typedef struct rcase {
    char *name, *message, *text;
    enum test_result result;
    size_t line;
    double seconds;
} rcase;

typedef struct rsuite {
    char *path, *classname;
    rcase *cases;
    size_t n;
    double seconds;
    char timestamp[32];
} rsuite;

struct report {
    FILE *junit; /* NULL: no --junit */
    int junit_stdout;
    char *junit_path;
    int tap;
    size_t tap_n; /* TAP test points so far */
    rsuite *suites;
    size_t n;
};

report *report_open(const char *junit, int tap, char *err, size_t errlen) {
    report *r = xmalloc(sizeof *r);
    memset(r, 0, sizeof *r);
    r->tap = tap;
    if (junit) {
        /* Opened first: a path that cannot be written is a usage error
         * before any test ran. */
        r->junit_stdout = !strcmp(junit, "-");
        r->junit = r->junit_stdout ? stdout : fopen(junit, "w");
        if (!r->junit) {
            snprintf(err, errlen, "--junit %s: %s", junit, strerror(errno));
            free(r);
            return NULL;
        }
        r->junit_path = xstrdup(junit);
    }
    if (tap)
        printf("TAP version 13\n");
    return r;
}

/* "tests/cli/examples/add_header.yaml" -> "tests.cli.examples.add_header":
 * JUnit readers split a class name at its last dot (package, class). */
static char *classname_of(const char *path) {
    for (;;) {
        if (path[0] == '/')
            path++;
        else if (path[0] == '.' && path[1] == '/')
            path += 2;
        else if (path[0] == '.' && path[1] == '.' && path[2] == '/')
            path += 3;
        else
            break;
    }
    char *s = xstrdup(path);
    size_t n = strlen(s);
    if (n > 5 && !strcmp(s + n - 5, ".yaml"))
        s[n - 5] = 0;
    else if (n > 4 && !strcmp(s + n - 4, ".yml"))
        s[n - 4] = 0;
    for (char *p = s; *p; p++)
        if (*p == '/' || *p == '.')
            *p = *p == '/' ? '.' : '_';
    return s;
}

void report_file(report *r, const char *path) {
    r->suites = xrealloc(r->suites, (r->n + 1) * sizeof *r->suites);
    rsuite *s = &r->suites[r->n++];
    memset(s, 0, sizeof *s);
    s->path = xstrdup(path);
    s->classname = classname_of(path);
    time_t now = time(NULL);
    struct tm tm;
    strftime(s->timestamp, sizeof s->timestamp, "%Y-%m-%dT%H:%M:%S", gmtime_r(&now, &tm));
}

/* TAP descriptions end at '#' (a directive follows): escape it. */
static void tap_text(const char *s) {
    for (; *s; s++) {
        if (*s == '#' || *s == '\\')
            putchar('\\');
        putchar(*s == '\n' ? ' ' : *s);
    }
}

/* A YAML single-quoted scalar of one line. */
static void yaml_quoted(const char *s) {
    putchar('\'');
    for (; *s; s++) {
        if (*s == '\'')
            putchar('\'');
        putchar(*s == '\n' ? ' ' : *s);
    }
    putchar('\'');
}

static void tap_case(report *r, const rsuite *s, const rcase *c) {
    r->tap_n++;
    printf("%s %zu - ", c->result == RESULT_PASS || c->result == RESULT_SKIP ? "ok" : "not ok",
           r->tap_n);
    tap_text(s->path);
    printf(": ");
    tap_text(c->name);
    if (c->result == RESULT_SKIP) {
        printf(" # SKIP ");
        tap_text(c->message ? c->message : "");
    }
    printf("\n");
    if (c->result != RESULT_FAIL && c->result != RESULT_ERROR)
        return;
    /* The failure as a YAML block (TAP 13 diagnostics). */
    printf("  ---\n  message: ");
    yaml_quoted(c->message ? c->message : "");
    printf("\n  severity: %s\n  file: ", c->result == RESULT_FAIL ? "fail" : "error");
    yaml_quoted(s->path);
    if (c->line)
        printf("\n  line: %zu", c->line);
    if (c->text && *c->text) {
        /* An explicit indent: the text's first line may be indented. */
        printf("\n  data: |2\n");
        for (const char *l = c->text; *l;) {
            const char *nl = strchr(l, '\n');
            size_t n = nl ? (size_t)(nl - l) : strlen(l);
            printf("    %.*s\n", (int)n, l);
            l += n + (nl != NULL);
        }
        printf("  ...\n");
    } else {
        printf("\n  ...\n");
    }
    fflush(stdout);
}

/* text without the indent its lines share (the terminal report's). */
static char *dedent(const char *text) {
    size_t min = SIZE_MAX;
    for (const char *l = text; *l;) {
        size_t sp = strspn(l, " "), n = strcspn(l, "\n");
        if (sp < n && sp < min)
            min = sp;
        l += n + (l[n] == '\n');
    }
    buf b = {0};
    buf_puts(&b, "");
    for (const char *l = text; *l;) {
        size_t n = strcspn(l, "\n"), sp = strspn(l, " ");
        size_t cut = sp < min ? sp : min;
        buf_put(&b, l + cut, n - cut);
        buf_puts(&b, "\n");
        l += n + (l[n] == '\n');
    }
    return b.p;
}

void report_case(report *r, const char *name, size_t line, enum test_result result,
                 const char *message, const char *text, double seconds) {
    if (!r->n)
        report_file(r, "pwasm");
    rsuite *s = &r->suites[r->n - 1];
    s->cases = xrealloc(s->cases, (s->n + 1) * sizeof *s->cases);
    rcase *c = &s->cases[s->n++];
    c->name = xstrdup(name);
    c->message = message ? xstrdup(message) : NULL;
    c->text = text ? dedent(text) : NULL;
    c->result = result;
    c->line = line;
    c->seconds = seconds;
    s->seconds += seconds;
    if (r->tap)
        tap_case(r, s, c);
}

/* XML 1.0 text or attribute value: the five entities, tabs and newlines
 * as they are (as &#10; in attributes), other control bytes and bytes of
 * no valid UTF-8 sequence as "\xNN" (XML cannot carry them). */
static void xml_text(FILE *f, const char *s, int attr) {
    const unsigned char *p = (const unsigned char *)s;
    while (*p) {
        unsigned char c = *p;
        size_t n = c < 0x80 ? 1 : (c & 0xe0) == 0xc0 ? 2 : (c & 0xf0) == 0xe0 ? 3
                              : (c & 0xf8) == 0xf0   ? 4
                                                     : 0;
        for (size_t i = 1; i < n; i++)
            if ((p[i] & 0xc0) != 0x80)
                n = 0;
        if (n == 2 && c < 0xc2)
            n = 0; /* overlong */
        if (n > 1) {
            fwrite(p, 1, n, f);
            p += n;
            continue;
        }
        if (c == '&')
            fputs("&amp;", f);
        else if (c == '<')
            fputs("&lt;", f);
        else if (c == '>')
            fputs("&gt;", f);
        else if (c == '"' && attr)
            fputs("&quot;", f);
        else if ((c == '\n' || c == '\t' || c == '\r') && attr)
            fprintf(f, "&#%d;", c);
        else if (c == '\n' || c == '\t' || c == '\r' || (c >= 0x20 && c < 0x7f))
            fputc(c, f);
        else
            fprintf(f, "\\x%02x", c);
        p++;
    }
}

static void xml_attr(FILE *f, const char *key, const char *value) {
    fprintf(f, " %s=\"", key);
    xml_text(f, value, 1);
    fputc('"', f);
}

typedef struct counts {
    size_t tests, failures, errors, skipped;
} counts;

static void count(counts *k, const rsuite *s) {
    for (size_t i = 0; i < s->n; i++) {
        k->tests++;
        k->failures += s->cases[i].result == RESULT_FAIL;
        k->errors += s->cases[i].result == RESULT_ERROR;
        k->skipped += s->cases[i].result == RESULT_SKIP;
    }
}

static void junit_counts(FILE *f, const counts *k, double seconds) {
    fprintf(f, " tests=\"%zu\" failures=\"%zu\" errors=\"%zu\" skipped=\"%zu\" time=\"%.3f\"",
            k->tests, k->failures, k->errors, k->skipped, seconds);
}

static void junit_case(FILE *f, const rsuite *s, const rcase *c) {
    fprintf(f, "    <testcase");
    xml_attr(f, "classname", s->classname);
    xml_attr(f, "name", c->name);
    xml_attr(f, "file", s->path);
    if (c->line)
        fprintf(f, " line=\"%zu\"", c->line);
    fprintf(f, " time=\"%.3f\"", c->seconds);
    if (c->result == RESULT_PASS) {
        fprintf(f, "/>\n");
        return;
    }
    fprintf(f, ">\n      <%s",
            c->result == RESULT_SKIP ? "skipped" : c->result == RESULT_FAIL ? "failure" : "error");
    if (c->message)
        xml_attr(f, "message", c->message);
    if (c->result == RESULT_FAIL)
        fprintf(f, " type=\"expectation\"");
    else if (c->result == RESULT_ERROR)
        fprintf(f, " type=\"load\"");
    if (c->text && *c->text) {
        fputc('>', f);
        xml_text(f, c->text, 0);
        fprintf(f, "</%s>\n", c->result == RESULT_FAIL ? "failure" : "error");
    } else {
        fprintf(f, "/>\n");
    }
    fprintf(f, "    </testcase>\n");
}

static void junit_write(report *r, FILE *f) {
    counts all = {0};
    double seconds = 0;
    for (size_t i = 0; i < r->n; i++) {
        count(&all, &r->suites[i]);
        seconds += r->suites[i].seconds;
    }
    char host[256] = "localhost";
    if (gethostname(host, sizeof host) != 0)
        strcpy(host, "localhost");
    host[sizeof host - 1] = 0;
    fprintf(f, "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<testsuites name=\"pwasm test\"");
    junit_counts(f, &all, seconds);
    fprintf(f, ">\n");
    for (size_t i = 0; i < r->n; i++) {
        const rsuite *s = &r->suites[i];
        counts k = {0};
        count(&k, s);
        fprintf(f, "  <testsuite");
        xml_attr(f, "name", s->path);
        junit_counts(f, &k, s->seconds);
        xml_attr(f, "timestamp", s->timestamp);
        xml_attr(f, "hostname", host);
        if (!s->n) {
            fprintf(f, "/>\n");
            continue;
        }
        fprintf(f, ">\n");
        for (size_t j = 0; j < s->n; j++)
            junit_case(f, s, &s->cases[j]);
        fprintf(f, "  </testsuite>\n");
    }
    fprintf(f, "</testsuites>\n");
}

int report_close(report *r, char *err, size_t errlen) {
    int rc = 0;
    if (r->tap)
        printf("1..%zu\n", r->tap_n);
    if (r->junit) {
        junit_write(r, r->junit);
        if (r->junit_stdout ? fflush(stdout) != 0 : fclose(r->junit) != 0) {
            snprintf(err, errlen, "--junit %s: %s", r->junit_path, strerror(errno));
            rc = -1;
        }
    }
    for (size_t i = 0; i < r->n; i++) {
        rsuite *s = &r->suites[i];
        for (size_t j = 0; j < s->n; j++) {
            free(s->cases[j].name);
            free(s->cases[j].message);
            free(s->cases[j].text);
        }
        free(s->cases);
        free(s->path);
        free(s->classname);
    }
    free(r->suites);
    free(r->junit_path);
    free(r);
    return rc;
}
