;; bad_headers.wasm -- an ABI 0.2.1 module whose proxy_on_request_headers
;; has neither header callback signature, (context_id) -> action: a host
;; must refuse it at load, naming both signatures it accepts.
(module
  (memory (export "memory") 1)
  (func (export "proxy_abi_version_0_2_1"))
  (func (export "proxy_on_memory_allocate") (param i32) (result i32) (i32.const 4096))
  (func (export "proxy_on_request_headers") (param i32) (result i32) (i32.const 0)))
