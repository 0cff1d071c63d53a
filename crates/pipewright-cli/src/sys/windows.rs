//! Windows calls: hiding the console window and listing `\\.\pipe\`.

use std::io;
use std::os::windows::io::{AsRawHandle, FromRawHandle, OwnedHandle};

use windows_sys::Wdk::Storage::FileSystem::{
    FileDirectoryInformation, NtQueryDirectoryFile, FILE_DIRECTORY_INFORMATION,
};
use windows_sys::Win32::Foundation::{
    GetLastError, RtlNtStatusToDosError, ERROR_NO_MORE_FILES, INVALID_HANDLE_VALUE,
    STATUS_NO_MORE_FILES,
};
use windows_sys::Win32::Storage::FileSystem::{
    CreateFileW, FindClose, FindFirstFileW, FindNextFileW, FILE_LIST_DIRECTORY, FILE_SHARE_READ,
    FILE_SHARE_WRITE, OPEN_EXISTING, WIN32_FIND_DATAW,
};
use windows_sys::Win32::System::Console::GetConsoleWindow;
use windows_sys::Win32::System::IO::IO_STATUS_BLOCK;
use windows_sys::Win32::UI::WindowsAndMessaging::{ShowWindow, SW_HIDE};

use super::PipeEntry;

/// Raw overlapped I/O with no runtime and no pipewright stream in the way: the baseline that
/// `bench stream` reports its figures against, measured in the same run.
pub mod baseline;

/// Hides this process's console window, if it has one; silently does nothing otherwise.
pub fn hide_console_window() {
    // SAFETY: no arguments; returns a window handle or null.
    let window = unsafe { GetConsoleWindow() };
    if window.is_null() {
        tracing::debug!("no console window to hide");
        return;
    }
    // SAFETY: `window` is the console window handle the system just returned.
    unsafe { ShowWindow(window, SW_HIDE) };
}

fn wide(s: &str) -> Vec<u16> {
    s.encode_utf16().chain(std::iter::once(0)).collect()
}

fn utf16_name(units: &[u16]) -> String {
    String::from_utf16_lossy(units)
}

/// Lists the pipes in `\\.\pipe\`: `FindFirstFileW` first, then `NtQueryDirectoryFile` on the
/// pipe device (Wine 8 fails the first with `ERROR_BAD_DEV_TYPE`).
pub fn list_pipes() -> io::Result<Vec<PipeEntry>> {
    match find_files() {
        Ok(entries) => Ok(entries),
        Err(first) => {
            tracing::debug!(
                "FindFirstFileW on \\\\.\\pipe\\* failed ({first}); trying NtQueryDirectoryFile"
            );
            query_directory().map_err(|second| {
                io::Error::new(
                    second.kind(),
                    format!("FindFirstFileW(\\\\.\\pipe\\*): {first}; NtQueryDirectoryFile(\\\\.\\pipe\\): {second}"),
                )
            })
        }
    }
}

fn find_files() -> io::Result<Vec<PipeEntry>> {
    let pattern = wide(r"\\.\pipe\*");
    // SAFETY: zeroed plain-data struct.
    let mut data: WIN32_FIND_DATAW = unsafe { std::mem::zeroed() };
    // SAFETY: NUL-terminated pattern and a valid out pointer.
    let find = unsafe { FindFirstFileW(pattern.as_ptr(), &mut data) };
    if find == INVALID_HANDLE_VALUE {
        return Err(io::Error::last_os_error());
    }
    let mut entries = Vec::new();
    loop {
        let len = data
            .cFileName
            .iter()
            .position(|&c| c == 0)
            .unwrap_or(data.cFileName.len());
        entries.push(PipeEntry {
            name: utf16_name(&data.cFileName[..len]),
            instances: Some(data.nFileSizeLow),
            max_instances: None,
        });
        // SAFETY: `find` is the open search handle, `data` a valid out pointer.
        if unsafe { FindNextFileW(find, &mut data) } == 0 {
            // SAFETY: no arguments.
            let err = unsafe { GetLastError() };
            // SAFETY: `find` is open and closed once here.
            unsafe { FindClose(find) };
            if err == ERROR_NO_MORE_FILES {
                return Ok(entries);
            }
            return Err(io::Error::from_raw_os_error(err as i32));
        }
    }
}

fn query_directory() -> io::Result<Vec<PipeEntry>> {
    let path = wide(r"\\.\pipe\");
    // SAFETY: NUL-terminated path; no security attributes or template.
    let raw = unsafe {
        CreateFileW(
            path.as_ptr(),
            FILE_LIST_DIRECTORY,
            FILE_SHARE_READ | FILE_SHARE_WRITE,
            std::ptr::null(),
            OPEN_EXISTING,
            0,
            std::ptr::null_mut(),
        )
    };
    if raw == INVALID_HANDLE_VALUE {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: a fresh handle we own.
    let dir = unsafe { OwnedHandle::from_raw_handle(raw) };
    // u64 elements keep the entries 8-byte aligned.
    let mut buf = vec![0u64; 8 * 1024];
    let mut entries = Vec::new();
    let mut restart = true;
    loop {
        // SAFETY: zeroed plain-data struct.
        let mut status_block: IO_STATUS_BLOCK = unsafe { std::mem::zeroed() };
        // SAFETY: a synchronous directory handle, a writable buffer of the length given,
        // no event, APC or file-name filter.
        let status = unsafe {
            NtQueryDirectoryFile(
                dir.as_raw_handle(),
                std::ptr::null_mut(),
                None,
                std::ptr::null(),
                &mut status_block,
                buf.as_mut_ptr().cast(),
                (buf.len() * 8) as u32,
                FileDirectoryInformation,
                false,
                std::ptr::null(),
                restart,
            )
        };
        restart = false;
        if status == STATUS_NO_MORE_FILES {
            return Ok(entries);
        }
        if status < 0 {
            // SAFETY: converts a status code; no pointers.
            let code = unsafe { RtlNtStatusToDosError(status) };
            return Err(io::Error::from_raw_os_error(code as i32));
        }
        let bytes = buf.as_ptr().cast::<u8>();
        let mut offset = 0usize;
        loop {
            // SAFETY: the system wrote a chain of FILE_DIRECTORY_INFORMATION records into
            // `buf`, each at an aligned offset inside it; the name follows the header.
            let (info, name) = unsafe {
                let record = bytes.add(offset);
                let info = &*record.cast::<FILE_DIRECTORY_INFORMATION>();
                let name = std::slice::from_raw_parts(
                    record
                        .add(std::mem::offset_of!(FILE_DIRECTORY_INFORMATION, FileName))
                        .cast::<u16>(),
                    info.FileNameLength as usize / 2,
                );
                (info, name)
            };
            let max = info.AllocationSize;
            entries.push(PipeEntry {
                name: utf16_name(name),
                instances: u32::try_from(info.EndOfFile).ok(),
                max_instances: u32::try_from(max).ok().filter(|&m| m > 0 && m < 255),
            });
            if info.NextEntryOffset == 0 {
                break;
            }
            offset += info.NextEntryOffset as usize;
        }
    }
}
