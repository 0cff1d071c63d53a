//! Windows: `K32GetProcessMemoryInfo` and `GetProcessHandleCount` on this process. Wine's
//! `GetProcessHandleCount` is a stub that reports 0; then the handles are counted in the
//! system handle table (`NtQuerySystemInformation(SystemHandleInformation)`), which Wine
//! fills from its server.

use super::Sample;
use windows_sys::Wdk::System::SystemInformation::NtQuerySystemInformation;
use windows_sys::Win32::System::ProcessStatus::{K32GetProcessMemoryInfo, PROCESS_MEMORY_COUNTERS};
use windows_sys::Win32::System::Threading::{
    GetCurrentProcess, GetCurrentProcessId, GetProcessHandleCount,
};

/// `SystemHandleInformation`.
const SYSTEM_HANDLE_INFORMATION: i32 = 16;
/// `STATUS_INFO_LENGTH_MISMATCH`.
const INFO_LENGTH_MISMATCH: i32 = 0xC000_0004_u32 as i32;
/// One `SYSTEM_HANDLE_TABLE_ENTRY_INFO` (x64): the owner's pid in its first 16 bits (Windows
/// stores a USHORT there, Wine a ULONG; both little-endian).
const ENTRY_LEN: usize = 24;
/// The entries start after the ULONG count, aligned to 8.
const ENTRIES_AT: usize = 8;

/// Working set, committed private memory and open handles of this process (zeros when a
/// call fails).
pub fn sample() -> Sample {
    let mut counters = PROCESS_MEMORY_COUNTERS {
        cb: std::mem::size_of::<PROCESS_MEMORY_COUNTERS>() as u32,
        ..Default::default()
    };
    // SAFETY: GetCurrentProcess returns a pseudo-handle that needs no closing; `counters` is a
    // live, writable PROCESS_MEMORY_COUNTERS whose size is passed as `cb`.
    let mem_ok = unsafe {
        K32GetProcessMemoryInfo(
            GetCurrentProcess(),
            &mut counters,
            std::mem::size_of::<PROCESS_MEMORY_COUNTERS>() as u32,
        )
    } != 0;
    let mut count: u32 = 0;
    // SAFETY: the pseudo-handle of this process and a live u32 to write the count into.
    let handles_ok = unsafe { GetProcessHandleCount(GetCurrentProcess(), &mut count) } != 0;
    let handles = if handles_ok && count > 0 {
        u64::from(count)
    } else {
        handles_in_system_table().unwrap_or(0)
    };
    Sample {
        rss: if mem_ok {
            counters.WorkingSetSize as u64
        } else {
            0
        },
        private: if mem_ok {
            counters.PagefileUsage as u64
        } else {
            0
        },
        handles,
    }
}

/// This process's entries in the system handle table.
fn handles_in_system_table() -> Option<u64> {
    // SAFETY: no arguments; returns this process's id.
    let pid = unsafe { GetCurrentProcessId() } as u16;
    let mut buf: Vec<u64> = vec![0; 64 * 1024];
    for _ in 0..8 {
        let bytes = buf.len() * 8;
        let mut needed: u32 = 0;
        // SAFETY: `buf` is a live, writable, 8-aligned buffer of `bytes` bytes, and `needed` a
        // live u32; the call writes at most `bytes` bytes.
        let status = unsafe {
            NtQuerySystemInformation(
                SYSTEM_HANDLE_INFORMATION,
                buf.as_mut_ptr().cast(),
                bytes as u32,
                &mut needed,
            )
        };
        if status == INFO_LENGTH_MISMATCH {
            let want = (needed as usize).max(bytes * 2) / 8 + 1024;
            buf.resize(want, 0);
            continue;
        }
        if status < 0 {
            return None;
        }
        let raw: Vec<u8> = buf.iter().flat_map(|w| w.to_le_bytes()).collect();
        let n = u32::from_le_bytes(raw.get(..4)?.try_into().ok()?) as usize;
        let entries = raw.get(ENTRIES_AT..)?;
        let n = n.min(entries.len() / ENTRY_LEN);
        let mine = entries
            .chunks_exact(ENTRY_LEN)
            .take(n)
            .filter(|e| u16::from_le_bytes([e[0], e[1]]) == pid)
            .count();
        return Some(mine as u64);
    }
    None
}

/// Handle kinds are not listed on Windows (the count is what the report gives).
pub fn describe() -> String {
    "-".to_owned()
}
