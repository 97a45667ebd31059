//! wasm32-wasip1 core modules as components, as `wasmtime run` accepts them.
//!
//! The host runs components only: guests see WASI 0.2 and `afs:client` through the
//! component linker, with their grants. A program built for wasm32-wasip1 is a core
//! module importing `wasi_snapshot_preview1`; rather than a second, preview1 linker
//! with its own view of the file system and stdio, we turn such a module into a
//! component the way `wasm-tools component new --adapt` does: `wit-component`'s
//! [`ComponentEncoder`] wraps it with wasmtime's own preview1 *command* adapter
//! (`wasi-preview1-component-adapter-provider`, the same version as wasmtime), which
//! implements preview1 on top of the WASI 0.2 imports the host already links, and
//! exports `wasi:cli/run` calling the module's `_start`. The guest then runs exactly as
//! a wasm32-wasip2 command would (same grants, same limits, same exit codes).
//!
//! A module built with `wit-bindgen` for wasm32-wasip1 (its `component-type` custom
//! sections name its other imports, `afs:client` for one) is encoded the same way.
//!
//! The encoding is deterministic, so wasmtime's on-disk code cache (keyed on the
//! component's bytes) still finds a module compiled by an earlier run. The encoder
//! does not validate its output: wasmtime validates the component when it compiles it,
//! and a cache hit is for bytes validated then (validating here too cost more than the
//! encoding itself, ~100 ms for a 15 MB module, at every run).

use std::borrow::Cow;

use anyhow::{bail, Context};
use wasi_preview1_component_adapter_provider::{
    WASI_SNAPSHOT_PREVIEW1_ADAPTER_NAME, WASI_SNAPSHOT_PREVIEW1_COMMAND_ADAPTER,
};
use wasmparser::{Parser, Payload};
use wit_component::ComponentEncoder;

/// What a file of wasm holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum WasmKind {
    Component,
    CoreModule,
}

/// A component or a core module, from the header; `None` for anything else.
pub(crate) fn wasm_kind(bytes: &[u8]) -> Option<WasmKind> {
    if Parser::is_component(bytes) {
        Some(WasmKind::Component)
    } else if Parser::is_core_wasm(bytes) {
        Some(WasmKind::CoreModule)
    } else {
        None
    }
}

/// The component to compile from `bytes`: the bytes themselves for a component, the
/// adapted module for a wasm32-wasip1 core module, an error otherwise.
pub fn component_bytes(bytes: &[u8]) -> anyhow::Result<Cow<'_, [u8]>> {
    match wasm_kind(bytes) {
        Some(WasmKind::Component) => Ok(Cow::Borrowed(bytes)),
        Some(WasmKind::CoreModule) => adapt_command(bytes).map(Cow::Owned),
        None if looks_like_text(bytes) => bail!(
            "not a wasm module or component (this looks like the text format: afs-wasm runs \
             binaries; convert it with `wasm-tools parse`)"
        ),
        None => bail!(
            "not a wasm module or component (afs-wasm runs wasm32-wasip2 components and \
             wasm32-wasip1 modules)"
        ),
    }
}

fn looks_like_text(bytes: &[u8]) -> bool {
    let first = bytes.iter().find(|b| !b.is_ascii_whitespace());
    matches!(first, Some(b'(') | Some(b';'))
}

/// The imports and exports of a core module that decide whether it is a preview1
/// command.
#[derive(Debug, Default)]
struct ModuleShape {
    /// Imports from modules other than `wasi_snapshot_preview1`, as `module::name`.
    foreign_imports: Vec<String>,
    /// Whether it imports `wasi_unstable` (preview 0).
    preview0: bool,
    exports_start: bool,
    /// `component-type` custom sections (wit-bindgen's metadata): they may explain
    /// imports other than preview1.
    has_component_type: bool,
}

fn shape(bytes: &[u8]) -> anyhow::Result<ModuleShape> {
    let mut shape = ModuleShape::default();
    for payload in Parser::new(0).parse_all(bytes) {
        match payload.context("not a valid wasm module")? {
            Payload::ImportSection(imports) => {
                for import in imports.into_imports() {
                    let import = import.context("not a valid wasm module")?;
                    match import.module {
                        WASI_SNAPSHOT_PREVIEW1_ADAPTER_NAME => {}
                        "wasi_unstable" => shape.preview0 = true,
                        m => shape.foreign_imports.push(format!("{m}::{}", import.name)),
                    }
                }
            }
            Payload::ExportSection(exports) => {
                for export in exports {
                    let export = export.context("not a valid wasm module")?;
                    shape.exports_start |= export.name == "_start";
                }
            }
            Payload::CustomSection(s) if s.name().starts_with("component-type") => {
                shape.has_component_type = true;
            }
            _ => {}
        }
    }
    Ok(shape)
}

