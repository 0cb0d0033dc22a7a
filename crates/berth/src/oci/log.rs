//! Log lines in runc's (logrus) shapes, so callers that parse runc's
//! `--log` file (containerd's go-runc reads the last `"level":"error"` line)
//! read ours unchanged.
//!
//! Nothing is installed unless `--log` or `--debug` is given: the common
//! create/start/delete path pays nothing for logging.

use std::fmt::Write as _;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::filter::LevelFilter;
use tracing_subscriber::layer::{Context, Layer, SubscriberExt};
use tracing_subscriber::util::SubscriberInitExt;

use super::LogFormat;

/// Where the final error line goes (the `--log` file and its format).
pub struct LogFile {
    path: PathBuf,
    format: LogFormat,
}

/// Installs a tracing subscriber writing libcontainer's events to `--log`
/// (or to stderr with `--debug` alone). Returns the log file, if any.
pub fn init(path: Option<&Path>, format: LogFormat, debug: bool) -> Option<LogFile> {
    let level = if debug {
        LevelFilter::DEBUG
    } else {
        LevelFilter::WARN
    };
    let out: Box<dyn Write + Send> = match path {
        Some(p) => match open_append(p) {
            Ok(f) => Box::new(f),
            Err(e) => {
                eprintln!("berth oci: open log file {}: {e}", p.display());
                return None;
            }
        },
        None if debug => Box::new(std::io::stderr()),
        None => return None,
    };
    let layer = LineLayer {
        out: Mutex::new(out),
        format,
    };
    let _ = tracing_subscriber::registry()
        .with(layer.with_filter(level))
        .try_init();
    path.map(|p| LogFile {
        path: p.to_owned(),
        format,
    })
}

/// Appends the error that ends this invocation to the log file.
pub fn write_error(file: &LogFile, msg: &str) {
    let line = format_line(file.format, "error", msg);
    if let Ok(mut f) = open_append(&file.path) {
        let _ = f.write_all(line.as_bytes());
    }
}

fn open_append(path: &Path) -> std::io::Result<File> {
    OpenOptions::new().create(true).append(true).open(path)
}

/// One log line, newline-terminated: logrus' JSON or text formatter.
fn format_line(format: LogFormat, level: &str, msg: &str) -> String {
    let time = OffsetDateTime::now_utc().format(&Rfc3339).unwrap_or_default();
    match format {
        LogFormat::Json => {
            let mut s = serde_json::json!({"level": level, "msg": msg, "time": time}).to_string();
            s.push('\n');
            s
        }
        LogFormat::Text => format!(
            "time=\"{time}\" level={level} msg={}\n",
            serde_json::Value::from(msg)
        ),
    }
}

struct LineLayer {
    out: Mutex<Box<dyn Write + Send>>,
    format: LogFormat,
}

impl<S: Subscriber> Layer<S> for LineLayer {
    fn on_event(&self, event: &Event<'_>, _ctx: Context<'_, S>) {
        let mut msg = MessageVisitor::default();
        event.record(&mut msg);
        let line = format_line(self.format, level_name(event.metadata().level()), &msg.0);
        if let Ok(mut out) = self.out.lock() {
            let _ = out.write_all(line.as_bytes());
        }
    }
}

fn level_name(level: &Level) -> &'static str {
    match *level {
        Level::ERROR => "error",
        Level::WARN => "warning",
        Level::INFO => "info",
        Level::DEBUG => "debug",
        Level::TRACE => "trace",
    }
}

/// Collects an event's message followed by its other fields as `k=v`.
#[derive(Default)]
struct MessageVisitor(String);

impl Visit for MessageVisitor {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            let rest = std::mem::take(&mut self.0);
            let _ = write!(self.0, "{value:?}");
            self.0.push_str(&rest);
        } else {
            let _ = write!(self.0, " {}={value:?}", field.name());
        }
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.0.insert_str(0, value);
        } else {
            let _ = write!(self.0, " {}={value:?}", field.name());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_line_has_logrus_fields() {
        let line = format_line(LogFormat::Json, "error", "container c1 does not exist");
        let v: serde_json::Value = serde_json::from_str(line.trim_end()).unwrap();
        assert_eq!(v["level"], "error");
        assert_eq!(v["msg"], "container c1 does not exist");
        assert!(v["time"].as_str().unwrap().ends_with('Z'));
    }

    #[test]
    fn text_line_quotes_message() {
        let line = format_line(LogFormat::Text, "error", "a \"b\"");
        assert!(line.contains("level=error msg=\"a \\\"b\\\"\""), "{line}");
    }
}
