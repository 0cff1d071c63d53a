//! Raw Windows shared-memory ping-pong: 40-byte messages (the size of an
//! INCREMENT request) between two threads over one region, for the HYBRID
//! (0x02) and BUSYWAIT (0x04) profiles, against a baseline measured in the
//! same run (a `std::sync::mpsc` ping-pong between the same two threads).
//!
//! ```text
//! scripts/cargo-win run --release -p pipewright-netipc --example shm_windows_bench [ROUND_TRIPS]
//! ```
//!
//! Prints, per variant, the median over 3 runs of round trips per second and
//! of the p50 / p99 round-trip latency, and the throughput ratio against the
//! baseline.

#[cfg(not(windows))]
fn main() {
    println!(
        "shm_windows_bench is Windows-only: run it with \
         `scripts/cargo-win run --release -p pipewright-netipc --example shm_windows_bench`"
    );
}

#[cfg(windows)]
fn main() {
    bench::run();
}

#[cfg(windows)]
mod bench {
    use std::sync::mpsc;
    use std::time::{Duration, Instant};

    use pipewright_netipc::shm::windows::{attach_client, ServerRegions};
    use pipewright_netipc::shm::windows_layout::{PROFILE_BUSYWAIT, PROFILE_HYBRID};
    use pipewright_netipc::shm::RegionParams;

    const MESSAGE_LEN: usize = 40;
    const RUNS: usize = 3;
    const TIMEOUT: Duration = Duration::from_secs(30);

    /// One run's figures.
    #[derive(Clone, Copy)]
    struct Sample {
        per_second: f64,
        p50: Duration,
        p99: Duration,
    }

    fn summarise(total: Duration, mut latencies: Vec<Duration>) -> Sample {
        latencies.sort_unstable();
        let at =
            |q: f64| latencies[((latencies.len() as f64 * q) as usize).min(latencies.len() - 1)];
        Sample {
            per_second: latencies.len() as f64 / total.as_secs_f64(),
            p50: at(0.50),
            p99: at(0.99),
        }
    }

    fn request(i: u64) -> [u8; MESSAGE_LEN] {
        let mut m = [0u8; MESSAGE_LEN];
        m[..4].copy_from_slice(b"CPIN");
        m[32..].copy_from_slice(&i.to_le_bytes());
        m
    }

    fn channel_run(round_trips: u64) -> Sample {
        let (to_server, server_rx) = mpsc::sync_channel::<[u8; MESSAGE_LEN]>(1);
        let (to_client, client_rx) = mpsc::sync_channel::<[u8; MESSAGE_LEN]>(1);
        let server = std::thread::spawn(move || {
            while let Ok(mut m) = server_rx.recv() {
                let v = u64::from_le_bytes(m[32..].try_into().unwrap()) + 1;
                m[32..].copy_from_slice(&v.to_le_bytes());
                if to_client.send(m).is_err() {
                    break;
                }
            }
        });
        let mut latencies = Vec::with_capacity(round_trips as usize);
        let start = Instant::now();
        for i in 0..round_trips {
            let t = Instant::now();
            to_server.send(request(i)).unwrap();
            let r = client_rx.recv().unwrap();
            latencies.push(t.elapsed());
            assert_eq!(u64::from_le_bytes(r[32..].try_into().unwrap()), i + 1);
        }
        let total = start.elapsed();
        drop(to_server);
        server.join().unwrap();
        summarise(total, latencies)
    }

    fn shm_run(profile: u32, round_trips: u64, run: usize) -> Sample {
        let params = RegionParams {
            run_dir: r"C:\netipc-bench".into(),
            service: format!("shm-bench-{}-{run}", std::process::id()),
            session_id: u64::from(profile),
            auth_token: 1,
            max_request_payload: 1024,
            max_response_payload: 1024,
        };
        let regions = ServerRegions::create(&params, profile).expect("create region");
        let mut server = regions.select(profile).expect("selected profile");
        let mut client = attach_client(&params, profile, TIMEOUT).expect("attach");
        let echo = std::thread::spawn(move || {
            let mut buf = Vec::with_capacity(MESSAGE_LEN);
            for _ in 0..round_trips {
                server.receive(&mut buf, TIMEOUT).expect("server receive");
                let v = u64::from_le_bytes(buf[32..40].try_into().unwrap()) + 1;
                buf[32..40].copy_from_slice(&v.to_le_bytes());
                server.send(&buf).expect("server send");
            }
        });
        let mut buf = Vec::with_capacity(MESSAGE_LEN);
        let mut latencies = Vec::with_capacity(round_trips as usize);
        let start = Instant::now();
        for i in 0..round_trips {
            let t = Instant::now();
            client.send(&request(i)).unwrap();
            client.receive(&mut buf, TIMEOUT).unwrap();
            latencies.push(t.elapsed());
            assert_eq!(u64::from_le_bytes(buf[32..40].try_into().unwrap()), i + 1);
        }
        let total = start.elapsed();
        echo.join().unwrap();
        summarise(total, latencies)
    }

    fn median(samples: &[Sample], f: impl Fn(&Sample) -> f64) -> f64 {
        let mut v: Vec<f64> = samples.iter().map(f).collect();
        v.sort_by(|a, b| a.total_cmp(b));
        v[v.len() / 2]
    }

    pub fn run() {
        let round_trips: u64 = match std::env::args().nth(1) {
            None => 20_000,
            Some(a) => match a.parse() {
                Ok(n) if n > 0 => n,
                _ => {
                    eprintln!("ROUND_TRIPS must be a positive integer, got {a:?}");
                    std::process::exit(2);
                }
            },
        };
        let variants: [(&str, Option<u32>); 3] = [
            ("baseline: mpsc channel", None),
            ("SHM_HYBRID (0x02)", Some(PROFILE_HYBRID)),
            ("SHM_BUSYWAIT (0x04)", Some(PROFILE_BUSYWAIT)),
        ];
        let mut results: Vec<Vec<Sample>> = vec![Vec::new(); variants.len()];
        // Warm-up, then interleave the variants so drifts in machine load
        // affect all of them alike.
        for (_, profile) in &variants {
            match profile {
                None => channel_run(1000),
                Some(p) => shm_run(*p, 1000, 99),
            };
        }
        for run in 0..RUNS {
            for (i, (_, profile)) in variants.iter().enumerate() {
                let s = match profile {
                    None => channel_run(round_trips),
                    Some(p) => shm_run(*p, round_trips, run),
                };
                results[i].push(s);
            }
        }
        println!(
            "{round_trips} round trips of {MESSAGE_LEN}-byte messages between two threads, median of {RUNS} runs"
        );
        println!(
            "{:<24} {:>12} {:>10} {:>10} {:>14}",
            "variant", "round trips/s", "p50 us", "p99 us", "vs baseline"
        );
        let base = median(&results[0], |s| s.per_second);
        for (i, (name, _)) in variants.iter().enumerate() {
            let rate = median(&results[i], |s| s.per_second);
            println!(
                "{:<24} {:>12.0} {:>10.1} {:>10.1} {:>13.2}x",
                name,
                rate,
                median(&results[i], |s| s.p50.as_secs_f64() * 1e6),
                median(&results[i], |s| s.p99.as_secs_f64() * 1e6),
                rate / base
            );
        }
    }
}
