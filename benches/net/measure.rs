//! What every benchmark needs: CPU time of processes from /proc, medians
//! and percentiles, aligned tables, and the context a result needs to be
//! read later (machine, kernel, commit, binary).

use std::process::Command;

use crate::support;

unsafe extern "C" {
    fn sysconf(name: i32) -> i64;
}

/// `_SC_CLK_TCK` on Linux.
const SC_CLK_TCK: i32 = 2;

/// User plus system CPU seconds `pid` has used so far (all its threads);
/// 0 if it is gone.
pub fn cpu_seconds(pid: u32) -> f64 {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return 0.0;
    };
    // The command name may hold spaces and parentheses: fields start after the last ')'.
    let Some((_, rest)) = stat.rsplit_once(')') else {
        return 0.0;
    };
    // After the name: state(3) ... utime(14) stime(15), counted from 1 with pid and comm.
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| fields.get(i).and_then(|f| f.parse::<u64>().ok()).unwrap_or(0);
    // SAFETY: sysconf only reads a configuration value.
    let hz = unsafe { sysconf(SC_CLK_TCK) }.max(1) as f64;
    (ticks(11) + ticks(12)) as f64 / hz
}

/// CPU seconds of this process (every thread: the bench and in-process nodes).
pub fn cpu_self() -> f64 {
    cpu_seconds(std::process::id())
}

/// Total CPU seconds of `pids`.
pub fn cpu_total(pids: &[u32]) -> f64 {
    pids.iter().map(|&p| cpu_seconds(p)).sum()
}

/// The median of `values` (0 when empty).
pub fn median(values: &[f64]) -> f64 {
    percentile(values, 50.0)
}

/// The `p`th percentile (nearest rank) of `values` (0 when empty).
pub fn percentile(values: &[f64], p: f64) -> f64 {
    if values.is_empty() {
        return 0.0;
    }
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// "median (min-max)" of several rounds, or just the value for one.
pub fn spread(values: &[f64], digits: usize) -> String {
    if values.is_empty() {
        return "-".to_owned();
    }
    let min = values.iter().copied().fold(f64::INFINITY, f64::min);
    let max = values.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    if values.len() == 1 || (max - min).abs() < f64::EPSILON {
        return format!("{:.digits$}", median(values));
    }
    format!("{:.digits$} ({min:.digits$}-{max:.digits$})", median(values))
}

/// A table printed with aligned columns, as Markdown that also reads well
/// as text: the first `text` columns left-aligned, the rest (figures) right-aligned.
#[derive(Debug)]
pub struct Table {
    header: Vec<String>,
    text: usize,
    rows: Vec<Vec<String>>,
}

impl Table {
    /// A table with these column titles, of which the first `text` hold text.
    pub fn new(text: usize, header: &[&str]) -> Table {
        Table { header: header.iter().map(|h| (*h).to_owned()).collect(), text, rows: Vec::new() }
    }

    /// Adds a row (as many cells as titles).
    pub fn row(&mut self, cells: Vec<String>) {
        assert_eq!(cells.len(), self.header.len(), "a row needs one cell per column");
        self.rows.push(cells);
    }

    /// Prints it on stdout.
    pub fn print(&self) {
        let widths: Vec<usize> = (0..self.header.len())
            .map(|i| self.rows.iter().map(|r| r[i].len()).chain([self.header[i].len()]).max().unwrap_or(0))
            .collect();
        let line = |cells: &[String]| {
            let cells: Vec<String> = cells
                .iter()
                .zip(&widths)
                .enumerate()
                .map(|(i, (c, w))| if i < self.text { format!(" {c:<w$} ") } else { format!(" {c:>w$} ") })
                .collect();
            println!("|{}|", cells.join("|"));
        };
        line(&self.header);
        let rule: Vec<String> = widths
            .iter()
            .enumerate()
            .map(|(i, w)| if i < self.text { "-".repeat(w + 2) } else { format!("{}:", "-".repeat(w + 1)) })
            .collect();
        println!("|{}|", rule.join("|"));
        for row in &self.rows {
            line(row);
        }
    }
}

/// Prints what a result needs to be compared later: date, commit, machine,
/// and which tuntox binary runs (it must be an optimised build).
pub fn print_context() {
    let binary = support::tuntox::binary();
    assert!(
        binary.contains("/release/"),
        "the benchmarks need the optimised tuntox binary, got {binary}; run them with `cargo bench` (scripts/bench)"
    );
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name").and_then(|r| r.split_once(':')).map(|(_, m)| m.trim().to_owned()))
        .unwrap_or_else(|| "unknown".to_owned());
    let cores = std::thread::available_parallelism().map_or(0, usize::from);
    let commit = output("git", &["-C", env!("CARGO_MANIFEST_DIR"), "rev-parse", "--short", "HEAD"]);
    let dirty = output("git", &["-C", env!("CARGO_MANIFEST_DIR"), "status", "--porcelain", "--untracked-files=no"]);
    println!("date:    {}", output("date", &["-u", "+%Y-%m-%d %H:%M UTC"]));
    println!("commit:  {commit}{}", if dirty.is_empty() || dirty == "?" { "" } else { " (with uncommitted changes)" });
    println!("machine: {model}, {cores} cores, Linux {}", output("uname", &["-r"]));
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    println!(
        "load:    {} (1, 5, 15 min, before the run)",
        load.split_whitespace().take(3).collect::<Vec<_>>().join(" ")
    );
    println!("binary:  {binary}");
    println!();
}

/// The trimmed standard output of a command, or "?".
fn output(program: &str, args: &[&str]) -> String {
    Command::new(program)
        .args(args)
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map_or_else(|| "?".to_owned(), |o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
}
