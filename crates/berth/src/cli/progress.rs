//! Pull progress bars, drawn only when stderr is a terminal.

use std::collections::HashMap;
use std::io::IsTerminal;
use std::sync::{Arc, Mutex};

use berth_image::{LayerEvent, Progress};
use indicatif::{MultiProgress, ProgressBar, ProgressStyle};

pub struct Bars {
    multi: MultiProgress,
    bars: Mutex<HashMap<String, ProgressBar>>,
}

impl Bars {
    /// Bars on a terminal, nothing otherwise.
    pub fn for_stderr() -> Option<Arc<dyn Progress>> {
        if !std::io::stderr().is_terminal() {
            return None;
        }
        Some(Arc::new(Bars {
            multi: MultiProgress::new(),
            bars: Mutex::new(HashMap::new()),
        }))
    }
}

impl Progress for Bars {
    fn event(&self, ev: LayerEvent) {
        let mut bars = self.bars.lock().unwrap_or_else(|p| p.into_inner());
        match ev {
            LayerEvent::Start { digest, size } => {
                let bar = self.multi.add(ProgressBar::new(size));
                bar.set_style(
                    ProgressStyle::with_template("{prefix} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec}")
                        .expect("valid template")
                        .progress_chars("=> "),
                );
                bar.set_prefix(digest.short().to_string());
                bars.insert(digest.to_string(), bar);
            }
            LayerEvent::Bytes { digest, n } => {
                if let Some(b) = bars.get(digest.as_str()) {
                    b.inc(n);
                }
            }
            LayerEvent::Done { digest, skipped } => match bars.remove(digest.as_str()) {
                Some(b) => b.finish_with_message("done"),
                None if skipped => {
                    let _ = self.multi.println(format!("{} already present", digest.short()));
                }
                None => {}
            },
        }
    }
}
