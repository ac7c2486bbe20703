/* plugin.c -- loading plugins (.wasm or artifact) and `pwasm compile`. */
#include <getopt.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

char *file_stem(const char *path) {
    const char *base = strrchr(path, '/');
    base = base ? base + 1 : path;
    char *s = xstrdup(base);
    char *dot = strchr(s, '.');
    if (dot && dot != s)
        *dot = 0;
    return s;
}

pw_runtime *cli_runtime(char *err, size_t errlen) {
    pw_runtime *rt = NULL;
    if (pw_runtime_new(NULL, &rt, err, errlen) != PW_OK)
        return NULL;
    return rt;
}

int plugin_load(pw_runtime *rt, const char *path, const char *name, pw_module **out, char *err,
                size_t errlen) {
    char *stem = file_stem(path);
    /* An artifact is native code: loaded because the user named it on the
     * command line or in the fixture they run (nginx needs a digest). */
    unsigned char head[8] = {0};
    FILE *f = fopen(path, "rb");
    size_t got = f ? fread(head, 1, sizeof head, f) : 0;
    if (f)
        fclose(f);
    const uint8_t *w;
    size_t wl;
    int rc = got == sizeof head && pw_artifact_wasm(head, sizeof head, &w, &wl) != 0
                 ? pw_module_load_precompiled(rt, name ? name : stem, path, NULL, out, err,
                                              errlen)
                 : pw_module_load_file(rt, name ? name : stem, path, out, err, errlen);
    free(stem);
    return rc == PW_OK ? 0 : -1;
}

static void restrict_warn(void *data, const char *msg) {
    (void)data;
    fprintf(stderr, "pwasm: warning: %s\n", msg);
}

int plugin_restrict(pw_module *m, const char *rule, int report, char *err, size_t errlen) {
    uint32_t allowed = PW_CAP_ALL;
    if (rule && pw_capability_parse(rule, strlen(rule), &allowed, err, errlen) != PW_OK)
        return -1;
    pw_module_restrict(m, allowed, rule && report ? restrict_warn : NULL, NULL);
    return 0;
}

int cmd_compile(int argc, char **argv) {
    const char *out = NULL, *name = NULL;
    static const struct option opts[] = {{"output", required_argument, 0, 'o'},
                                         {"name", required_argument, 0, 'n'},
                                         {"help", no_argument, 0, 'h'},
                                         {0, 0, 0, 0}};
    int c;
    while ((c = getopt_long(argc, argv, "o:n:h", opts, NULL)) != -1) {
        switch (c) {
        case 'o':
            out = optarg;
            break;
        case 'n':
            name = optarg;
            break;
        case 'h':
            usage(stdout, "compile");
            return 0;
        default:
            usage(stderr, "compile");
            return 2;
        }
    }
    if (optind + 1 != argc || !out) {
        if (optind == argc)
            fputs("pwasm compile: missing PLUGIN.wasm (the module to compile)\n\n", stderr);
        else if (optind + 1 < argc)
            fprintf(stderr, "pwasm compile: too many arguments (from \"%s\" on): one PLUGIN.wasm\n\n",
                    argv[optind + 1]);
        else
            fputs("pwasm compile: missing -o OUT (the artifact to write)\n\n", stderr);
        usage(stderr, "compile");
        return 2;
    }
    const char *in = argv[optind];
    char err[PW_ERRLEN];
    pw_runtime *rt = cli_runtime(err, sizeof err);
    if (!rt) {
        fprintf(stderr, "pwasm: %s\n", err);
        return CLI_EXIT_LOAD;
    }
    char *stem = file_stem(in);
    int rc = pw_module_compile(rt, name ? name : stem, in, out, err, sizeof err);
    free(stem);
    pw_runtime_free(rt);
    if (rc != PW_OK) {
        fprintf(stderr, "pwasm: %s\n", err);
        return CLI_EXIT_LOAD;
    }
    printf("%s: compiled %s for this machine; pwasm run/test/bench accept it in place of the "
           ".wasm\n",
           out, in);
    return 0;
}
