// The header work of bench/plugins/headers.c in njs (benchmark scenario 5):
// read every request header, add `x-bench: <count>/<bytes of values>`.
// njs has no access phase handler for http, so both happen in the header
// filter (js_header_filter), like the Lua scenario.
function headers(r) {
    var n = 0, b = 0;
    for (var k in r.headersIn) {
        n++;
        b += r.headersIn[k].length;
    }
    r.headersOut['x-bench'] = n + '/' + b;
}

export default {headers};
