//! Wasm proposals the engine accepts, named as `wasmtime run -W NAME[=y|n]` names them.
//!
//! The defaults are wasmtime 48's (the WebAssembly 3.0 set: exceptions, GC,
//! function references, tail calls, SIMD and relaxed SIMD, multi-memory, memory64,
//! extended constants; wide arithmetic and custom page sizes off), except threads:
//! guest memories are host memories the pager maps files into, one store each, and
//! [`HostMemoryCreator`](crate::memory::HostMemoryCreator) cannot make the shared
//! memories threads need. The `gc` cargo feature of wasmtime is on for exceptions and
//! GC (as in the `wasmtime` CLI); their heaps come from the same memory creator.

use std::collections::BTreeMap;
use std::fmt;

use wasmtime::Config;

/// A wasm proposal that can be turned on or off.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[non_exhaustive]
pub enum WasmFeature {
    BulkMemory,
    CustomPageSizes,
    Exceptions,
    ExtendedConst,
    FunctionReferences,
    Gc,
    Memory64,
    MultiMemory,
    MultiValue,
    ReferenceTypes,
    RelaxedSimd,
    Simd,
    TailCall,
    WideArithmetic,
}

/// A feature, its `-W` name, whether wasmtime 48 (with the cargo features we build it
/// with) enables it by default, and what it does to a [`Config`].
type Entry = (
    WasmFeature,
    &'static str,
    bool,
    fn(&mut Config, bool) -> &mut Config,
);

const FEATURES: &[Entry] = &[
    (
        WasmFeature::BulkMemory,
        "bulk-memory",
        true,
        Config::wasm_bulk_memory,
    ),
    (
        WasmFeature::CustomPageSizes,
        "custom-page-sizes",
        false,
        Config::wasm_custom_page_sizes,
    ),
    (
        WasmFeature::Exceptions,
        "exceptions",
        true,
        Config::wasm_exceptions,
    ),
    (
        WasmFeature::ExtendedConst,
        "extended-const",
        true,
        Config::wasm_extended_const,
    ),
    (
        WasmFeature::FunctionReferences,
        "function-references",
        true,
        Config::wasm_function_references,
    ),
    (WasmFeature::Gc, "gc", true, Config::wasm_gc),
    (
        WasmFeature::Memory64,
        "memory64",
        true,
        Config::wasm_memory64,
    ),
    (
        WasmFeature::MultiMemory,
        "multi-memory",
        true,
        Config::wasm_multi_memory,
    ),
    (
        WasmFeature::MultiValue,
        "multi-value",
        true,
        Config::wasm_multi_value,
    ),
    (
        WasmFeature::ReferenceTypes,
        "reference-types",
        true,
        Config::wasm_reference_types,
    ),
    (
        WasmFeature::RelaxedSimd,
        "relaxed-simd",
        true,
        Config::wasm_relaxed_simd,
    ),
    (WasmFeature::Simd, "simd", true, Config::wasm_simd),
    (
        WasmFeature::TailCall,
        "tail-call",
        true,
        Config::wasm_tail_call,
    ),
    (
        WasmFeature::WideArithmetic,
        "wide-arithmetic",
        false,
        Config::wasm_wide_arithmetic,
    ),
];

/// `wasmtime run -W` proposals afs-wasm refuses, and why.
const REFUSED: &[(&str, &str)] = &[
    (
        "threads",
        "shared memories cannot be afs-wasm guest memories (each is one guest's host memory, \
         which the pager maps files into), and there is no wasi-threads",
    ),
    (
        "shared-memory",
        "shared memories cannot be afs-wasm guest memories (each is one guest's host memory, \
         which the pager maps files into)",
    ),
    (
        "shared-everything-threads",
        "shared memories cannot be afs-wasm guest memories (each is one guest's host memory, \
         which the pager maps files into)",
    ),
    (
        "stack-switching",
        "this build of wasmtime has no stack switching",
    ),
    (
        "component-model",
        "guests are components: the component model is always on",
    ),
];

impl WasmFeature {
    /// Every feature, in `-W` name order.
    pub fn all() -> impl Iterator<Item = WasmFeature> {
        FEATURES.iter().map(|f| f.0)
    }

