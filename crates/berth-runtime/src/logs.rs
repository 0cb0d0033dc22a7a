//! The CRI container log format: writing it (the monitor) and reading it
//! back (`berth logs`).
//!
//! One record per line: `<RFC3339Nano UTC> <stdout|stderr> <F|P> <text>\n`.
//! `F` ends a line of the container's output; `P` records are pieces of a
//! line continued by the following record of the same stream. No record
//! carries more than [`MAX_RECORD_TEXT`] bytes of text.

use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// Longest text of one record; longer lines are cut into `P` records.
pub const MAX_RECORD_TEXT: usize = 16 * 1024;

/// How often a following reader looks for new data.
const FOLLOW_INTERVAL: Duration = Duration::from_millis(100);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    Stdout,
    Stderr,
}

impl Stream {
    pub fn as_str(self) -> &'static str {
        match self {
            Stream::Stdout => "stdout",
            Stream::Stderr => "stderr",
        }
    }

    fn index(self) -> usize {
        match self {
            Stream::Stdout => 0,
            Stream::Stderr => 1,
        }
    }
}

/// One parsed record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogLine {
    pub time: OffsetDateTime,
    pub stream: Stream,
    pub partial: bool,
    pub text: String,
}

#[derive(Debug, thiserror::Error)]
pub enum LogError {
    #[error("log record {line:?} is malformed: {reason}")]
    Malformed { line: String, reason: &'static str },
    #[error("container log {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// Options of [`copy_log`].
#[derive(Debug, Clone, Default)]
pub struct LogOptions {
    /// Keep reading as the file grows, until `stop` says so.
    pub follow: bool,
    /// Only the last N lines (complete messages, `P` records joined).
    pub tail: Option<usize>,
    /// Prefix each line with its record's timestamp.
    pub timestamps: bool,
}

/// The current time as RFC3339Nano in UTC, always with nine fractional
/// digits so that records sort as text.
pub fn now_rfc3339nano() -> String {
    format_rfc3339nano(OffsetDateTime::now_utc())
}

pub fn format_rfc3339nano(t: OffsetDateTime) -> String {
    let mut out = Vec::with_capacity(RFC3339NANO_LEN);
    push_rfc3339nano(&mut out, t);
    String::from_utf8(out).expect("digits and separators are ASCII")
}

/// Length of a timestamp of [`format_rfc3339nano`] (years 0 to 9999).
const RFC3339NANO_LEN: usize = "2016-10-06T00:17:09.669794202Z".len();

/// Appends `t` as [`format_rfc3339nano`] does. Written without the
/// formatting machinery: the monitor runs this for every record, and a
/// steady loop of a few small functions keeps its resident code small.
fn push_rfc3339nano(out: &mut Vec<u8>, t: OffsetDateTime) {
    let t = t.to_offset(time::UtcOffset::UTC);
    push_digits(out, t.year().max(0) as u32, 4);
    out.push(b'-');
    push_digits(out, u8::from(t.month()).into(), 2);
    out.push(b'-');
    push_digits(out, t.day().into(), 2);
    out.push(b'T');
    push_digits(out, t.hour().into(), 2);
    out.push(b':');
    push_digits(out, t.minute().into(), 2);
    out.push(b':');
    push_digits(out, t.second().into(), 2);
    out.push(b'.');
    push_digits(out, t.nanosecond(), 9);
    out.push(b'Z');
}

/// Appends `n` in decimal, zero-padded to at least `width` (at most 10)
/// digits.
fn push_digits(out: &mut Vec<u8>, mut n: u32, width: usize) {
    let mut buf = [b'0'; 10];
    let mut start = buf.len();
    while n > 0 || buf.len() - start < width {
        start -= 1;
        buf[start] = b'0' + (n % 10) as u8;
        n /= 10;
    }
    out.extend_from_slice(&buf[start..]);
}

/// Parses one record (with or without its trailing newline).
pub fn parse_line(line: &str) -> Result<LogLine, LogError> {
    let raw = split_record(line.as_bytes()).map_err(|reason| LogError::Malformed {
        line: line.chars().take(200).collect(),
        reason,
    })?;
    let time = std::str::from_utf8(raw.time)
        .ok()
        .and_then(|t| OffsetDateTime::parse(t, &Rfc3339).ok())
        .ok_or_else(|| LogError::Malformed {
            line: line.chars().take(200).collect(),
            reason: "the timestamp is not RFC3339",
        })?;
    Ok(LogLine {
        time,
        stream: raw.stream,
        partial: raw.partial,
        text: String::from_utf8_lossy(raw.text).into_owned(),
    })
}

struct RawRecord<'a> {
    time: &'a [u8],
    stream: Stream,
    partial: bool,
    text: &'a [u8],
}

fn split_record(line: &[u8]) -> Result<RawRecord<'_>, &'static str> {
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    let mut fields = line.splitn(4, |&b| b == b' ');
    let time = fields.next().filter(|t| !t.is_empty()).ok_or("no timestamp")?;
    let stream = match fields.next() {
        Some(b"stdout") => Stream::Stdout,
        Some(b"stderr") => Stream::Stderr,
        _ => return Err("the stream is neither stdout nor stderr"),
    };
    // Tags are ':'-separated; the first says full or partial.
    let tags = fields.next().ok_or("no tag")?;
    let partial = match tags.split(|&b| b == b':').next() {
        Some(b"F") => false,
        Some(b"P") => true,
        _ => return Err("the tag is neither F nor P"),
    };
    Ok(RawRecord {
        time,
        stream,
        partial,
        text: fields.next().unwrap_or(b""),
    })
}

/// Appends records to a CRI log file; used by the monitor.
pub struct LogWriter {
    path: PathBuf,
    file: File,
    /// Unterminated output per stream, waiting for its newline.
    pending: [Vec<u8>; 2],
    /// One record is assembled here so that it reaches the file in a single
    /// write.
    record: Vec<u8>,
}

impl LogWriter {
    pub fn open(path: &Path) -> std::io::Result<Self> {
        Ok(LogWriter {
            path: path.to_owned(),
            file: open_for_append(path)?,
            pending: [Vec::new(), Vec::new()],
            record: Vec::new(),
        })
    }

