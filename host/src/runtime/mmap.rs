//! `afs:client/mmap.map`, implemented by hand, and the `mapping` resource.
//!
//! The guest names the region to map over as a `list<u8>`. Lifted as a
//! [`WasmList<u8>`] (not a `Vec<u8>`, which would copy it), `as_le_slice` gives the
//! region's exact host address and length, bounds-checked against the guest's memory by
//! wasmtime; [`GuestRegion::find`] then checks it against the live guest memories
//! before the pager maps file pages over it with `MAP_FIXED`.

use wasmtime::component::{Linker, Resource, WasmList};
use wasmtime::StoreContextMut;

use super::bindings::afs::client::files::{Access, Error, ErrorCode, HostMapping};
use super::errors::{pager_error, wit_error};
use super::files::FileRes;
use super::guest::GuestState;
use crate::memory::{self, GuestRegion, RegionError};
use crate::pager::{self, MapRequest, Mapping};

/// A live mapping, as the guest's `mapping` resource. Dropping the resource unmaps it
/// (storing its dirty pages first).
pub struct MappingRes(Mapping);

impl MappingRes {
    /// The bytes the mapping pins (its region, whole pages).
    fn pinned(&self) -> u64 {
        self.0.length().div_ceil(pager::PAGE as u64) * pager::PAGE as u64
    }
}

impl GuestState {
    /// Unmaps a mapping the guest dropped (or left at exit): a store that fails is the
    /// guest's failure, reported at exit; one that finds no server is retried.
    fn unmap(&mut self, m: MappingRes) {
        self.afs.mapped_bytes = self.afs.mapped_bytes.saturating_sub(m.pinned());
        let (path, node) = (m.0.path().to_string(), m.0.node());
        let result = m.0.unmap();
        self.afs.stored(&path, &node, result);
    }
}

impl From<Access> for pager::Access {
    fn from(a: Access) -> Self {
        match a {
            Access::Read => pager::Access::Read,
            Access::ReadWrite => pager::Access::ReadWrite,
        }
    }
}

/// Defines `afs:client/mmap@0.1.0#map` in `linker`.
pub(crate) fn add_to_linker(linker: &mut Linker<GuestState>) -> wasmtime::Result<()> {
    type Params = (Resource<FileRes>, u64, u64, WasmList<u8>, Access);
    linker.instance("afs:client/mmap@0.1.0")?.func_wrap(
        "map",
        |mut store: StoreContextMut<'_, GuestState>,
         (file, offset, length, region, access): Params| {
            let bytes = region.as_le_slice(&store);
            let (ptr, len) = (bytes.as_ptr(), bytes.len());
            let result = store
                .data_mut()
                .map(&file, offset, length, ptr, len, access)?;
            Ok((result,))
        },
    )
}

fn invalid(path: &str, why: impl std::fmt::Display) -> Error {
    wit_error(ErrorCode::InvalidArgument, format!("{path}: {why}"))
}

impl GuestState {
    /// Checks everything about a map request the guest controls, then asks the pager.
    fn map(
        &mut self,
        file: &Resource<FileRes>,
        offset: u64,
        length: u64,
        ptr: *const u8,
        len: usize,
        access: Access,
    ) -> wasmtime::Result<Result<Resource<MappingRes>, Error>> {
        let f = self.table.get(file)?;
        let path = f.path.clone();
        if let Err(e) = self.check_limits(&path, len) {
            return Ok(Err(e));
        }
        let request = match self.check_map(f, offset, length, ptr, len, access) {
            Ok(region) => MapRequest {
                path: path.clone(),
                node: f.node.clone(),
                offset,
                length,
                region,
                access: access.into(),
                cache: self.afs.host.cache.clone(),
            },
            Err(e) => return Ok(Err(e)),
        };
        // The guest's trap messages need the base of the memory it maps into.
        if let Some(m) = memory::memory_by_id(request.region.memory_id()) {
            if !self.afs.memory_bases.contains(&m.base) {
                self.afs.memory_bases.push(m.base);
            }
        }
        let started = std::time::Instant::now();
        match self.afs.host.pager.map(request) {
            Ok(mapping) => {
                tracing::debug!(%path, offset, length, ?access, took = ?started.elapsed(), "map");
                let res = self.table.push(MappingRes(mapping))?;
                self.afs.mappings.insert(res.rep());
                self.afs.mapped_bytes += len as u64;
                Ok(Ok(res))
            }
            Err(e) => Ok(Err(pager_error(&path, &e))),
        }
    }

