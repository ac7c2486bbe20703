/*
 * pwasm -- run, test and benchmark Proxy-Wasm plugins without a proxy, on
 * the same host library as the nginx module. docs/CLI.md is the manual.
 */
#include <stdlib.h>
#include <string.h>

#include "cli.h"

static const struct command {
    const char *name;
    int (*fn)(int argc, char **argv);
    const char *synopsis;
    const char *help;
} commands[] = {
    {"inspect", cmd_inspect, "inspect PLUGIN.wasm",
     "Prints the module's Proxy-Wasm ABI version, a guess of the SDK that built\n"
     "it, its start function, allocator and memory limits, its imports grouped\n"
     "by area (each marked ok, not provided or wrong signature, and whether\n"
     "pwasm implements it yet), its exports, and whether this host can run it.\n"
     "Exit status 1 when an import is not provided or the module is no\n"
     "Proxy-Wasm plugin this host can run (no ABI marker, a callback of a\n"
     "signature it cannot call, no allocator); 3 when the file cannot be read or\n"
     "is no Wasm module.\n"},
    {"compile", cmd_compile, "compile PLUGIN.wasm -o OUT [--name NAME]",
     "Compiles the plugin to native code for this machine and writes an\n"
     "artifact (the module plus its compiled code) that run, test, bench and the\n"
     "nginx module accept in place of the .wasm on a machine without a C\n"
     "compiler. Another pwasm version refuses the artifact.\n"
     "\n"
     "  -o, --output OUT   the artifact to write\n"
     "  -n, --name NAME    the module name used in messages (default: file stem)\n"
     "Exit status 3 when the plugin cannot be compiled or OUT written.\n"},
    {"run", cmd_run,
     "run PLUGIN [--config STR|@FILE] [--vm-config STR|@FILE] [--root-id ID]\n"
     "                  [--vm-id ID] [--name NAME] [--log-level LEVEL] [--trace] [FIXTURE]",
     "Replays one HTTP exchange (FIXTURE, a YAML file; without it a GET / with a\n"
     "200 response) through the plugin and prints, per phase, the action the\n"
     "plugin returned, the headers or body after the phase, a local response,\n"
     "its log lines, the properties it read and its hostcalls (those pwasm does\n"
     "not implement yet are always shown, marked !), then the result. A fixture\n"
     "with `steps:` runs them instead (exchanges, clock advances that fire\n"
     "proxy_on_tick), on every plugin of `plugins:` sharing one store. A fixture\n"
     "with `connection:` replays a TCP connection instead (the bytes each side\n"
     "sends, closes), printing each data callback's buffer before and after and\n"
     "the bytes forwarded each way.\n"
     "\n"
     "  --config STR|@FILE     plugin configuration (over the fixture's config)\n"
     "  --vm-config STR|@FILE  VM configuration\n"
     "  --root-id ID           root id (AssemblyScript plugins select their root\n"
     "                         context by it)\n"
     "  --vm-id ID, --name NAME  the VM id and the plugin name\n"
     "  --log-level LEVEL      level reported to the plugin (default trace)\n"
     "  --trace                print every hostcall with its arguments and result\n"
     "Exit status 1 when the plugin does not start, 3 when the plugin or the\n"
     "fixture cannot be loaded.\n"},
    {"test", cmd_test,
     "test [--verbose] [--trace] [--filter RE] [--junit FILE] [--tap] FILE|DIR...",
     "Runs YAML test files (DIR: every *.yaml / *.yml below it, sorted). Each\n"
     "test starts its plugins on fresh VMs and a fresh store, replays one\n"
     "exchange (or its steps) and checks its expectations; a\n"
     "failed expectation prints expected (-) against actual (+). Ends with\n"
     "\"N passed, N failed\". Exit status 1 when a test failed, 3 when a test\n"
     "file or a plugin could not be loaded (over 1).\n"
     "\n"
     "  -v, --verbose     also print what happened (as pwasm run) for failed tests\n"
     "  -t, --trace       as --verbose, with every hostcall\n"
     "  -k, --filter RE   run only the tests whose name matches RE (POSIX extended,\n"
     "                    searched); exit status 2 when it selects none\n"
     "  -j, --junit FILE  also write the results as JUnit XML to FILE (-: stdout)\n"
     "  --tap             print the results as TAP version 13 on stdout\n"
     "With --tap or --junit -, the report for people goes to stderr.\n"},
    {"bench", cmd_bench,
     "bench PLUGIN [FIXTURE] [-n N] [--warmup N] [--json] [--config STR|@FILE]\n"
     "                    [--vm-config STR|@FILE] [--root-id ID] [--vm-id ID]\n"
     "                    [--log-level LEVEL]",
     "Runs the fixture's exchange N times (default 10000) on one warm instance\n"
     "and prints the time per request (mean, p50, p99 in ns, from\n"
     "on_context_create to on_delete), hostcalls per request and the guest's\n"
     "linear memory in bytes.\n"
     "\n"
     "  -n, --requests N   timed requests (default 10000)\n"
     "  -w, --warmup N     untimed requests first (default N/10, at most 1000)\n"
     "  -j, --json         one JSON object instead of text\n"
     "  --log-level LEVEL  level reported to the plugin (default info)\n"
     "  --config, --vm-config, --root-id, --vm-id, --name as for run\n"
     "Exit status 1 when the plugin does not start, 3 when the plugin or the\n"
     "fixture cannot be loaded.\n"},
};
#define NCOMMANDS (sizeof commands / sizeof *commands)

