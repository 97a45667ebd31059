//! Whose access a fault was: the guest's own wasm code, or host code working on guest
//! memory (WASI copying a mapped buffer out, the canonical ABI lowering into it).
//!
//! It matters when a fault must trap. A trap is a memory fault that wasmtime turns into
//! a guest trap, which it does only for faults in wasm code: the same fault in host code
//! would end the process. userfaultfd names the faulting thread, and a thread blocked in
//! a page fault reports its user program counter in `/proc/self/task/TID/syscall`
//! (syscall number -1, then stack pointer and PC); the compiled code of every guest
//! component is registered here, so the PC says which side it was.

use std::ops::Range;
use std::sync::RwLock;

/// The address ranges of compiled guest code in this process.
static CODE: RwLock<Vec<Range<usize>>> = RwLock::new(Vec::new());

/// Notes a compiled component's code (from `Component::image_range`). Kept for the life
/// of the process: a component's image lives as long as it is cached.
pub fn register_code(range: Range<*const u8>) {
    let range = range.start as usize..range.end as usize;
    let mut code = CODE.write().unwrap_or_else(|p| p.into_inner());
    if !code.contains(&range) {
        code.push(range);
    }
}

/// Whether the fault by `thread` (blocked in it now) was taken by wasm code. When that
/// cannot be told (no thread id, /proc unreadable), says yes: the trap is then what it
/// would have been anyway.
pub(super) fn fault_in_wasm(thread: u32) -> bool {
    match faulting_pc(thread) {
        Some(pc) => in_wasm_code(pc),
        None => true,
    }
}

fn in_wasm_code(pc: usize) -> bool {
    let code = CODE.read().unwrap_or_else(|p| p.into_inner());
    code.iter().any(|r| r.contains(&pc))
}

/// The user PC of `thread`, if it is stopped outside a system call (in a page fault).
fn faulting_pc(thread: u32) -> Option<usize> {
    if thread == 0 {
        return None;
    }
    let text = std::fs::read_to_string(format!("/proc/self/task/{thread}/syscall")).ok()?;
    parse_syscall_line(&text)
}

/// `-1 0xSP 0xPC` for a task outside a system call; anything else is not a fault.
fn parse_syscall_line(text: &str) -> Option<usize> {
    let mut words = text.split_whitespace();
    if words.next()? != "-1" {
        return None;
    }
    let _sp = words.next()?;
    let pc = words.next()?.strip_prefix("0x")?;
    usize::from_str_radix(pc, 16).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pc_of_a_task_stopped_in_a_fault_is_read() {
        assert_eq!(
            parse_syscall_line("-1 0x7ffc1000 0x5555deadbeef\n"),
            Some(0x5555_dead_beef)
        );
        // In a system call, or running: not a fault we can place.
        assert_eq!(
            parse_syscall_line("7 0x1 0x2 0x3 0x4 0x5 0x6 0x7ffc 0x5555"),
            None
        );
        assert_eq!(parse_syscall_line("running\n"), None);
        assert_eq!(parse_syscall_line(""), None);
    }

    #[test]
    fn only_registered_code_is_wasm() {
        let image = [0u8; 64];
        let range = image.as_ptr_range();
        register_code(range.clone());
        assert!(in_wasm_code(range.start as usize + 10));
        assert!(!in_wasm_code(range.end as usize));
        assert!(!in_wasm_code(in_wasm_code as *const () as usize));
        // Unknown threads count as wasm: the access traps as before.
        assert!(fault_in_wasm(0));
    }
}