    /// The guest's mapping limits: how many, and how many bytes (the region's length:
    /// every page of it may be faulted in, past the end of the file too).
    fn check_limits(&self, path: &str, len: usize) -> Result<(), Error> {
        let limits = &self.limiter.limits;
        if self.afs.mappings.len() >= limits.max_mappings {
            return Err(wit_error(
                ErrorCode::LimitExceeded,
                format!(
                    "{path}: this guest holds {} mappings, its limit (--max-mappings)",
                    limits.max_mappings
                ),
            ));
        }
        let total = self.afs.mapped_bytes.saturating_add(len as u64);
        if total > limits.max_mapped_bytes {
            return Err(wit_error(
                ErrorCode::LimitExceeded,
                format!(
                    "{path}: mapping {len} more bytes would take this guest to {total}, past \
                     its limit of {} mapped bytes (--max-mapped-bytes)",
                    limits.max_mapped_bytes
                ),
            ));
        }
        Ok(())
    }

    fn check_map(
        &self,
        f: &FileRes,
        offset: u64,
        length: u64,
        ptr: *const u8,
        len: usize,
        access: Access,
    ) -> Result<GuestRegion, Error> {
        let path = &f.path;
        pager::check_map_request(path, &f.node, offset, length, (ptr as usize, len))
            .map_err(|e| pager_error(path, &e))?;
        // The open decided the access from the grants on what the path resolved to (a
        // read-write open needs a read-write grant there): the mapping follows it.
        if access == Access::ReadWrite && f.access != Access::ReadWrite {
            return Err(wit_error(
                ErrorCode::ReadOnly,
                format!("{path}: read-write mapping of a file opened read-only"),
            ));
        }
        GuestRegion::find(ptr, len).map_err(|e| {
            let why = match e {
                RegionError::PastEnd { .. } => "ends past the guest's memory",
                _ => "is not in the guest's memory",
            };
            // Messages give the guest its own addresses, never the host's.
            let at = match memory::memory_containing(ptr as usize) {
                Some(m) => format!("at {:#x}", ptr as usize - m.base),
                None => "outside the guest's memory".to_string(),
            };
            invalid(path, format!("region {at} of {len} bytes {why}"))
        })
    }

    /// Unmaps every mapping the guest still holds (at exit, before its memory goes).
    pub(crate) fn unmap_all(&mut self) {
        for rep in std::mem::take(&mut self.afs.mappings) {
            if let Ok(m) = self.table.delete(Resource::<MappingRes>::new_own(rep)) {
                self.unmap(m);
            }
        }
    }
}

impl HostMapping for GuestState {
    fn offset(&mut self, m: Resource<MappingRes>) -> wasmtime::Result<u64> {
        Ok(self.table.get(&m)?.0.offset())
    }

    fn length(&mut self, m: Resource<MappingRes>) -> wasmtime::Result<u64> {
        Ok(self.table.get(&m)?.0.length())
    }

    fn data_version(&mut self, m: Resource<MappingRes>) -> wasmtime::Result<u64> {
        Ok(self.table.get(&m)?.0.data_version())
    }

    fn sync(&mut self, m: Resource<MappingRes>) -> wasmtime::Result<Result<(), Error>> {
        let m = &self.table.get(&m)?.0;
        Ok(m.sync().map_err(|e| pager_error(m.path(), &e)))
    }

    fn revalidate_now(&mut self, m: Resource<MappingRes>) -> wasmtime::Result<Result<u64, Error>> {
        let m = &self.table.get(&m)?.0;
        Ok(m.revalidate_now().map_err(|e| pager_error(m.path(), &e)))
    }

    fn drop(&mut self, m: Resource<MappingRes>) -> wasmtime::Result<()> {
        self.afs.mappings.remove(&m.rep());
        let m = self.table.delete(m)?;
        self.unmap(m);
        Ok(())
    }
}
