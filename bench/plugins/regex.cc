/*
 * regex: a C++ plugin over the C SDK that links a large library (libc++'s
 * std::regex, iostreams, locale and containers), the input of the cold
 * compile benchmark (bench/run.py part "compile", docs/PERFORMANCE.md
 * "Issue 14: cold compile"). Built twice by bench/bench.mk, both -O2:
 * regex.wasm (about 560 KB, the size of the C++ SDK's regex example class)
 * and regex_big.wasm (about 2.5 MB: -DPW_REGEX_COPIES=N instantiates
 * libc++'s regex compiler and matcher N times, once per traits class
 * rtraits<0..N-1>, as a plugin linking several template-heavy libraries
 * would; rule i uses copy i % N).
 *
 * What it does: the plugin configuration is a list of rules, one a line,
 * `header-name regex`; on_request_headers matches every rule against the
 * request header of that name (ECMAScript syntax, case-insensitive) and
 * on_response_headers adds `x-regex: <rule>=<0|1>,...` listing which
 * matched. Without a configuration it uses a built-in rule set.
 */
#include <algorithm>
#include <array>
#include <cstdint>
#include <locale>
#include <map>
#include <memory>
#include <regex>
#include <sstream>
#include <string>
#include <vector>
#include <iomanip>
#include <utility>

#ifndef PW_REGEX_COPIES
#define PW_REGEX_COPIES 1
#endif

#include "proxy_wasm.h"

namespace {

/* A traits class per copy: each basic_regex<char, rtraits<N>> is its own
 * instantiation of the regex compiler and matcher. */
template <int N> struct rtraits : std::regex_traits<char> {};

typedef bool (*match_fn)(const void *re, const std::string &text);

template <int N> bool match_copy(const void *re, const std::string &text) {
    return std::regex_search(text, *static_cast<const std::basic_regex<char, rtraits<N>> *>(re));
}

template <int N> std::shared_ptr<void> compile_copy(const std::string &pattern) {
    return std::make_shared<std::basic_regex<char, rtraits<N>>>(
        pattern, std::regex_constants::ECMAScript | std::regex_constants::icase);
}

struct copy_ops {
    std::shared_ptr<void> (*compile)(const std::string &);
    match_fn match;
};

template <int... N> constexpr std::array<copy_ops, sizeof...(N)> make_copies(std::integer_sequence<int, N...>) {
    return {{{compile_copy<N>, match_copy<N>}...}};
}

constexpr auto copies = make_copies(std::make_integer_sequence<int, PW_REGEX_COPIES>());

struct rule {
    std::string header;
    std::string pattern;
    std::shared_ptr<void> re; /* a basic_regex of copy `copy` */
    size_t copy;
    std::wregex wre;
};

std::vector<rule> *rules;
std::map<uint32_t, std::string> *results;

const char default_rules[] = ":path ^/(api|static)/[a-z0-9_./-]+$\n"
                             "user-agent (curl|wrk|python|Mozilla)/[0-9.]+\n"
                             "accept (text/html|application/json|\\*/\\*)\n"
                             ":method ^(GET|HEAD)$\n";

std::string lower(const std::string &s) {
    std::locale loc;
    std::string out(s);
    std::transform(out.begin(), out.end(), out.begin(),
                   [&loc](char c) { return std::tolower(c, loc); });
    return out;
}

void parse_rules(const std::string &text) {
    std::istringstream in(text);
    std::string line;
    auto *r = new std::vector<rule>();
    while (std::getline(in, line)) {
        std::istringstream ls(line);
        rule x;
        if (!(ls >> x.header))
            continue;
        std::getline(ls >> std::ws, x.pattern);
        x.header = lower(x.header);
        x.copy = r->size() % copies.size();
        x.re = copies[x.copy].compile(x.pattern);
        std::wstring w(x.pattern.begin(), x.pattern.end());
        x.wre = std::wregex(w, std::regex::ECMAScript | std::regex::icase);
        r->push_back(std::move(x));
    }
    delete rules;
    rules = r;
}

int on_configure(uint32_t root_id, size_t size) {
    (void)root_id;
    char *data = nullptr;
    size_t n = 0;
    if (size && pw_get_plugin_config(&data, &n) == PROXY_RESULT_OK && n)
        parse_rules(std::string(data, n));
    else
        parse_rules(default_rules);
    free(data);
    if (!results)
        results = new std::map<uint32_t, std::string>();
    return 1;
}

proxy_action_t on_request_headers(uint32_t ctx, size_t nheaders, int end_of_stream) {
    (void)nheaders;
    (void)end_of_stream;
    pw_pairs_t h = {};
    if (!rules || pw_get_headers(PROXY_MAP_HTTP_REQUEST_HEADERS, &h) != PROXY_RESULT_OK)
        return PROXY_ACTION_CONTINUE;
    std::multimap<std::string, std::string> headers;
    for (size_t i = 0; i < h.count; i++)
        headers.emplace(lower(std::string(h.pairs[i].key, h.pairs[i].key_len)),
                        std::string(h.pairs[i].value, h.pairs[i].value_len));
    pw_pairs_free(&h);
    std::ostringstream out;
    size_t k = 0;
    for (const rule &r : *rules) {
        auto it = headers.find(r.header);
        bool hit = it != headers.end() && copies[r.copy].match(r.re.get(), it->second);
        if (it != headers.end()) {
            std::wstring w(it->second.begin(), it->second.end());
            std::wostringstream wo;
            wo << std::setw(4) << std::regex_search(w, r.wre);
            hit = hit && wo.str().find(L'1') != std::wstring::npos;
        }
        out << (k++ ? "," : "") << r.header << '=' << (hit ? 1 : 0);
    }
    (*results)[ctx] = out.str();
    return PROXY_ACTION_CONTINUE;
}

proxy_action_t on_response_headers(uint32_t ctx, size_t nheaders, int end_of_stream) {
    (void)nheaders;
    (void)end_of_stream;
    if (!results)
        return PROXY_ACTION_CONTINUE;
    auto it = results->find(ctx);
    if (it != results->end()) {
        pw_add_header(PROXY_MAP_HTTP_RESPONSE_HEADERS, "x-regex", it->second.c_str());
        results->erase(it);
    }
    return PROXY_ACTION_CONTINUE;
}

} // namespace

extern "C" const pw_plugin_t pw_plugin = {
    .on_configure = on_configure,
    .on_request_headers = on_request_headers,
    .on_response_headers = on_response_headers,
};