    /// Reopens the file at its path, e.g. after logrotate renamed it.
    pub fn reopen(&mut self) -> std::io::Result<()> {
        self.file = open_for_append(&self.path)?;
        Ok(())
    }

    /// True when some stream has output waiting for its newline.
    pub fn has_pending(&self) -> bool {
        self.pending.iter().any(|p| !p.is_empty())
    }

    /// Records output of `stream`: complete lines become `F` records, a line
    /// longer than [`MAX_RECORD_TEXT`] is cut into `P` records, the rest
    /// waits for more output or [`LogWriter::flush_partial`].
    pub fn write(&mut self, stream: Stream, mut data: &[u8]) -> std::io::Result<()> {
        let idx = stream.index();
        while !data.is_empty() {
            let room = MAX_RECORD_TEXT - self.pending[idx].len();
            let window = &data[..data.len().min(room)];
            match window.iter().position(|&b| b == b'\n') {
                Some(nl) => {
                    self.pending[idx].extend_from_slice(&window[..nl]);
                    self.emit(stream, false)?;
                    data = &data[nl + 1..];
                }
                None => {
                    self.pending[idx].extend_from_slice(window);
                    data = &data[window.len()..];
                    if self.pending[idx].len() == MAX_RECORD_TEXT {
                        self.emit(stream, true)?;
                    }
                }
            }
        }
        Ok(())
    }

    /// Writes unterminated output as `P` records, so that prompts and output
    /// of a stream that went quiet or ended show up.
    pub fn flush_partial(&mut self) -> std::io::Result<()> {
        for stream in [Stream::Stdout, Stream::Stderr] {
            if !self.pending[stream.index()].is_empty() {
                self.emit(stream, true)?;
            }
        }
        Ok(())
    }

