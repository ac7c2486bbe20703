// add_header: a Proxy-Wasm HTTP filter written with the AssemblyScript SDK
// (@solo-io/proxy-runtime 0.1.8, ABI 0.2.0).
//
// * request headers:  adds `x-as-request: 1` (so the upstream can see us);
// * response headers: adds the header named by the plugin configuration,
//   `name=value` (e.g. `x-as-plugin=hello`); an empty configuration means
//   `x-powered-by=pwasm-assemblyscript`.
//
// The root context is registered under root_id "add_header": the runtime looks
// the factory up by the host's `plugin_root_id` property and aborts when no
// factory matches, so the host must be configured with root_id=add_header.

// The callbacks the host calls (proxy_on_*), malloc and the ABI marker.
export * from "@solo-io/proxy-runtime/proxy";

import {
  RootContext,
  Context,
  registerRootContext,
  FilterHeadersStatusValues,
  LogLevelValues,
  log,
  stream_context,
} from "@solo-io/proxy-runtime";
import { BufferTypeValues, get_buffer_bytes } from "@solo-io/proxy-runtime/runtime";

const DEFAULT_NAME = "x-powered-by";
const DEFAULT_VALUE = "pwasm-assemblyscript";
const REQUEST_HEADER_NAME = "x-as-request";
const REQUEST_HEADER_VALUE = "1";

// Spaces, tabs, CR and LF around a configuration token are not part of it.
function isSpace(c: i32): bool {
  return c == 0x20 || c == 0x09 || c == 0x0a || c == 0x0d;
}

function trim(s: string): string {
  let start = 0;
  let end = s.length;
  while (start < end && isSpace(s.charCodeAt(start))) start++;
  while (end > start && isSpace(s.charCodeAt(end - 1))) end--;
  return s.substring(start, end);
}

class AddHeaderRoot extends RootContext {
  headerName: string = DEFAULT_NAME;
  headerValue: string = DEFAULT_VALUE;

  constructor(context_id: u32) {
    super(context_id);
  }

  // Replaces RootContext.onConfigure on purpose: in proxy-runtime 0.1.8 it
  // passes `configuration_size` as the return-size *pointer* of
  // proxy_get_buffer_bytes (so a host writes the size at guest address
  // `configuration_size`), and with an empty configuration it reuses a stale,
  // already released buffer. get_buffer_bytes() passes proper pointers, and
  // we skip the call when there is nothing to read.
  onConfigure(configuration_size: u32): bool {
    let config = "";
    if (configuration_size > 0) {
      config = String.UTF8.decode(
        get_buffer_bytes(BufferTypeValues.PluginConfiguration, 0, configuration_size));
    }
    config = trim(config);

    let name = DEFAULT_NAME;
    let value = DEFAULT_VALUE;
    if (config.length > 0) {
      const eq = config.indexOf("=");
      if (eq <= 0) {
        log(LogLevelValues.error,
          "bad configuration \"" + config + "\", expected name=value");
        return false;
      }
      name = trim(config.substring(0, eq));
      value = trim(config.substring(eq + 1));
      if (name.length == 0) {
        log(LogLevelValues.error,
          "bad configuration \"" + config + "\", empty header name");
        return false;
      }
    }
    this.headerName = name;
    this.headerValue = value;
    log(LogLevelValues.info,
      "configured, response header \"" + name + ": " + value + "\"");
    return true;
  }

  createContext(context_id: u32): Context {
    return new AddHeader(context_id, this, this.headerName, this.headerValue);
  }
}

class AddHeader extends Context {
  headerName: string;
  headerValue: string;

  constructor(context_id: u32, root_context: AddHeaderRoot, name: string, value: string) {
    super(context_id, root_context);
    this.headerName = name;
    this.headerValue = value;
  }

  onRequestHeaders(headers: u32, end_of_stream: bool): FilterHeadersStatusValues {
    stream_context.headers.request.add(REQUEST_HEADER_NAME, REQUEST_HEADER_VALUE);
    return FilterHeadersStatusValues.Continue;
  }

  onResponseHeaders(headers: u32, end_of_stream: bool): FilterHeadersStatusValues {
    stream_context.headers.response.add(this.headerName, this.headerValue);
    return FilterHeadersStatusValues.Continue;
  }
}

registerRootContext((context_id: u32): RootContext => {
  return new AddHeaderRoot(context_id);
}, "add_header");
