//! The node's retention sweeper: `ama serve` runs the engine's
//! [`ama_core::Archive::sweep`] for every tenant on a schedule, so mail past
//! its retain-until goes without an operator remembering `ama retention
//! sweep`. A sweep is idempotent and resumable, so a node stopped in the
//! middle finishes at its next run; each run writes its audit entry per
//! tenant. Failures are reported and retried at the next run; they never
//! stop the node.

use std::sync::Arc;
use std::time::Duration;

use ama_core::Archive;
use tokio::sync::watch;

/// How often `ama serve` sweeps unless told otherwise.
pub const DEFAULT_EVERY: &str = "24h";
/// Wait after start before the first run (the node serves first).
const FIRST_AFTER: Duration = Duration::from_secs(60);

/// `--sweep-every`: an interval, or none (`off`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Every(pub Option<Duration>);

/// Parses `--sweep-every`: `off`, or a number with `s`, `m`, `h` or `d`.
pub fn parse_every(s: &str) -> Result<Every, String> {
    interval(s).map(Every)
}

fn interval(s: &str) -> Result<Option<Duration>, String> {
    let s = s.trim();
    if s.eq_ignore_ascii_case("off") {
        return Ok(None);
    }
    let bad = || format!("{s:?}: give off or a number with s, m, h or d (e.g. 24h)");
    let unit = s.chars().last().ok_or_else(bad)?;
    let n: u64 = s[..s.len() - unit.len_utf8()].parse().map_err(|_| bad())?;
    let secs = match unit {
        's' => n,
        'm' => n.checked_mul(60).ok_or_else(bad)?,
        'h' => n.checked_mul(3600).ok_or_else(bad)?,
        'd' => n.checked_mul(86_400).ok_or_else(bad)?,
        _ => return Err(bad()),
    };
    if secs == 0 {
        return Err(format!("{s:?}: the interval must be at least 1s (or off)"));
    }
    Ok(Some(Duration::from_secs(secs)))
}

/// Sweeps every tenant now, on a blocking thread; one line per tenant.
async fn sweep_all(archive: &Arc<Archive>) {
    let a = archive.clone();
    let result = tokio::task::spawn_blocking(move || {
        let mut lines = Vec::new();
        match a.tenants() {
            Ok(tenants) => {
                for t in tenants {
                    lines.push(match a.sweep(&t.id, None) {
                        Ok(r) => format!(
                            "ama: retention sweep of {}: {} deleted, {} kept by legal holds",
                            t.id,
                            r.deleted.len(),
                            r.held.len()
                        ),
                        Err(e) => format!("ama: retention sweep of {} failed: {e}", t.id),
                    });
                }
            }
            Err(e) => lines.push(format!("ama: retention sweep failed: {e}")),
        }
        lines
    })
    .await;
    match result {
        Ok(lines) => lines.iter().for_each(|l| eprintln!("{l}")),
        Err(e) => eprintln!("ama: retention sweep failed: {e}"),
    }
}

/// Runs until `stop` turns true: the first sweep `first_after` the start
/// (a minute unless `every` is shorter), then one every `every`.
pub async fn run(archive: Arc<Archive>, every: Duration, mut stop: watch::Receiver<bool>) {
    let mut wait = FIRST_AFTER.min(every);
    loop {
        tokio::select! {
            () = tokio::time::sleep(wait) => {}
            _ = stop.wait_for(|s| *s) => return,
        }
        sweep_all(&archive).await;
        wait = every;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn intervals() {
        let s = |n| Ok(Every(Some(Duration::from_secs(n))));
        assert_eq!(parse_every("24h"), s(86_400));
        assert_eq!(parse_every("90s"), s(90));
        assert_eq!(parse_every("2d"), s(172_800));
        assert_eq!(parse_every("off"), Ok(Every(None)));
        for bad in [
            "",
            "h",
            "0s",
            "5w",
            "-1h",
            "1.5h",
            "99999999999999999999d",
            "ü",
        ] {
            assert!(parse_every(bad).is_err(), "{bad}");
        }
    }
}
