//! Pull progress: per-layer bars on a terminal (like Docker's), plain lines otherwise.

use std::collections::HashMap;
use std::sync::Mutex;

use berth_image::pull::{Progress, PullEvent};
use indicatif::{MultiProgress, ProgressBar, ProgressStyle};

/// One line per layer event, for logs and pipes.
#[derive(Debug)]
pub struct Lines;

impl Progress for Lines {
    fn event(&self, ev: PullEvent) {
        match ev {
            PullEvent::Resolved { manifest } => println!("Resolved {manifest}"),
            PullEvent::LayerPresent { digest } => println!("{}: Already exists", digest.short()),
            PullEvent::LayerStart {
                digest, resumed_at, ..
            } if resumed_at > 0 => {
                println!("{}: Resuming download at byte {resumed_at}", digest.short())
            }
            PullEvent::LayerStart { digest, .. } => {
                println!("{}: Pulling fs layer", digest.short())
            }
            PullEvent::LayerProgress { .. } => {}
            PullEvent::LayerDone { digest } => println!("{}: Pull complete", digest.short()),
            PullEvent::Recorded { id } => println!("Image ID: {id}"),
        }
    }
}

/// indicatif bars, one per layer.
pub struct Bars {
    multi: MultiProgress,
    bars: Mutex<HashMap<String, ProgressBar>>,
}

impl Bars {
    pub fn new() -> Self {
        Self {
            multi: MultiProgress::new(),
            bars: Mutex::new(HashMap::new()),
        }
    }

    fn bar(&self, digest: &str, size: u64) -> ProgressBar {
        let mut bars = self.bars.lock().expect("bars lock");
        bars.entry(digest.to_string())
            .or_insert_with(|| {
                let b = self.multi.add(ProgressBar::new(size));
                b.set_style(
                    ProgressStyle::with_template(
                        "{prefix}: {msg:<12} [{bar:30}] {bytes}/{total_bytes}",
                    )
                    .expect("static template")
                    .progress_chars("=> "),
                );
                b.set_prefix(digest.to_string());
                b
            })
            .clone()
    }
}

impl Progress for Bars {
    fn event(&self, ev: PullEvent) {
        match ev {
            PullEvent::Resolved { .. } | PullEvent::Recorded { .. } => {}
            PullEvent::LayerPresent { digest } => {
                let b = self.bar(digest.short(), 0);
                b.finish_with_message("Already exists");
            }
            PullEvent::LayerStart {
                digest,
                size,
                resumed_at,
            } => {
                let b = self.bar(digest.short(), size);
                b.set_position(resumed_at);
                b.set_message("Downloading");
            }
            PullEvent::LayerProgress { digest, done } => {
                self.bar(digest.short(), 0).set_position(done)
            }
            PullEvent::LayerDone { digest } => self
                .bar(digest.short(), 0)
                .finish_with_message("Pull complete"),
        }
    }
}
