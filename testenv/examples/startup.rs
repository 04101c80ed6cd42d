//! Start-up benchmark: starts the control plane N times (default 5) and prints each start, the
//! median, and how long stopping took.
//!
//! `cargo run -p testenv --release --example startup -- 7`

use std::{
    process::ExitCode,
    time::{Duration, Instant},
};

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> Result<(), testenv::Error> {
    let runs: usize = std::env::args()
        .nth(1)
        .and_then(|n| n.parse().ok())
        .unwrap_or(5)
        .max(1);
    let mut starts = Vec::with_capacity(runs);
    let mut stops = Vec::with_capacity(runs);
    for run in 1..=runs {
        let env = testenv::TestEnv::start()?;
        let startup = env.startup_duration();
        let began = Instant::now();
        env.stop();
        let stop = began.elapsed();
        println!("run {run}: ready in {startup:.2?}, stopped in {stop:.2?}");
        starts.push(startup);
        stops.push(stop);
    }
    println!(
        "start-up over {runs} runs: median {:.2?}, min {:.2?}, max {:.2?}; stop median {:.2?}",
        median(&mut starts),
        starts[0],
        starts[runs - 1],
        median(&mut stops)
    );
    Ok(())
}

fn median(values: &mut [Duration]) -> Duration {
    values.sort();
    values[values.len() / 2]
}
