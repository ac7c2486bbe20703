// as_headers: the header work of bench/plugins/headers.c with the
// AssemblyScript SDK (@solo-io/proxy-runtime 0.1.8, benchmark scenario 6).
//
// onRequestHeaders reads the whole request map (get_headers: one
// proxy_get_header_map_pairs, deserialized into an array of ArrayBuffer
// pairs), counts the entries and the bytes of their values;
// onResponseHeaders adds `x-bench: <count>/<bytes>`. Root id: `as_headers`.
export * from "@solo-io/proxy-runtime/proxy";

import {
  RootContext,
  Context,
  registerRootContext,
  FilterHeadersStatusValues,
  stream_context,
} from "@solo-io/proxy-runtime";

class BenchRoot extends RootContext {
  constructor(context_id: u32) {
    super(context_id);
  }

  // No configuration to read (RootContext.onConfigure of proxy-runtime
  // 0.1.8 mishandles an empty one, see examples/assemblyscript).
  onConfigure(configuration_size: u32): bool {
    return true;
  }

  createContext(context_id: u32): Context {
    return new BenchHeaders(context_id, this);
  }
}

class BenchHeaders extends Context {
  count: i32 = 0;
  bytes: i32 = 0;

  constructor(context_id: u32, root_context: BenchRoot) {
    super(context_id, root_context);
  }

  onRequestHeaders(headers: u32, end_of_stream: bool): FilterHeadersStatusValues {
    const h = stream_context.headers.request.get_headers();
    let bytes = 0;
    for (let i = 0; i < h.length; i++) bytes += h[i].value.byteLength;
    this.count = h.length;
    this.bytes = bytes;
    return FilterHeadersStatusValues.Continue;
  }

  onResponseHeaders(headers: u32, end_of_stream: bool): FilterHeadersStatusValues {
    stream_context.headers.response.add(
      "x-bench", this.count.toString() + "/" + this.bytes.toString());
    return FilterHeadersStatusValues.Continue;
  }
}

registerRootContext((context_id: u32): RootContext => {
  return new BenchRoot(context_id);
}, "as_headers");