    fn entry(self) -> &'static Entry {
        FEATURES
            .iter()
            .find(|f| f.0 == self)
            .expect("every feature is in FEATURES")
    }

    /// The name `wasmtime run -W` gives it, like `tail-call`.
    pub fn name(self) -> &'static str {
        self.entry().1
    }

    /// Whether the engine accepts it when nothing says otherwise.
    pub fn default_enabled(self) -> bool {
        self.entry().2
    }

    /// The feature called `name` (as `-W` names it). Proposals afs-wasm cannot run
    /// (threads, shared memories, stack switching) are an error saying why.
    pub fn from_name(name: &str) -> Result<WasmFeature, FeatureError> {
        if let Some(f) = FEATURES.iter().find(|f| f.1 == name) {
            return Ok(f.0);
        }
        if let Some((_, why)) = REFUSED.iter().find(|r| r.0 == name) {
            return Err(FeatureError::Refused {
                name: name.to_string(),
                why,
            });
        }
        Err(FeatureError::Unknown(name.to_string()))
    }
}

/// A wasm feature name that is not one of ours.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FeatureError {
    #[error("{0}: unknown wasm feature")]
    Unknown(String),
    /// A proposal wasmtime knows that afs-wasm cannot run.
    #[error("{name}: not supported by afs-wasm: {why}")]
    Refused { name: String, why: &'static str },
}

impl fmt::Display for WasmFeature {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Which proposals to turn on or off, over the defaults ([`WasmFeature::default_enabled`]).
/// The engine configuration applies them ([`engine_config`](super::engine_config)).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WasmFeatures {
    set: BTreeMap<WasmFeature, bool>,
}

impl WasmFeatures {
    /// Turns `feature` on or off (the last word on a feature wins).
    pub fn set(&mut self, feature: WasmFeature, enable: bool) -> &mut Self {
        self.set.insert(feature, enable);
        self
    }

    /// What was said about `feature`, if anything.
    pub fn get(&self, feature: WasmFeature) -> Option<bool> {
        self.set.get(&feature).copied()
    }

    /// Whether the engine accepts `feature`.
    pub fn enabled(&self, feature: WasmFeature) -> bool {
        self.get(feature).unwrap_or(feature.default_enabled())
    }

    /// The features set, with their values.
    pub fn iter(&self) -> impl Iterator<Item = (WasmFeature, bool)> + '_ {
        self.set.iter().map(|(f, on)| (*f, *on))
    }

    pub(crate) fn apply(&self, config: &mut Config) {
        for (feature, enable) in self.iter() {
            (feature.entry().3)(config, enable);
        }
    }
}

/// `exceptions=n,wide-arithmetic=y`, as `-W` would say it.
impl fmt::Display for WasmFeatures {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, (feature, on)) in self.iter().enumerate() {
            let sep = if i == 0 { "" } else { "," };
            write!(f, "{sep}{feature}={}", if on { "y" } else { "n" })?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use wasmtime::{Engine, Instance, Module, Store};

    use super::super::engine_config;
    use super::*;

    fn engine(features: &[(WasmFeature, bool)]) -> anyhow::Result<Engine> {
        let mut f = WasmFeatures::default();
        for (feature, on) in features {
            f.set(*feature, *on);
        }
        Ok(Engine::new(&engine_config(&f))?)
    }

    /// Compiles `wat`, instantiates it and calls its `run` export with `arg`.
    fn run(engine: &Engine, wat: &str, arg: i32) -> anyhow::Result<i32> {
        let module = Module::new(engine, wat)?;
        let mut store = Store::new(engine, ());
        store.set_epoch_deadline(super::super::limits::NO_DEADLINE);
        let instance = Instance::new(&mut store, &module, &[])?;
        let f = instance.get_typed_func::<i32, i32>(&mut store, "run")?;
        Ok(f.call(&mut store, arg)?)
    }

