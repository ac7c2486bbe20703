// auth_call: an HTTP callout from the AssemblyScript SDK (@solo-io/proxy-runtime
// 0.1.8): each request waits while the plugin asks the auth service, the
// upstream named by the plugin configuration (default `auth_service`), with
// `GET /auth` and the request's `authorization` header.
//
// * answer 200: the request goes on (continue_request), with
//   `x-as-auth: <the answer's x-auth-user>` added;
// * any other status: 403 "denied by as_auth_call\n";
// * no answer (timeout, connection refused; the callback gets 0 headers):
//   503 "auth service unavailable\n".
//
// The runtime's RootContext.httpCall keeps the calling context and makes it
// the effective context before the callback, as every SDK does. Register
// with root_id=auth_call (the runtime looks the factory up by plugin_root_id).

export * from "@solo-io/proxy-runtime/proxy";

import {
  RootContext,
  Context,
  registerRootContext,
  FilterHeadersStatusValues,
  GrpcStatusValues,
  LogLevelValues,
  WasmResultValues,
  Headers,
  HeaderPair,
  log,
  stream_context,
  send_local_response,
  continue_request,
} from "@solo-io/proxy-runtime";
import { BufferTypeValues, get_buffer_bytes } from "@solo-io/proxy-runtime/runtime";

function pair(key: string, value: string): HeaderPair {
  return new HeaderPair(String.UTF8.encode(key), String.UTF8.encode(value));
}

function answer(origin: Context, headers: u32, body_size: usize, trailers: u32): void {
  if (headers == 0) {
    log(LogLevelValues.warn, "as_auth_call: no answer from the auth service");
    send_local_response(503, "", String.UTF8.encode("auth service unavailable\n"), [],
                        GrpcStatusValues.Unknown);
    return;
  }
  let status = stream_context.headers.http_callback.get(":status");
  if (status != "200") {
    log(LogLevelValues.info, "as_auth_call: denied (" + status + ")");
    send_local_response(403, "", String.UTF8.encode("denied by as_auth_call\n"), [],
                        GrpcStatusValues.Unknown);
    return;
  }
  let user = stream_context.headers.http_callback.get("x-auth-user");
  stream_context.headers.request.add("x-as-auth", user);
  continue_request();
}

class AuthRoot extends RootContext {
  upstream: string = "auth_service";

  constructor(context_id: u32) {
    super(context_id);
  }

  // RootContext.onConfigure of 0.1.8 passes the size as a pointer (see
  // add_header.ts): read the configuration with proper pointers.
  onConfigure(configuration_size: u32): bool {
    if (configuration_size > 0) {
      let bytes = get_buffer_bytes(BufferTypeValues.PluginConfiguration, 0, configuration_size);
      let config = String.UTF8.decode(bytes);
      if (config.length > 0) this.upstream = config;
    }
    log(LogLevelValues.info, "as_auth_call: asking " + this.upstream);
    return true;
  }

  createContext(context_id: u32): Context {
    return new AuthContext(context_id, this);
  }
}

class AuthContext extends Context {
  root: AuthRoot;

  constructor(context_id: u32, root: AuthRoot) {
    super(context_id, root);
    this.root = root;
  }

  onRequestHeaders(headers: u32, end_of_stream: bool): FilterHeadersStatusValues {
    let call: Headers = [];
    call.push(pair(":method", "GET"));
    call.push(pair(":path", "/auth"));
    call.push(pair(":authority", "auth"));
    let authorization = stream_context.headers.request.get("authorization");
    if (authorization.length > 0) call.push(pair("authorization", authorization));
    let rc = this.root.httpCall(this.root.upstream, call, new ArrayBuffer(0), [], 1000, this, answer);
    if (rc != WasmResultValues.Ok) {
      log(LogLevelValues.error, "as_auth_call: call refused: " + rc.toString());
      send_local_response(500, "", String.UTF8.encode("cannot ask the auth service\n"), [],
                          GrpcStatusValues.Unknown);
    }
    return FilterHeadersStatusValues.StopIteration;
  }
}

registerRootContext((context_id: u32): RootContext => {
  return new AuthRoot(context_id);
}, "auth_call");
