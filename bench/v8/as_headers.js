// bench/v8/as_headers.js -- the AssemblyScript header plugin of the
// benchmark (bench/plugins/as_headers.ts) under V8 (node), with stub
// Proxy-Wasm hostcalls handing it the bytes pwasm hands it, to compare the
// plugin's own cost under V8 with its cost under pwasm (bench/vmbench.c,
// mode `calls`: same plugin, same inputs, same callbacks).
//
//   node [--liftoff-only] bench/v8/as_headers.js WASM HEADERS_FILE REQUESTS
//
// (--liftoff-only: V8's baseline tier alone. In V8 11.3, --liftoff
// --no-wasm-tier-up does not stop dynamic tiering: its figures are
// TurboFan's.)
//
// Prints one JSON object: ns per request, and ns per callback (creation of
// the stream context, on_request_headers, on_response_headers, and the end
// of the stream: on_log + on_done + on_delete, which pwasm's
// pw_stream_free makes together), after a warm-up long enough for V8's
// optimizing tier (TurboFan) to compile the hot functions. Each callback
// is timed alone (process.hrtime.bigint around it, minus the cost of an
// empty pair of reads, measured the same way); the request total is timed
// without the per-callback clocks.
//
// hostcall_stub_ns: the time spent in the JavaScript stubs per request
// (mean, clock cost subtracted), i.e. the host's share of request_ns.
//
// The stubs do what pwasm's hostcalls do for this plugin: proxy_log drops
// what is below Warn (pwasm's default level filter), proxy_get_property
// answers plugin_root_id, proxy_get_header_map_pairs serialises the request
// map (the four pseudo-headers, host, then HEADERS_FILE, names lower-cased:
// what vmbench and the nginx module list) into memory from the plugin's
// malloc, proxy_add_header_map_value appends to the response map.
"use strict";
const fs = require("fs");

const [wasmPath, headersPath, reqArg] = process.argv.slice(2);
if (!wasmPath || !headersPath) {
    console.error("usage: node as_headers.js WASM HEADERS_FILE [REQUESTS]");
    process.exit(2);
}
const REQUESTS = Number(reqArg || 200000);
const WARMUP = Math.max(20000, REQUESTS / 5);

const enc = new TextEncoder();

// Request headers as vmbench's load_headers reads them.
function loadHeaders(path) {
    const req = [[":method", "GET"], [":path", "/local/headers"], [":authority", "127.0.0.1"],
                 [":scheme", "http"], ["host", "127.0.0.1"]];
    for (const line of fs.readFileSync(path, "latin1").split("\n")) {
        const colon = line.indexOf(":");
        if (!line || colon < 0 || line[0] === "#")
            continue;
        req.push([line.slice(0, colon).toLowerCase(), line.slice(colon + 1).replace(/^ +/, "")]);
    }
    return req;
}

// The Proxy-Wasm pair serialisation: u32 count, count x (u32 key length,
// u32 value length), then each key and value followed by a NUL.
function serialise(pairs) {
    const bin = pairs.map(([k, v]) => [enc.encode(k), enc.encode(v)]);
    let size = 4 + 8 * bin.length;
    for (const [k, v] of bin)
        size += k.length + v.length + 2;
    const out = new Uint8Array(size);
    const dv = new DataView(out.buffer);
    dv.setUint32(0, bin.length, true);
    let off = 4 + 8 * bin.length;
    bin.forEach(([k, v], i) => {
        dv.setUint32(4 + 8 * i, k.length, true);
        dv.setUint32(8 + 8 * i, v.length, true);
        out.set(k, off);
        off += k.length + 1;
        out.set(v, off);
        off += v.length + 1;
    });
    return out;
}

const REQ = loadHeaders(headersPath);
const REQ_BYTES = serialise(REQ);
const RESP_BASE = [[":status", "200"], ["content-type", "text/plain"], ["content-length", "3"]];
let resp = RESP_BASE.slice();
const ROOT_ID = enc.encode("as_headers");
const dec = new TextDecoder("latin1");

let inst, mem;
const u8 = () => new Uint8Array(mem.buffer);
const dv = () => new DataView(mem.buffer);

// Copies bytes into plugin memory from its allocator ("malloc", as pwasm
// does for this SDK) and stores pointer and size at ptr_ptr, size_ptr.
function hand(bytes, ptrPtr, sizePtr) {
    const p = inst.exports.malloc(bytes.length);
    if (!p)
        return 9; // InvalidMemoryAccess, as pwasm
    u8().set(bytes, p);
    const d = dv();
    d.setUint32(ptrPtr, p, true);
    d.setUint32(sizePtr, bytes.length, true);
    return 0;
}

const OK = 0, NOT_FOUND = 1, BAD_ARGUMENT = 2;