    /// Throws its argument and catches it.
    const EXCEPTIONS: &str = r#"(module
        (tag $e (param i32))
        (func (export "run") (param i32) (result i32)
            (block $h (result i32)
                (try_table (catch $e $h)
                    (throw $e (local.get 0)))
                (i32.const -1))))"#;

    /// Exceptions are on by default, as in wasmtime 48 with GC built in: a module that
    /// throws and catches compiles and runs (the exception object lives in a GC heap
    /// made by our memory creator); `-W exceptions=n` refuses it.
    #[test]
    fn exceptions_are_on_by_default_and_can_be_turned_off() {
        let on = engine(&[]).unwrap();
        assert_eq!(run(&on, EXCEPTIONS, 42).unwrap(), 42);
        let explicit = engine(&[(WasmFeature::Exceptions, true)]).unwrap();
        assert_eq!(run(&explicit, EXCEPTIONS, 7).unwrap(), 7);
        let off = engine(&[(WasmFeature::Exceptions, false)]).unwrap();
        let err = run(&off, EXCEPTIONS, 42).unwrap_err();
        assert!(format!("{err:#}").contains("exceptions"), "{err:#}");
    }

    /// GC structs work in host memories too, and `-W gc=n` refuses them.
    #[test]
    fn gc_structs_run_and_can_be_turned_off() {
        const GC: &str = r#"(module
            (type $p (struct (field i32)))
            (func (export "run") (param i32) (result i32)
                (struct.get $p 0 (struct.new $p (i32.add (local.get 0) (i32.const 1))))))"#;
        assert_eq!(run(&engine(&[]).unwrap(), GC, 41).unwrap(), 42);
        let off = engine(&[(WasmFeature::Gc, false)]).unwrap();
        assert!(run(&off, GC, 41).is_err());
    }

    /// Off-by-default proposals turn on; small pages still trap past the end.
    #[test]
    fn wide_arithmetic_and_custom_page_sizes_turn_on() {
        const WIDE: &str = r#"(module
            (func (export "run") (param i32) (result i32)
                (i64.add128 (i64.const -1) (i64.const 0) (i64.extend_i32_u (local.get 0))
                    (i64.const 0))
                (drop)
                (i32.wrap_i64)))"#;
        assert!(run(&engine(&[]).unwrap(), WIDE, 1).is_err());
        let wide = engine(&[(WasmFeature::WideArithmetic, true)]).unwrap();
        assert_eq!(run(&wide, WIDE, 1).unwrap(), 0);

        const SMALL: &str = r#"(module
            (memory 10 10 (pagesize 1))
            (func (export "run") (param i32) (result i32) (i32.load8_u (local.get 0))))"#;
        assert!(run(&engine(&[]).unwrap(), SMALL, 0).is_err());
        let small = engine(&[(WasmFeature::CustomPageSizes, true)]).unwrap();
        assert_eq!(run(&small, SMALL, 9).unwrap(), 0);
        let err = run(&small, SMALL, 10).unwrap_err();
        assert!(err.downcast_ref::<wasmtime::Trap>().is_some(), "{err:#}");
    }

    /// Turning off a proposal others build on is left to wasmtime, as in `wasmtime
    /// run`: modules using it are refused, others still run.
    #[test]
    fn turning_off_reference_types_refuses_their_instructions() {
        const REFS: &str = r#"(module
            (func (export "run") (param i32) (result i32) (ref.is_null (ref.null func))))"#;
        const PLAIN: &str = r#"(module
            (func (export "run") (param i32) (result i32) (local.get 0)))"#;
        assert_eq!(run(&engine(&[]).unwrap(), REFS, 0).unwrap(), 1);
        let off = engine(&[(WasmFeature::ReferenceTypes, false)]).unwrap();
        let err = run(&off, REFS, 0).unwrap_err();
        assert!(format!("{err:#}").contains("reference types"), "{err:#}");
        assert_eq!(run(&off, PLAIN, 5).unwrap(), 5);
    }

    #[test]
    fn names_round_trip_and_refusals_say_why() {
        for f in WasmFeature::all() {
            assert_eq!(WasmFeature::from_name(f.name()), Ok(f));
        }
        assert_eq!(WasmFeature::all().count(), FEATURES.len());
        let err = WasmFeature::from_name("threads").unwrap_err().to_string();
        assert!(
            err.contains("not supported") && err.contains("shared memories"),
            "{err}"
        );
        let err = WasmFeature::from_name("frobnicate").unwrap_err();
        assert_eq!(err, FeatureError::Unknown("frobnicate".into()));
        let mut f = WasmFeatures::default();
        assert!(f.enabled(WasmFeature::Exceptions));
        assert!(!f.enabled(WasmFeature::WideArithmetic));
        f.set(WasmFeature::Exceptions, false)
            .set(WasmFeature::WideArithmetic, true);
        assert!(!f.enabled(WasmFeature::Exceptions));
        assert!(f.enabled(WasmFeature::WideArithmetic));
        assert_eq!(f.iter().count(), 2);
        assert_eq!(f.to_string(), "exceptions=n,wide-arithmetic=y");
    }
}
