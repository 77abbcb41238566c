//! Renders the exporter's progress events on stderr: live bars on a terminal
//! (`tty`), one line per step with timings like BuildKit's plain output (`plain`), one
//! JSON object per line (`json`), or nothing (`quiet`).

use std::collections::{BTreeMap, HashMap};
use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant, SystemTime};

use futures::{Stream, StreamExt};
use indicatif::{HumanBytes, MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde_json::json;
use strata_exporter::ProgressEvent;

/// How progress is shown (`--progress`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum ProgressMode {
    /// `tty` when stderr is a terminal, else `plain`.
    Auto,
    /// Live bars per layer with bytes and rates.
    Tty,
    /// One line per step with timings.
    Plain,
    /// One JSON event per line.
    Json,
    /// Nothing.
    Quiet,
}

impl ProgressMode {
    /// `auto` decided for this process's stderr.
    pub fn resolve(self) -> ProgressMode {
        match self {
            ProgressMode::Auto if std::io::stderr().is_terminal() => ProgressMode::Tty,
            ProgressMode::Auto => ProgressMode::Plain,
            other => other,
        }
    }
}

/// Renders `events` in `mode` until the stream ends. `layer_names` maps snapshot
/// names to the layer directories users gave, so steps are named after them.
pub async fn render(
    mode: ProgressMode,
    mut events: impl Stream<Item = ProgressEvent> + Unpin,
    layer_names: BTreeMap<String, String>,
) {
    let mut renderer: Box<dyn Renderer> = match mode.resolve() {
        ProgressMode::Tty => Box::new(Tty::new()),
        ProgressMode::Json => Box::new(Json::default()),
        ProgressMode::Quiet => Box::new(Quiet),
        _ => Box::new(Plain::default()),
    };
    while let Some(mut ev) = events.next().await {
        if let Some(snapshot) = ev.id.strip_prefix("layer:") {
            if let Some(dir) = layer_names.get(snapshot) {
                ev.name = format!("exporting layer {dir}");
            }
        }
        renderer.event(&ev);
    }
    renderer.finish();
}

trait Renderer: Send {
    fn event(&mut self, ev: &ProgressEvent);
    fn finish(&mut self) {}
}

struct Quiet;

impl Renderer for Quiet {
    fn event(&mut self, _: &ProgressEvent) {}
}

fn elapsed(ev: &ProgressEvent) -> Duration {
    match (ev.started, ev.completed) {
        (Some(s), Some(c)) => c.duration_since(s).unwrap_or_default(),
        _ => Duration::ZERO,
    }
}

/// BuildKit-style plain lines: `#N name` when a step starts, `#N name 1.2kB 0.3s done`
/// (or `#N name 0.3s ERROR: …`) when it ends.
#[derive(Default)]
struct Plain {
    numbers: HashMap<String, usize>,
    started: HashMap<String, Instant>,
}

impl Renderer for Plain {
    fn event(&mut self, ev: &ProgressEvent) {
        let next = self.numbers.len() + 1;
        let n = *self.numbers.entry(ev.id.clone()).or_insert(next);
        let mut err = std::io::stderr().lock();
        if ev.completed.is_none() {
            if ev.current == 0 && !self.started.contains_key(&ev.id) {
                self.started.insert(ev.id.clone(), Instant::now());
                let _ = writeln!(err, "#{n} {}", ev.name);
            }
            return;
        }
        let secs = elapsed(ev).as_secs_f64();
        let bytes = if ev.current > 0 {
            format!(" {}", HumanBytes(ev.current))
        } else {
            String::new()
        };
        let _ = match &ev.error {
            None => writeln!(err, "#{n} {}{bytes} {secs:.1}s done", ev.name),
            Some(e) => writeln!(err, "#{n} {} {secs:.1}s ERROR: {e}", ev.name),
        };
    }
}

fn rfc3339(t: Option<SystemTime>) -> serde_json::Value {
    t.and_then(|t| {
        time::OffsetDateTime::from(t)
            .format(&time::format_description::well_known::Rfc3339)
            .ok()
    })
    .map_or(serde_json::Value::Null, serde_json::Value::String)
}