    fn emit(&mut self, stream: Stream, partial: bool) -> std::io::Result<()> {
        let text = &mut self.pending[stream.index()];
        self.record.clear();
        push_rfc3339nano(&mut self.record, OffsetDateTime::now_utc());
        self.record.push(b' ');
        self.record.extend_from_slice(stream.as_str().as_bytes());
        self.record
            .extend_from_slice(if partial { b" P " } else { b" F " });
        self.record.extend_from_slice(text);
        self.record.push(b'\n');
        text.clear();
        self.file.write_all(&self.record)
    }
}

fn open_for_append(path: &Path) -> std::io::Result<File> {
    OpenOptions::new()
        .append(true)
        .create(true)
        .mode(0o640)
        .custom_flags(libc::O_CLOEXEC)
        .open(path)
}

/// Writes the container's output recorded in `path`: each stream's text to
/// its writer, `P` records joined with their `F` record.
///
/// What is printed is fixed when the call starts: the file's length then is
/// the end, and `tail` counts back from there. Without `follow` the copy
/// stops at that end even if the app keeps writing (an app that logs faster
/// than we read would otherwise never let us finish); with `follow` it goes
/// on from there until `stop` says so.
pub fn copy_log(
    path: &Path,
    out_stdout: &mut dyn Write,
    out_stderr: &mut dyn Write,
    opts: &LogOptions,
    stop: &dyn Fn() -> bool,
) -> Result<(), LogError> {
    let io_err = |source| LogError::Io {
        path: path.to_owned(),
        source,
    };
    let mut file = File::open(path).map_err(io_err)?;
    let end = file.metadata().map_err(io_err)?.len();
    let start = match opts.tail {
        Some(n) => tail_start(&file, end, n).map_err(io_err)?,
        None => 0,
    };
    file.seek(SeekFrom::Start(start)).map_err(io_err)?;
    let mut copier = Copier {
        in_message: [false; 2],
        timestamps: opts.timestamps,
    };
    let mut reader = BufReader::new(file);
    let mut line = Vec::new();
    if !opts.follow {
        let mut bounded = (&mut reader).take(end - start);
        loop {
            line.clear();
            bounded.read_until(b'\n', &mut line).map_err(io_err)?;
            if line.ends_with(b"\n") {
                copier.record(&line, out_stdout, out_stderr).map_err(io_err)?;
                continue;
            }
            // A last record without its newline is shown only when the
            // writer is done (cut by a crash); while it runs, the rest of
            // that record may be on its way.
            if !line.is_empty() && stop() {
                copier.record(&line, out_stdout, out_stderr).map_err(io_err)?;
            }
            out_stdout.flush().map_err(io_err)?;
            out_stderr.flush().map_err(io_err)?;
            return Ok(());
        }
    }
    let mut stopping = false;
    loop {
        reader.read_until(b'\n', &mut line).map_err(io_err)?;
        if line.ends_with(b"\n") {
            copier.record(&line, out_stdout, out_stderr).map_err(io_err)?;
            line.clear();
            continue;
        }
        // End of the file for now; `line` may hold a record being written.
        out_stdout.flush().map_err(io_err)?;
        out_stderr.flush().map_err(io_err)?;
        if stopping {
            if !line.is_empty() {
                copier.record(&line, out_stdout, out_stderr).map_err(io_err)?;
                out_stdout.flush().map_err(io_err)?;
                out_stderr.flush().map_err(io_err)?;
            }
            return Ok(());
        }
        if stop() {
            // What was written between our last read and `stop` turning
            // true (the writer's last lines) is read in one more pass.
            stopping = true;
            continue;
        }
        match replaced(path, reader.get_mut()).map_err(io_err)? {
            Some(newer) => {
                reader = BufReader::new(newer);
                line.clear();
            }
            None => std::thread::sleep(FOLLOW_INTERVAL),
        }
    }
}

/// Where the last `n` complete messages before `end` begin: just after the
/// `F` record that ends the message before them (0 when there are no more
/// than `n`). `P` records after the last `F` (a line still being written)
/// come along, as they belong to no counted message. The file is read
/// backwards from `end` in blocks, so the cost is that of the tail, not of
/// the whole log.
fn tail_start(file: &File, end: u64, n: usize) -> std::io::Result<u64> {
    use std::os::unix::fs::FileExt;
    const BLOCK: u64 = 64 * 1024;
    // Enough of a record's head for its timestamp, stream and tag.
    const HEAD: usize = 64;
    if end == 0 {
        return Ok(0);
    }
    let mut last = [0u8];
    file.read_exact_at(&mut last, end - 1)?;
    // The last record counts only when its newline is before `end`.
    let last_complete = last[0] == b'\n';
    let mut seen = 0;
    // Start of the record after the one looked at.
    let mut next_start = end;
    let mut block_end = end;
    let mut buf = Vec::new();
    loop {
        let block_start = block_end.saturating_sub(BLOCK);
        // The block, plus the heads of records that begin in it.
        let read_end = (block_end + HEAD as u64).min(end);
        buf.resize((read_end - block_start) as usize, 0);
        file.read_exact_at(&mut buf, block_start)?;
        let block_len = (block_end - block_start) as usize;
        // Records begin after each newline, and at offset 0.
        let starts = (0..block_len)
            .rev()
            .filter(|&i| buf[i] == b'\n')
            .map(|i| i + 1)
            .chain((block_start == 0).then_some(0));
        for i in starts {
            let start = block_start + i as u64;
            if start >= end {
                continue;
            }
            let head = &buf[i..(i + HEAD).min(buf.len())];
            let head = head.split(|&b| b == b'\n').next().unwrap_or(head);
            let complete = next_start < end || last_complete;
            if complete && split_record(head).is_ok_and(|r| !r.partial) {
                seen += 1;
                if seen > n {
                    return Ok(next_start);
                }
            }
            next_start = start;
        }
        if block_start == 0 {
            return Ok(0);
        }
        block_end = block_start;
    }
}

/// The file now at `path` when it is no longer the one being read (rotated
/// and recreated, or truncated in place).
fn replaced(path: &Path, current: &mut File) -> std::io::Result<Option<File>> {
    let now = match std::fs::metadata(path) {
        Ok(m) => m,
        // Between a rotation and the reopen the path may be missing.
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    let ours = current.metadata()?;
    if now.ino() != ours.ino() || now.dev() != ours.dev() {
        return match File::open(path) {
            Ok(f) => Ok(Some(f)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        };
    }
    if ours.len() < current.stream_position()? {
        current.seek(SeekFrom::Start(0))?;
        return Ok(Some(current.try_clone()?));
    }
    Ok(None)
}

struct Copier {
    /// Per stream: a `P` record was written and its line is not finished.
    in_message: [bool; 2],
    timestamps: bool,
}

impl Copier {
    fn record<'a>(
        &mut self,
        line: &[u8],
        out_stdout: &'a mut dyn Write,
        out_stderr: &'a mut dyn Write,
    ) -> std::io::Result<()> {
        // A malformed line (e.g. cut by a crash mid-write) is skipped rather
        // than failing the whole log.
        let Ok(rec) = split_record(line) else {
            return Ok(());
        };
        let idx = rec.stream.index();
        let out = match rec.stream {
            Stream::Stdout => out_stdout,
            Stream::Stderr => out_stderr,
        };
        if self.timestamps && !self.in_message[idx] {
            out.write_all(rec.time)?;
            out.write_all(b" ")?;
        }
        out.write_all(rec.text)?;
        if rec.partial {
            self.in_message[idx] = true;
        } else {
            out.write_all(b"\n")?;
            self.in_message[idx] = false;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn records(path: &Path) -> Vec<LogLine> {
        std::fs::read_to_string(path)
            .unwrap()
            .lines()
            .map(|l| parse_line(l).unwrap())
            .collect()
    }

    #[test]
    fn writer_cuts_long_lines_and_copy_rejoins_them() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.log");
        let mut w = LogWriter::open(&path).unwrap();
        let long = "x".repeat(40 * 1024);
        w.write(Stream::Stdout, b"first\n").unwrap();
        w.write(Stream::Stdout, long.as_bytes()).unwrap();
        w.write(Stream::Stderr, b"err\n").unwrap();
        w.write(Stream::Stdout, b"\nprompt> ").unwrap();
        w.flush_partial().unwrap();
        let recs = records(&path);
        let tags: Vec<_> = recs.iter().map(|r| (r.stream, r.partial)).collect();
        use Stream::*;
        assert_eq!(
            tags,
            [
                (Stdout, false),
                (Stdout, true),
                (Stdout, true),
                (Stderr, false),
                (Stdout, false),
                (Stdout, true)
            ]
        );
        assert_eq!(recs[1].text.len(), MAX_RECORD_TEXT);
        assert_eq!(recs[4].text.len(), 40 * 1024 - 2 * MAX_RECORD_TEXT);

        let (mut out, mut err) = (Vec::new(), Vec::new());
        copy_log(&path, &mut out, &mut err, &LogOptions::default(), &|| true).unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            format!("first\n{long}\nprompt> ")
        );
        assert_eq!(err, b"err\n");
    }

    #[test]
    fn tail_and_timestamps() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.log");
        std::fs::write(
            &path,
            "2016-10-06T00:17:09.669794202Z stdout F one\n\
             2016-10-06T00:17:10.1Z stdout P tw\n\
             2016-10-06T00:17:10.2Z stdout F o\n\
             2016-10-06T00:17:11Z stderr F three\n",
        )
        .unwrap();
        let opts = LogOptions {
            follow: false,
            tail: Some(2),
            timestamps: true,
        };
        let (mut out, mut err) = (Vec::new(), Vec::new());
        copy_log(&path, &mut out, &mut err, &opts, &|| true).unwrap();
        assert_eq!(out, b"2016-10-06T00:17:10.1Z two\n");
        assert_eq!(err, b"2016-10-06T00:17:11Z three\n");
    }

    fn tail_of(content: &str, n: usize) -> String {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.log");
        std::fs::write(&path, content).unwrap();
        let opts = LogOptions {
            tail: Some(n),
            ..Default::default()
        };
        let (mut out, mut err) = (Vec::new(), Vec::new());
        copy_log(&path, &mut out, &mut err, &opts, &|| false).unwrap();
        String::from_utf8(out).unwrap() + &String::from_utf8(err).unwrap()
    }

    #[test]
    fn tail_counts_back_across_blocks() {
        // Records of varying length, spanning several 64 KiB blocks, with a
        // long line cut into P records in the middle.
        let mut log = String::new();
        let mut want = Vec::new();
        for i in 0..5000 {
            let text = format!("message {i} {}", "y".repeat(i % 97));
            if i == 4990 {
                log += &format!("2016-10-06T00:17:09.1Z stdout P {}\n", "z".repeat(70));
                want.push(format!("{}{text}", "z".repeat(70)));
            } else {
                want.push(text.clone());
            }
            log += &format!("2016-10-06T00:17:09.{i}Z stdout F {text}\n");
        }
        for n in [0, 1, 9, 10, 11, 20, 1234, 4999, 5000, 6000] {
            let got = tail_of(&log, n);
            let from = want.len().saturating_sub(n);
            let expect: String = want[from..].iter().map(|l| format!("{l}\n")).collect();
            assert_eq!(got, expect, "tail {n}");
        }
        assert_eq!(tail_of("", 3), "");
    }

    #[test]
    fn tail_leaves_out_a_record_still_being_written() {
        let log = "2016-10-06T00:17:09Z stdout F one\n\
                   2016-10-06T00:17:10Z stdout F two\n\
                   2016-10-06T00:17:11Z stdout F thr";
        // The unfinished record is not a message (and, while the writer
        // runs, not shown): the last two are one and two.
        assert_eq!(tail_of(log, 2), "one\ntwo\n");
        // Trailing P records (a line still going on) come along.
        let log = "2016-10-06T00:17:09Z stdout F one\n\
                   2016-10-06T00:17:10Z stdout F two\n\
                   2016-10-06T00:17:11Z stdout P prompt> \n";
        assert_eq!(tail_of(log, 1), "two\nprompt> ");
    }

    #[test]
    fn copy_stops_at_the_length_it_found_while_the_writer_goes_on() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.log");
        let mut w = LogWriter::open(&path).unwrap();
        for i in 0..100 {
            w.write(Stream::Stdout, format!("early {i}\n").as_bytes())
                .unwrap();
        }
        let done = std::sync::atomic::AtomicBool::new(false);
        std::thread::scope(|s| {
            s.spawn(|| {
                // Faster than any reader, until the reader is done.
                while !done.load(std::sync::atomic::Ordering::Relaxed) {
                    for _ in 0..1000 {
                        w.write(Stream::Stdout, b"late\n").unwrap();
                    }
                }
            });
            for tail in [None, Some(5)] {
                let opts = LogOptions {
                    tail,
                    ..Default::default()
                };
                let mut out = Vec::new();
                copy_log(&path, &mut out, &mut std::io::sink(), &opts, &|| false).unwrap();
                let out = String::from_utf8(out).unwrap();
                match tail {
                    None => assert!(out.starts_with("early 0\nearly 1\n")),
                    Some(n) => assert_eq!(out.lines().count(), n, "{out}"),
                }
            }
            done.store(true, std::sync::atomic::Ordering::Relaxed);
        });
    }

