//! Progress of an export as a stream of events a frontend renders, mirrored as
//! `tracing` spans.

use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use futures::channel::mpsc;
use futures::Stream;

/// One update on one step of an export ("exporting layers", one layer, a manifest…).
///
/// A step's first event has `started` set; its last has `completed` set (and `error`
/// when it failed). Events in between carry byte counts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProgressEvent {
    /// Stable id of the step (e.g. `layer:<snapshot id>`, `manifest:<digest>`).
    pub id: String,
    /// Human-readable name of the step ("exporting manifest sha256:…").
    pub name: String,
    /// When the step started.
    pub started: Option<SystemTime>,
    /// When the step completed (successfully or not).
    pub completed: Option<SystemTime>,
    /// Bytes done so far.
    pub current: u64,
    /// Total bytes, when known.
    pub total: Option<u64>,
    /// Why the step failed, if it did.
    pub error: Option<String>,
}

/// A cloneable handle that export steps report to. [`Progress::discard`] reports to
/// nobody (only the `tracing` spans remain).
#[derive(Clone, Default)]
pub struct Progress {
    tx: Option<mpsc::UnboundedSender<ProgressEvent>>,
}

impl std::fmt::Debug for Progress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Progress")
            .field("reporting", &self.tx.is_some())
            .finish()
    }
}

impl Progress {
    /// A handle and the stream of the events reported through it (and its clones).
    /// The stream ends when every handle is dropped.
    pub fn channel() -> (Progress, impl Stream<Item = ProgressEvent> + Send + Unpin) {
        let (tx, rx) = mpsc::unbounded();
        (Progress { tx: Some(tx) }, rx)
    }

    /// A handle that reports to nobody.
    pub fn discard() -> Progress {
        Progress { tx: None }
    }

    /// Starts a step: emits its start event and enters a `tracing` span for it. The
    /// returned task reports bytes and completion; dropping it unfinished reports the
    /// step as cancelled.
    pub fn start(&self, id: impl Into<String>, name: impl Into<String>) -> ProgressTask {
        let id = id.into();
        let name = name.into();
        let span = tracing::info_span!("export_step", id = %id, name = %name);
        tracing::debug!(parent: &span, "started");
        let event = ProgressEvent {
            id,
            name,
            started: Some(SystemTime::now()),
            completed: None,
            current: 0,
            total: None,
            error: None,
        };
        self.send(event.clone());
        ProgressTask {
            progress: self.clone(),
            state: Arc::new(Mutex::new(TaskState { event, done: false })),
            span,
        }
    }

    fn send(&self, event: ProgressEvent) {
        if let Some(tx) = &self.tx {
            // A closed receiver means nobody watches any more; that is not an error.
            let _ = tx.unbounded_send(event);
        }
    }
}

struct TaskState {
    event: ProgressEvent,
    done: bool,
}

/// One step in progress. Cloneable so concurrent workers can report bytes on it.
#[derive(Clone)]
pub struct ProgressTask {
    progress: Progress,
    state: Arc<Mutex<TaskState>>,
    span: tracing::Span,
}

impl ProgressTask {
    /// The `tracing` span of this step, for instrumenting the work done in it.
    pub fn span(&self) -> &tracing::Span {
        &self.span
    }

    /// Reports bytes done (and the total, when known).
    pub fn update(&self, current: u64, total: Option<u64>) {
        let event = {
            let Ok(mut st) = self.state.lock() else {
                return;
            };
            if st.done {
                return;
            }
            st.event.current = current;
            if total.is_some() {
                st.event.total = total;
            }
            st.event.clone()
        };
        self.progress.send(event);
    }

    /// Reports the step complete.
    pub fn complete(&self) {
        self.finish(None);
    }

    /// Reports the step failed with `error`.
    pub fn fail(&self, error: &dyn std::fmt::Display) {
        self.finish(Some(error.to_string()));
    }

    fn finish(&self, error: Option<String>) {
        let event = {
            let Ok(mut st) = self.state.lock() else {
                return;
            };
            if st.done {
                return;
            }
            st.done = true;
            st.event.completed = Some(SystemTime::now());
            st.event.error = error;
            st.event.clone()
        };
        match &event.error {
            Some(e) => tracing::warn!(parent: &self.span, error = %e, "failed"),
            None => tracing::debug!(parent: &self.span, current = event.current, "completed"),
        }
        self.progress.send(event);
    }
}

impl Drop for ProgressTask {
    fn drop(&mut self) {
        // Only the last clone reports an unfinished step as cancelled.
        if Arc::strong_count(&self.state) == 1 {
            self.finish(Some("cancelled".to_string()));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::StreamExt;

    #[tokio::test]
    async fn events_start_update_complete_and_cancel() {
        let (p, mut rx) = Progress::channel();
        let t = p.start("a", "step a");
        t.update(5, Some(10));
        t.complete();
        drop(t);
        let u = p.start("b", "step b");
        drop(u);
        drop(p);
        let events: Vec<ProgressEvent> = rx.by_ref().collect().await;
        assert_eq!(events.len(), 5);
        assert!(events[0].started.is_some() && events[0].completed.is_none());
        assert_eq!((events[1].current, events[1].total), (5, Some(10)));
        assert!(events[2].completed.is_some() && events[2].error.is_none());
        assert_eq!(events[4].id, "b");
        assert_eq!(events[4].error.as_deref(), Some("cancelled"));
    }
}
