/*
 * yaml_fixture -- the CLI's reader of fixtures and test files (cli/yaml.c,
 * cli/fixture.c): a YAML document from memory (ydoc_load_buffer), then
 * the exchange and plugin keys (fixture_parse) as `pwasm run` and `pwasm
 * test` read them, the defaults added, and a deep copy (a test starting
 * from its file's defaults). Any input must be refused with a message or
 * accepted, never crash or leak. The reader opens no file of the machine:
 * its read_file calls come here (linked with --wrap=read_file), where
 * every file is a small JSON document.
 */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int __wrap_read_file(const char *path, uint8_t **out, size_t *len);

int __wrap_read_file(const char *path, uint8_t **out, size_t *len) {
    static const char doc[] = "{\"file\": true}";
    if (!*path) {
        errno = ENOENT;
        return -1;
    }
    *out = malloc(sizeof doc);
    if (!*out)
        return -1;
    memcpy(*out, doc, sizeof doc);
    *len = sizeof doc - 1;
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char err[1024];
    ydoc d;
    if (ydoc_load_buffer(&d, "fuzz/fuzz.yaml", data, size, err, sizeof err) == 0) {
        fixture f, copy;
        fixture_init(&f);
        if (fixture_parse(&f, &d, yroot(&d), 1, err, sizeof err) == 0) {
            fixture_copy(&copy, &f);
            fixture_finish(&copy);
            fixture_free(&copy);
            /* A test file: each test from the file's defaults. */
            yaml_node_t *tests = ymap_get(&d, yroot(&d), "tests");
            if (tests && tests->type == YAML_SEQUENCE_NODE)
                for (yaml_node_item_t *it = tests->data.sequence.items.start;
                     it < tests->data.sequence.items.top; it++) {
                    yaml_node_t *t = ynode(&d, *it);
                    if (!t || t->type != YAML_MAPPING_NODE)
                        continue;
                    fixture_copy(&copy, &f);
                    if (fixture_parse(&copy, &d, t, 1, err, sizeof err) == 0)
                        fixture_finish(&copy);
                    fixture_free(&copy);
                }
        }
        fixture_free(&f);
    }
    ydoc_free(&d);
    return 0;
}