void usage(FILE *f, const char *cmd) {
    for (size_t i = 0; i < NCOMMANDS; i++)
        if (cmd && !strcmp(cmd, commands[i].name)) {
            fprintf(f, "usage: pwasm %s\n\n%s", commands[i].synopsis, commands[i].help);
            return;
        }
    fputs("usage: pwasm COMMAND [ARGS]   (pwasm COMMAND --help for each;\n"
          "       pwasm --version)\n\n",
          f);
    for (size_t i = 0; i < NCOMMANDS; i++)
        fprintf(f, "  pwasm %s\n", commands[i].synopsis);
    fputs("\nPLUGIN is a .wasm file or an artifact of pwasm compile. Compiled plugins\n"
          "are cached in $PWASM_CACHE_DIR when it is set. Manual: docs/CLI.md, man pwasm.\n"
          "\n"
          "Exit status, of every command:\n"
          "  0  success: every test passed, the plugin started, the module can run\n"
          "  1  a test failed, the plugin did not start (run, bench), inspect found\n"
          "     a problem\n"
          "  2  usage error: an unknown command or option, a missing or bad argument\n"
          "  3  a plugin, fixture or test file could not be read, parsed or compiled\n",
          f);
}

int wants_help(int argc, char **argv) {
    for (int i = 1; i < argc; i++)
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h"))
            return 1;
    return 0;
}

int main(int argc, char **argv) {
    if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") ||
        !strcmp(argv[1], "help")) {
        const char *cmd = argc > 2 && !strcmp(argv[1], "help") ? argv[2] : NULL;
        usage(argc < 2 ? stderr : stdout, cmd);
        return argc < 2 ? 2 : 0;
    }
    if (!strcmp(argv[1], "--version") || !strcmp(argv[1], "version")) {
        printf("pwasm %s (Proxy-Wasm ABI 0.1.0, 0.2.0, 0.2.1)\n", PWASM_VERSION_STRING);
        return 0;
    }
    for (size_t i = 0; i < NCOMMANDS; i++)
        if (!strcmp(argv[1], commands[i].name))
            return commands[i].fn(argc - 1, argv + 1);
    fprintf(stderr, "pwasm: unknown command \"%s\"\n", argv[1]);
    usage(stderr, NULL);
    return 2;
}
