;; not_proxy_wasm.wasm -- a valid Wasm module that is not a Proxy-Wasm
;; plugin: a memory and one function, no proxy_abi_version_* marker.
;; pwasm inspect and the module reader must say it cannot run as a
;; plugin; pw_module_load refuses it.
(module
  (memory (export "memory") 1)
  (func (export "add") (param i32 i32) (result i32)
    (i32.add (local.get 0) (local.get 1))))