/// One JSON object per line: `status` is `started`, `running` (byte counts, at most
/// ten a second per step), `completed` or `failed`.
#[derive(Default)]
struct Json {
    last_update: HashMap<String, Instant>,
}

impl Renderer for Json {
    fn event(&mut self, ev: &ProgressEvent) {
        let status = match (&ev.completed, &ev.error) {
            (Some(_), None) => "completed",
            (Some(_), Some(_)) => "failed",
            (None, _) if ev.current == 0 && !self.last_update.contains_key(&ev.id) => "started",
            (None, _) => "running",
        };
        if status == "running" {
            let now = Instant::now();
            if let Some(last) = self.last_update.get(&ev.id) {
                if now.duration_since(*last) < Duration::from_millis(100) {
                    return;
                }
            }
            self.last_update.insert(ev.id.clone(), now);
        } else if status == "started" {
            self.last_update.insert(ev.id.clone(), Instant::now());
        }
        let mut line = json!({
            "id": ev.id,
            "name": ev.name,
            "status": status,
            "current": ev.current,
            "total": ev.total,
            "started": rfc3339(ev.started),
            "completed": rfc3339(ev.completed),
        });
        if ev.completed.is_some() {
            line["duration_seconds"] = json!(elapsed(ev).as_secs_f64());
        }
        if let Some(e) = &ev.error {
            line["error"] = json!(e);
        }
        let mut err = std::io::stderr().lock();
        let _ = writeln!(err, "{line}");
    }
}

/// Live bars: one per step, with bytes and rate for layers.
struct Tty {
    multi: MultiProgress,
    bars: HashMap<String, ProgressBar>,
    running: ProgressStyle,
    step: ProgressStyle,
    sized: ProgressStyle,
    done: ProgressStyle,
}

impl Tty {
    fn new() -> Tty {
        let style = |t: &str| {
            ProgressStyle::with_template(t).unwrap_or_else(|_| ProgressStyle::default_spinner())
        };
        Tty {
            multi: MultiProgress::with_draw_target(ProgressDrawTarget::stderr()),
            bars: HashMap::new(),
            running: style("{spinner:.cyan} {msg} {bytes:>10} {binary_bytes_per_sec:>12} {elapsed:>4}")
                .tick_chars("⠋⠙⠹⠸⠼⠴⠦⠧⠇⠏ "),
            step: style("{spinner:.cyan} {msg} {elapsed:>4}").tick_chars("⠋⠙⠹⠸⠼⠴⠦⠧⠇⠏ "),
            sized: style("{spinner:.cyan} {msg} [{bar:24}] {bytes}/{total_bytes} {binary_bytes_per_sec} {eta}")
                .progress_chars("=> "),
            done: style("{prefix:.green} {msg}"),
        }
    }
}

impl Renderer for Tty {
    fn event(&mut self, ev: &ProgressEvent) {
        let bar = self.bars.entry(ev.id.clone()).or_insert_with(|| {
            let b = self.multi.add(ProgressBar::new_spinner());
            // Only layers move bytes worth a rate; other steps get a spinner.
            b.set_style(if ev.id.starts_with("layer:") {
                self.running.clone()
            } else {
                self.step.clone()
            });
            b.set_message(ev.name.clone());
            b.enable_steady_tick(Duration::from_millis(100));
            b
        });
        if let Some(total) = ev.total {
            if ev.completed.is_none() {
                bar.set_style(self.sized.clone());
            }
            bar.set_length(total);
        }
        bar.set_position(ev.current);
        if ev.completed.is_some() {
            let secs = elapsed(ev).as_secs_f64();
            let size = if ev.current > 0 {
                format!(" {}", HumanBytes(ev.current))
            } else {
                String::new()
            };
            bar.set_style(self.done.clone());
            match &ev.error {
                None => {
                    bar.set_prefix("✔");
                    bar.finish_with_message(format!("{}{size} {secs:.1}s", ev.name));
                }
                Some(e) => {
                    bar.set_prefix("✘");
                    bar.finish_with_message(format!("{} {secs:.1}s ERROR: {e}", ev.name));
                }
            }
        }
    }

    fn finish(&mut self) {
        for bar in self.bars.values() {
            if !bar.is_finished() {
                bar.abandon();
            }
        }
        // Finished bars stay on screen as the summary of the export.
    }
}