/// Wraps a wasm32-wasip1 command module with the preview1 command adapter.
fn adapt_command(module: &[u8]) -> anyhow::Result<Vec<u8>> {
    let shape = shape(module)?;
    if shape.preview0 {
        bail!(
            "a core module that imports `wasi_unstable` (WASI preview 0): afs-wasm runs \
             WASI preview1 modules (wasm32-wasip1) and wasm32-wasip2 components"
        );
    }
    if !shape.has_component_type {
        if !shape.foreign_imports.is_empty() {
            let n = shape.foreign_imports.len();
            let mut some = shape.foreign_imports[..n.min(3)].join(", ");
            if n > 3 {
                some.push_str(&format!(" and {} more", n - 3));
            }
            bail!(
                "a core module that does not use WASI preview1 only: it imports {some} \
                 (afs-wasm runs wasm32-wasip1 command modules and wasm32-wasip2 components)"
            );
        }
        if !shape.exports_start {
            bail!(
                "a core module that does not use WASI preview1 as a command: it exports no \
                 `_start` (afs-wasm runs wasm32-wasip1 command modules, not libraries or \
                 reactors)"
            );
        }
    }
    ComponentEncoder::default()
        .validate(false)
        .module(module)
        .and_then(|e| {
            e.adapter(
                WASI_SNAPSHOT_PREVIEW1_ADAPTER_NAME,
                WASI_SNAPSHOT_PREVIEW1_COMMAND_ADAPTER,
            )
        })
        .and_then(|mut e| e.encode())
        .context(
            "a core module that the WASI preview1 command adapter cannot turn into a \
             component",
        )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A preview1 command: writes "hi\n" to stdout and exits with 7.
    const HELLO_P1: &str = r#"(module
        (import "wasi_snapshot_preview1" "fd_write"
            (func $fd_write (param i32 i32 i32 i32) (result i32)))
        (import "wasi_snapshot_preview1" "proc_exit" (func $proc_exit (param i32)))
        (memory (export "memory") 1)
        (data (i32.const 16) "hi\n")
        (func (export "_start")
            (i32.store (i32.const 0) (i32.const 16))
            (i32.store (i32.const 4) (i32.const 3))
            (drop (call $fd_write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 8)))
            (call $proc_exit (i32.const 7))))"#;

    #[test]
    fn kinds_from_headers() {
        let module = wat::parse_str(HELLO_P1).unwrap();
        assert_eq!(wasm_kind(&module), Some(WasmKind::CoreModule));
        let component = component_bytes(&module).unwrap();
        assert!(matches!(component, Cow::Owned(_)));
        assert_eq!(wasm_kind(&component), Some(WasmKind::Component));
        // A component passes through untouched.
        assert!(matches!(
            component_bytes(&component).unwrap(),
            Cow::Borrowed(_)
        ));
        let err = component_bytes(b"#!/bin/sh\necho hi\n").unwrap_err();
        assert!(
            err.to_string().contains("not a wasm module or component"),
            "{err:#}"
        );
        let err = component_bytes(HELLO_P1.as_bytes()).unwrap_err();
        assert!(err.to_string().contains("text format"), "{err:#}");
        assert!(component_bytes(b"").is_err());
    }

    /// The adapted module is a `wasi:cli/command`: it exports `wasi:cli/run` and
    /// imports WASI 0.2 interfaces only.
    #[test]
    fn preview1_commands_become_wasi_commands() {
        let module = wat::parse_str(HELLO_P1).unwrap();
        let component = component_bytes(&module).unwrap();
        // Deterministic: the code cache is keyed on these bytes.
        assert_eq!(component, component_bytes(&module).unwrap());
        let engine = wasmtime::Engine::new(&super::super::engine_config(
            &super::super::WasmFeatures::default(),
        ))
        .unwrap();
        let c = wasmtime::component::Component::new(&engine, &component).unwrap();
        let ty = c.component_type();
        let exports: Vec<_> = ty.exports(&engine).map(|(n, _)| n.to_string()).collect();
        assert!(
            exports.iter().any(|n| n.starts_with("wasi:cli/run@0.2")),
            "{exports:?}"
        );
        for (name, _) in ty.imports(&engine) {
            assert!(name.starts_with("wasi:"), "{name}");
        }
    }

    #[test]
    fn modules_that_are_not_preview1_commands_are_refused() {
        let env = wat::parse_str(
            r#"(module (import "env" "f" (func)) (func (export "_start") (call 0)))"#,
        )
        .unwrap();
        let err = component_bytes(&env).unwrap_err().to_string();
        assert!(
            err.contains("does not use WASI preview1") && err.contains("env::f"),
            "{err}"
        );

        let reactor = wat::parse_str(
            r#"(module
                (import "wasi_snapshot_preview1" "proc_exit" (func (param i32)))
                (func (export "f")))"#,
        )
        .unwrap();
        let err = component_bytes(&reactor).unwrap_err().to_string();
        assert!(err.contains("no `_start`"), "{err}");

        let p0 = wat::parse_str(
            r#"(module
                (import "wasi_unstable" "proc_exit" (func (param i32)))
                (func (export "_start")))"#,
        )
        .unwrap();
        let err = component_bytes(&p0).unwrap_err().to_string();
        assert!(err.contains("preview 0"), "{err}");

        // A preview1 function the adapter does not have.
        let bogus = wat::parse_str(
            r#"(module
                (import "wasi_snapshot_preview1" "no_such_call" (func))
                (memory (export "memory") 1)
                (func (export "_start") (call 0)))"#,
        )
        .unwrap();
        let err = component_bytes(&bogus).unwrap_err();
        assert!(
            format!("{err:#}").contains("preview1 command adapter cannot"),
            "{err:#}"
        );
    }
}
