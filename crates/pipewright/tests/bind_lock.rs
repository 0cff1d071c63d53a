//! Unix: binders of one socket path are serialised by the lock on `PATH.lock`. Many binders
//! racing on one name, with listeners closing all the time, never give two live listeners, and
//! every live listener holds the lock of the file that is at `PATH.lock` right now.
//!
//! With the lock file removed by its holder and no check after locking, a binder that opened
//! the old file could lock it after the holder let go and serve alongside the binder that
//! created the new one; this test caught that in every run.
#![cfg(unix)]

mod common;

use std::fs::{OpenOptions, TryLockError};
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use common::unique_name;
use pipewright::{ErrorKind, Listener, PipeName};

const BINDERS: usize = 16;
const ROUNDS: usize = 5000;

fn lock_path(name: &str) -> PathBuf {
    let mut p = PipeName::parse(name).unwrap().unix_path().into_os_string();
    p.push(".lock");
    PathBuf::from(p)
}

/// What a live listener's holder finds at `PATH.lock`; `None` when the lock is held there.
fn lock_file_problem(path: &PathBuf) -> Option<String> {
    let file = match OpenOptions::new().read(true).write(true).open(path) {
        Ok(f) => f,
        Err(e) => return Some(format!("the lock file is gone ({e})")),
    };
    match file.try_lock() {
        Err(TryLockError::WouldBlock) => None,
        Ok(()) => Some("nobody holds the lock file that is at the path".into()),
        Err(TryLockError::Error(e)) => Some(format!("lock probe failed: {e}")),
    }
}

#[test]
fn concurrent_binders_never_hold_one_name_twice() {
    let name = unique_name("bindlock");
    let lock = lock_path(&name);
    let live = Arc::new(AtomicUsize::new(0));
    let problems = Arc::new(Mutex::new(Vec::<String>::new()));
    let wins = Arc::new(AtomicUsize::new(0));
    let threads: Vec<_> = (0..BINDERS)
        .map(|_| {
            let (name, lock) = (name.clone(), lock.clone());
            let (live, problems, wins) = (live.clone(), problems.clone(), wins.clone());
            std::thread::spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .unwrap();
                let _guard = rt.enter();
                for _ in 0..ROUNDS {
                    match Listener::bind(&name) {
                        Ok(listener) => {
                            wins.fetch_add(1, Ordering::SeqCst);
                            let before = live.fetch_add(1, Ordering::SeqCst);
                            if before != 0 {
                                problems
                                    .lock()
                                    .unwrap()
                                    .push(format!("{} listeners live at once", before + 1));
                            }
                            if let Some(p) = lock_file_problem(&lock) {
                                problems.lock().unwrap().push(p);
                            }
                            std::thread::yield_now();
                            live.fetch_sub(1, Ordering::SeqCst);
                            drop(listener);
                            // Let the others race for the name rather than winning again.
                            std::thread::sleep(std::time::Duration::from_micros(200));
                        }
                        Err(e) if e.kind() == ErrorKind::AlreadyInUse => {}
                        Err(e) => problems.lock().unwrap().push(format!("bind failed: {e}")),
                    }
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let problems = problems.lock().unwrap();
    assert!(
        problems.is_empty(),
        "{} problems in {} wins, first: {:?}",
        problems.len(),
        wins.load(Ordering::SeqCst),
        &problems[..problems.len().min(5)]
    );
    eprintln!("wins: {}", wins.load(Ordering::SeqCst));
    assert!(wins.load(Ordering::SeqCst) > 0);
}