    #[test]
    fn parse_line_fields_and_errors() {
        let l = parse_line("2016-10-06T00:17:09.669794202Z stderr F a b  c\n").unwrap();
        assert_eq!(l.stream, Stream::Stderr);
        assert!(!l.partial);
        assert_eq!(l.text, "a b  c");
        assert_eq!(l.time.nanosecond(), 669794202);
        assert_eq!(parse_line("2016-10-06T00:17:09Z stdout P").unwrap().text, "");
        assert!(parse_line("2016-10-06T00:17:09Z stdin F x").is_err());
        assert!(parse_line("yesterday stdout F x").is_err());
        let now = now_rfc3339nano();
        assert_eq!(now.len(), "2016-10-06T00:17:09.669794202Z".len());
        assert!(OffsetDateTime::parse(&now, &Rfc3339).is_ok());
    }

    #[test]
    fn timestamps_have_fixed_width() {
        use time::macros::datetime;
        let cases = [
            (
                datetime!(2016-10-06 00:17:09.000669794 UTC),
                "2016-10-06T00:17:09.000669794Z",
            ),
            (
                datetime!(1999-12-31 23:59:59.999999999 UTC),
                "1999-12-31T23:59:59.999999999Z",
            ),
            (
                datetime!(2026-01-02 03:04:05 +02:00),
                "2026-01-02T01:04:05.000000000Z",
            ),
            (
                datetime!(0042-07-08 09:10:11.1 UTC),
                "0042-07-08T09:10:11.100000000Z",
            ),
        ];
        for (t, want) in cases {
            assert_eq!(format_rfc3339nano(t), want);
        }
    }

    /// A writer whose content another thread can watch.
    #[derive(Clone, Default)]
    struct Shared(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

    impl Write for Shared {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn follow_survives_rotation() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.log");
        let mut w = LogWriter::open(&path).unwrap();
        w.write(Stream::Stdout, b"before\n").unwrap();
        let seen = Shared::default();
        let give_up = std::time::Instant::now() + Duration::from_secs(20);
        std::thread::scope(|s| {
            let (mut out, watch) = (seen.clone(), seen.clone());
            let path = &path;
            s.spawn(move || {
                let opts = LogOptions {
                    follow: true,
                    ..Default::default()
                };
                let stop =
                    || watch.0.lock().unwrap().ends_with(b"after\n") || std::time::Instant::now() > give_up;
                copy_log(path, &mut out, &mut std::io::sink(), &opts, &stop).unwrap();
            });
            while !seen.0.lock().unwrap().ends_with(b"before\n") {
                std::thread::sleep(Duration::from_millis(10));
            }
            std::fs::rename(path, dir.path().join("c.log.1")).unwrap();
            w.reopen().unwrap();
            w.write(Stream::Stdout, b"after\n").unwrap();
        });
        assert_eq!(*seen.0.lock().unwrap(), b"before\nafter\n");
    }
}