// A third pass times the stubs themselves (the JavaScript host's share, as
// opposed to the plugin's): each stub adds its time when stubTiming is set
// (one branch otherwise). The plugin's malloc, which the stubs handing
// bytes call, is counted with them.
let stubTiming = false, stubNs = 0n, stubCalls = 0;
function stubStart() {
    return stubTiming ? process.hrtime.bigint() : 0n;
}
function stubEnd(t0, r) {
    if (stubTiming) {
        stubNs += process.hrtime.bigint() - t0;
        stubCalls++;
    }
    return r;
}
let logged = 0;
const env = {
    proxy_log(level, ptr, len) {
        const t0 = stubStart();
        if (level >= 3) { // Warn and up reach the log, as under vmbench
            logged++;
            console.error("plugin:", dec.decode(u8().subarray(ptr, ptr + len)));
        }
        return stubEnd(t0, OK);
    },
    proxy_get_buffer_bytes() { return stubEnd(stubStart(), NOT_FOUND); },
    proxy_get_property(pathPtr, pathLen, ptrPtr, sizePtr) {
        const t0 = stubStart();
        const path = dec.decode(u8().subarray(pathPtr, pathPtr + pathLen));
        return stubEnd(t0, path === "plugin_root_id" ? hand(ROOT_ID, ptrPtr, sizePtr) : NOT_FOUND);
    },
    proxy_set_effective_context() { return stubEnd(stubStart(), OK); },
    proxy_get_header_map_pairs(type, ptrPtr, sizePtr) {
        const t0 = stubStart();
        if (type === 0)
            return stubEnd(t0, hand(REQ_BYTES, ptrPtr, sizePtr));
        if (type === 2)
            return stubEnd(t0, hand(serialise(resp), ptrPtr, sizePtr));
        return stubEnd(t0, NOT_FOUND);
    },
    proxy_add_header_map_value(type, kp, kl, vp, vl) {
        const t0 = stubStart();
        if (type !== 2 && type !== 0)
            return stubEnd(t0, BAD_ARGUMENT);
        const b = u8();
        if (type === 2)
            resp.push([dec.decode(b.subarray(kp, kp + kl)), dec.decode(b.subarray(vp, vp + vl))]);
        return stubEnd(t0, OK);
    },
};
const imports = {
    env,
    wasi_unstable: { proc_exit(code) { throw new Error("proc_exit(" + code + ")"); } },
};

inst = new WebAssembly.Instance(new WebAssembly.Module(fs.readFileSync(wasmPath)), imports);
mem = inst.exports.memory;
const x = inst.exports;

// VM and root context, as pwasm starts them (root context id 1).
x.proxy_on_context_create(1, 0);
if (!x.proxy_on_vm_start(1, 0) || !x.proxy_on_configure(1, 0))
    throw new Error("plugin refused to start");

let nextId = 2;
function request() {
    const id = nextId++;
    resp = RESP_BASE.slice();
    x.proxy_on_context_create(id, 1);
    x.proxy_on_request_headers(id, REQ.length, 1);
    x.proxy_on_response_headers(id, resp.length, 0);
    x.proxy_on_log(id);
    x.proxy_on_done(id);
    x.proxy_on_delete(id);
}

const now = process.hrtime.bigint;
const parts = ["context_create", "on_request_headers", "on_response_headers", "end"];
const acc = [0n, 0n, 0n, 0n];
function requestTimed() {
    const id = nextId++;
    resp = RESP_BASE.slice();
    let t0 = now();
    x.proxy_on_context_create(id, 1);
    let t1 = now();
    acc[0] += t1 - t0;
    t0 = now();
    x.proxy_on_request_headers(id, REQ.length, 1);
    t1 = now();
    acc[1] += t1 - t0;
    t0 = now();
    x.proxy_on_response_headers(id, resp.length, 0);
    t1 = now();
    acc[2] += t1 - t0;
    t0 = now();
    x.proxy_on_log(id);
    x.proxy_on_done(id);
    x.proxy_on_delete(id);
    t1 = now();
    acc[3] += t1 - t0;
}

for (let i = 0; i < WARMUP; i++) {
    request();
    requestTimed();
}

// The machine may be shared: a run preempted by another process counts its
// wait as wall time. So the loops run in blocks of BLOCK requests and the
// figures are the 10th percentile of the blocks' averages (a block long
// enough to average the clock's jitter, short enough for most blocks to run
// undisturbed).
const BLOCK = 100;
const NBLOCKS = Math.max(1, Math.floor(REQUESTS / BLOCK));
const low = (v) => v.slice().sort((a, b) => a - b)[Math.floor(v.length / 10)];

// the cost of the clock pair itself
const clocks = [];
for (let b = 0; b < NBLOCKS; b++) {
    let empty = 0n;
    for (let i = 0; i < BLOCK; i++) {
        const t0 = now();
        const t1 = now();
        empty += t1 - t0;
    }
    clocks.push(Number(empty) / BLOCK);
}
const clock = low(clocks);

const totals = [];
for (let b = 0; b < NBLOCKS; b++) {
    const t0 = now();
    for (let i = 0; i < BLOCK; i++)
        request();
    totals.push(Number(now() - t0) / BLOCK);
}
const total = low(totals);

const perBlock = parts.map(() => []);
for (let b = 0; b < NBLOCKS; b++) {
    acc.fill(0n);
    for (let i = 0; i < BLOCK; i++)
        requestTimed();
    acc.forEach((a, k) => perBlock[k].push(Number(a) / BLOCK - clock));
}

const stubBlocks = [];
stubTiming = true;
for (let b = 0; b < NBLOCKS; b++) {
    stubNs = 0n;
    stubCalls = 0;
    for (let i = 0; i < BLOCK; i++)
        request();
    stubBlocks.push((Number(stubNs) - stubCalls * clock) / BLOCK);
}
stubTiming = false;
const hostcalls = stubCalls / BLOCK;
const hostcallNs = Math.max(0, low(stubBlocks));

const last = resp[resp.length - 1];
if (last[0] !== "x-bench")
    throw new Error("the plugin added no x-bench header");
const per = {};
parts.forEach((p, k) => { per[p] = Math.max(0, low(perBlock[k])); });
console.log(JSON.stringify({
    engine: "v8 " + process.versions.v8,
    tier: process.execArgv.includes("--liftoff-only") ? "liftoff" : "turbofan",
    requests: NBLOCKS * BLOCK,
    request_ns: total,
    callback_ns: per,
    clock_pair_ns: clock,
    hostcalls_per_request: hostcalls,
    hostcall_stub_ns: hostcallNs,
    added_header: last[0] + ": " + last[1],
    linear_memory_kb: mem.buffer.byteLength / 1024,
}));
