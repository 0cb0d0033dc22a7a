//! Giving back what a long-lived process (a monitor, an exec waiter, the
//! daemon) used only to start or to serve a past burst of calls.
//!
//! Such a process lives as long as its container and is multiplied by the
//! number of containers, so its resident set is what berth costs per
//! container. Most of it is not data but the executable's own pages: the
//! kernel maps file pages around every fault (64 KiB), so the start-up code
//! (config parsing, spawning the runtime, glibc's and std's initialisation)
//! leaves nearly the whole text segment mapped although the steady loop runs
//! a few functions of it. The daemon's code pages grow the same way with
//! every burst of CRI calls; [`Trimmer`] decides when to give them back.

use std::ffi::c_void;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::time::{Duration, Instant};

/// Drops the pages of the executable's read-only segments from this
/// process's page tables and returns the heap's free pages to the kernel.
/// Nothing is lost: the file pages stay in the page cache (shared with every
/// other monitor) and come back on the next touch as minor faults, so only
/// what the process goes on running stays resident. Writable segments are
/// left alone, since discarding their pages would revert them to the file's
/// contents (RELRO included: it lies in a writable LOAD segment).
pub fn release_startup_pages() {
    let mut ranges = Ranges::default();
    // SAFETY: the callback only reads the program headers glibc hands it and
    // writes to `ranges`, which outlives the call.
    unsafe { libc::dl_iterate_phdr(Some(read_only_segments), (&raw mut ranges).cast()) };
    // SAFETY: plain call; trims free heap memory, including pages in the
    // middle of the heap (glibc madvises them away).
    unsafe { libc::malloc_trim(0) };
    // Last, so that the code run above is not faulted back in right away.
    for &(start, len) in &ranges.list[..ranges.len] {
        // SAFETY: the range lies within a read-only, never written mapping
        // of the executable; MADV_DONTNEED on a private file mapping only
        // drops page-table entries and the next access reads the same bytes
        // from the file again. Failure is harmless.
        unsafe { libc::madvise(start as *mut c_void, len, libc::MADV_DONTNEED) };
    }
}

/// Page-aligned (start, length) of the executable's read-only segments.
#[derive(Default)]
struct Ranges {
    list: [(usize, usize); 8],
    len: usize,
}

/// `dl_iterate_phdr` callback: handles the first object (the executable) and
/// stops there; shared libraries, if any, are shared with the rest of the
/// system and not ours to trim.
unsafe extern "C" fn read_only_segments(
    info: *mut libc::dl_phdr_info,
    _size: libc::size_t,
    data: *mut c_void,
) -> libc::c_int {
    // SAFETY: glibc passes a valid dl_phdr_info whose dlpi_phdr points to
    // dlpi_phnum program headers of a loaded object; `data` is the `Ranges`
    // of `release_startup_pages`.
    let (base, phdrs, ranges) = unsafe {
        let info = &*info;
        (
            info.dlpi_addr as usize,
            std::slice::from_raw_parts(info.dlpi_phdr, usize::from(info.dlpi_phnum)),
            &mut *data.cast::<Ranges>(),
        )
    };
    // SAFETY: sysconf has no preconditions.
    let page = match unsafe { libc::sysconf(libc::_SC_PAGESIZE) } {
        n if n > 0 => n as usize,
        _ => return 1,
    };
    for ph in phdrs {
        if ph.p_type != libc::PT_LOAD || ph.p_flags & libc::PF_W != 0 || ranges.len == ranges.list.len() {
            continue;
        }
        // Rounded inwards: a page shared with a writable mapping is kept.
        let start = (base + ph.p_vaddr as usize).next_multiple_of(page);
        let end = (base + (ph.p_vaddr + ph.p_memsz) as usize) / page * page;
        if end > start {
            ranges.list[ranges.len] = (start, end - start);
            ranges.len += 1;
        }
    }
    1
}

const STATM: &str = "/proc/self/statm";

#[derive(Debug, thiserror::Error)]
pub enum ResidentSizeError {
    #[error("open {STATM}: {0}")]
    Open(#[source] std::io::Error),
    #[error("read {STATM}: {0}")]
    Read(#[source] std::io::Error),
    #[error("{STATM} has no resident page count: {0:?}")]
    Format(String),
}

/// This process's resident set size, read from `/proc/self/statm`: one
/// `pread` into a stack buffer per reading, no allocation, so it is cheap
/// enough to sample several times a second.
pub struct ResidentSize {
    statm: File,
    page: u64,
}

impl ResidentSize {
    pub fn open() -> Result<Self, ResidentSizeError> {
        // SAFETY: sysconf has no preconditions.
        let page = match unsafe { libc::sysconf(libc::_SC_PAGESIZE) } {
            n if n > 0 => n as u64,
            _ => 4096,
        };
        let statm = File::open(STATM).map_err(ResidentSizeError::Open)?;
        Ok(Self { statm, page })
    }

    /// Resident bytes (anonymous, file and shared pages together: VmRSS).
    pub fn bytes(&self) -> Result<u64, ResidentSizeError> {
        // "size resident shared text lib data dt\n", 7 counts of pages.
        let mut buf = [0u8; 160];
        // Reading at offset 0 makes the kernel render the file afresh.
        let n = self.statm.read_at(&mut buf, 0).map_err(ResidentSizeError::Read)?;
        let pages = parse_statm_resident(&buf[..n])
            .ok_or_else(|| ResidentSizeError::Format(String::from_utf8_lossy(&buf[..n]).into_owned()))?;
        Ok(pages * self.page)
    }
}

/// The second field of `/proc/PID/statm`: resident pages.
fn parse_statm_resident(statm: &[u8]) -> Option<u64> {
    let field = statm.split(|b| b.is_ascii_whitespace()).nth(1)?;
    std::str::from_utf8(field).ok()?.parse().ok()
}

/// When a long-lived, busy process gives its pages back: as soon as its
/// resident set has grown well above the level the last trim left, not only
/// on a fixed period. A fixed period alone leaves the pages of a burst of
/// calls resident until it comes round, and a daemon that kubelet polls
/// every second is never idle long enough for an idle-triggered trim.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TrimPolicy {
    /// Growth over the level right after the last trim that calls for the
    /// next trim. Below it, re-faulting what the steady calls need would
    /// cost more than the pages are worth.
    pub growth: u64,
    /// Growth that calls for one more trim after a [`TrimReason::Growth`]
    /// trim. A trim in the middle of a burst measures its level while other
    /// threads fault code back in, so that level can sit a few MiB too high
    /// and hide what the rest of the burst leaves behind; the follow-up
    /// finds the real level once the burst is over.
    pub settle: u64,
    /// How often to look, and the shortest time between two trims: a long
    /// burst re-faults its code at most once per interval.
    pub interval: Duration,
    /// Longest time between two trims: growth too small for the other
    /// rules (freed heap, code of rare calls) is given back this often.
    pub max_interval: Duration,
}

/// Why a trim happened.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TrimReason {
    /// The first one: what start-up touched.
    Start,
    /// The resident set grew by [`TrimPolicy::growth`].
    Growth,
    /// The follow-up of a `Growth` trim, by [`TrimPolicy::settle`].
    Settle,
    /// [`TrimPolicy::max_interval`] passed.
    Period,
}

/// The last trim, as [`TrimPolicy::decide`] weighs it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LastTrim {
    pub reason: TrimReason,
    /// Resident bytes right after it.
    pub after: u64,
    /// Time since it.
    pub ago: Duration,
}

impl TrimPolicy {
    /// The daemon's: 3 MiB over the last trim's level, looked at four times
    /// a second, at least once a minute. 20 pod starts re-fault ~9 MiB of
    /// code and a kubelet-like relist of 20 pods ~7 MiB, so both are given
    /// back within a quarter of a second; under such polling once a second
    /// that is ~150 minor faults a second, too little CPU to measure.
    pub const DAEMON: Self = Self {
        growth: 3 << 20,
        settle: 1 << 20,
        interval: Duration::from_millis(250),
        max_interval: Duration::from_secs(60),
    };

    /// Whether to trim now with `resident` bytes resident, and why; `last`
    /// is `None` before the first trim.
    pub fn decide(&self, resident: u64, last: Option<LastTrim>) -> Option<TrimReason> {
        let Some(last) = last else {
            return Some(TrimReason::Start);
        };
        let grown = resident.saturating_sub(last.after);
        if last.ago < self.interval {
            None
        } else if grown > self.growth {
            Some(TrimReason::Growth)
        } else if last.reason == TrimReason::Growth && grown > self.settle {
            Some(TrimReason::Settle)
        } else if last.ago >= self.max_interval {
            Some(TrimReason::Period)
        } else {
            None
        }
    }
}

/// What one trim did, for the log.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Trimmed {
    pub reason: TrimReason,
    /// Resident bytes before and after the trim (0 when unknown).
    pub before: u64,
    pub after: u64,
}

/// Applies a [`TrimPolicy`] to this process: call [`Trimmer::tick`] every
/// [`TrimPolicy::interval`].
pub struct Trimmer {
    policy: TrimPolicy,
    /// `None`: the resident size cannot be read, so only the period applies.
    resident: Option<ResidentSize>,
    last: Option<(Instant, Trimmed)>,
}

impl Trimmer {
    pub fn new(policy: TrimPolicy, resident: Option<ResidentSize>) -> Self {
        Self {
            policy,
            resident,
            last: None,
        }
    }

    /// Trims if the policy says so at `now`. The level right after a trim
    /// is what later growth is measured from, so memory that stays in use
    /// (more pods, more records) raises it instead of causing a trim every
    /// interval.
    pub fn tick(&mut self, now: Instant) -> Option<Trimmed> {
        let before = self.resident_bytes();
        let last = self.last.map(|(at, t)| LastTrim {
            reason: t.reason,
            after: t.after,
            ago: now.saturating_duration_since(at),
        });
        let reason = self.policy.decide(before, last)?;
        release_startup_pages();
        let trimmed = Trimmed {
            reason,
            before,
            after: self.resident_bytes(),
        };
        self.last = Some((now, trimmed));
        Some(trimmed)
    }

    fn resident_bytes(&self) -> u64 {
        self.resident.as_ref().and_then(|r| r.bytes().ok()).unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Held by the tests that trim or measure this process's resident set,
    /// which would otherwise see each other's mappings come and go.
    static RESIDENT: std::sync::Mutex<()> = std::sync::Mutex::new(());

    /// Resident KiB of the executable's code mappings of this process.
    fn resident_code_kib() -> u64 {
        let exe = std::fs::read_link("/proc/self/exe").unwrap();
        let exe = exe.to_str().unwrap();
        let smaps = std::fs::read_to_string("/proc/self/smaps").unwrap();
        let mut in_code = false;
        let mut kib = 0;
        for line in smaps.lines() {
            let fields: Vec<&str> = line.split_whitespace().collect();
            if fields
                .first()
                .is_some_and(|f| f.contains('-') && !f.ends_with(':'))
            {
                in_code = fields.get(1).is_some_and(|p| p.contains('x')) && fields.last() == Some(&exe);
            } else if in_code && fields.first() == Some(&"Rss:") {
                kib += fields[1].parse::<u64>().unwrap();
            }
        }
        kib
    }

    /// A `/proc/self/status` field in KiB.
    fn status_kib(key: &str) -> u64 {
        let status = std::fs::read_to_string("/proc/self/status").unwrap();
        let line = status
            .lines()
            .find(|l| l.strip_prefix(key).is_some_and(|r| r.starts_with(':')))
            .unwrap_or_else(|| panic!("no {key} in /proc/self/status"));
        line.split_whitespace().nth(1).unwrap().parse().unwrap()
    }

    /// Resident KiB of file pages (RssShmem too: an executable on tmpfs,
    /// as in the benchmark, is resident as shared memory).
    fn resident_file_kib() -> u64 {
        status_kib("RssFile") + status_kib("RssShmem")
    }

    /// Reads a byte of every page of the executable's read-only segments,
    /// as running all of its code would fault them in; returns the KiB
    /// touched.
    fn touch_read_only_segments() -> u64 {
        let mut ranges = Ranges::default();
        // SAFETY: as in `release_startup_pages`.
        unsafe { libc::dl_iterate_phdr(Some(read_only_segments), (&raw mut ranges).cast()) };
        let mut sum = 0u8;
        let mut bytes = 0;
        for &(start, len) in &ranges.list[..ranges.len] {
            for offset in (0..len).step_by(4096) {
                // SAFETY: the address lies in a mapped, readable segment of
                // the executable.
                sum ^= unsafe { std::ptr::read_volatile((start + offset) as *const u8) };
            }
            bytes += len as u64;
        }
        std::hint::black_box(sum);
        bytes / 1024
    }

    #[test]
    fn startup_code_pages_are_released_and_come_back() {
        let _one_at_a_time = RESIDENT.lock().unwrap_or_else(|e| e.into_inner());
        let exe = std::fs::read_link("/proc/self/exe").unwrap();
        let touched = touch_read_only_segments();
        let before = resident_code_kib();
        let file_before = resident_file_kib();
        assert!(before > 0, "no code mapping of {} found", exe.display());
        release_startup_pages();
        let file_after = resident_file_kib();
        let after = resident_code_kib();
        // What the measuring itself runs comes back at once; the rest of
        // the touched segments must not.
        assert!(
            after < before / 2,
            "code resident before {before} KiB, after {after} KiB"
        );
        // The process as a whole (what VmRSS and the daemon's trimmer see)
        // holds fewer file pages, not only the code mapping.
        assert!(
            file_after + touched / 2 < file_before,
            "{touched} KiB touched; RssFile+RssShmem before {file_before} KiB, after {file_after} KiB"
        );
        // The process goes on running code from the dropped pages.
        assert_eq!(
            crate::logs::format_rfc3339nano(time::OffsetDateTime::UNIX_EPOCH),
            "1970-01-01T00:00:00.000000000Z"
        );
        assert!(resident_code_kib() > 0);
    }

    /// An anonymous private mapping of `len` bytes, every page written, so
    /// that it is resident; unmapped on drop.
    struct Touched {
        addr: *mut c_void,
        len: usize,
    }

    impl Touched {
        fn new(len: usize) -> Self {
            // SAFETY: a fresh anonymous mapping, no address hint.
            let addr = unsafe {
                libc::mmap(
                    std::ptr::null_mut(),
                    len,
                    libc::PROT_READ | libc::PROT_WRITE,
                    libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                    -1,
                    0,
                )
            };
            assert_ne!(addr, libc::MAP_FAILED, "mmap {len} bytes");
            // SAFETY: the mapping is `len` bytes long, writable and ours.
            unsafe { std::ptr::write_bytes(addr.cast::<u8>(), 1, len) };
            Self { addr, len }
        }
    }

    impl Drop for Touched {
        fn drop(&mut self) {
            // SAFETY: unmaps exactly the mapping `new` made.
            unsafe { libc::munmap(self.addr, self.len) };
        }
    }

    const MIB: u64 = 1 << 20;

    #[test]
    fn statm_resident_is_the_second_field() {
        assert_eq!(parse_statm_resident(b"5712 1530 1034 282 0 431 0\n"), Some(1530));
        assert_eq!(parse_statm_resident(b"5712\n"), None);
        assert_eq!(parse_statm_resident(b"5712 x 1034\n"), None);
        assert_eq!(parse_statm_resident(b""), None);
    }

    #[test]
    fn resident_size_follows_touched_pages() {
        let _one_at_a_time = RESIDENT.lock().unwrap_or_else(|e| e.into_inner());
        let rss = ResidentSize::open().unwrap();
        let before = rss.bytes().unwrap();
        let statm_kib = before / 1024;
        let status = status_kib("VmRSS");
        // Other tests run alongside, so the two readings differ a little.
        assert!(
            statm_kib.abs_diff(status) < 16 * 1024,
            "statm {statm_kib} KiB, status {status} KiB"
        );
        let touched = Touched::new(64 * MIB as usize);
        let during = rss.bytes().unwrap();
        drop(touched);
        let after = rss.bytes().unwrap();
        assert!(
            during >= before + 48 * MIB,
            "before {before}, with 64 MiB touched {during}"
        );
        assert!(
            after + 48 * MIB <= during,
            "with 64 MiB touched {during}, unmapped {after}"
        );
    }

    #[test]
    fn policy_trims_first_then_on_growth_settle_or_period() {
        let p = TrimPolicy {
            growth: 3 * MIB,
            settle: MIB,
            interval: Duration::from_millis(250),
            max_interval: Duration::from_secs(60),
        };
        let after = 6 * MIB;
        let last = |reason, secs: f64| {
            Some(LastTrim {
                reason,
                after,
                ago: Duration::from_secs_f64(secs),
            })
        };
        use TrimReason::*;
        // Never trimmed: start-up pages go at once.
        assert_eq!(p.decide(after, None), Some(Start));
        // Grown past the threshold, the last trim an interval ago or more.
        assert_eq!(p.decide(after + 3 * MIB + 1, last(Start, 0.25)), Some(Growth));
        assert_eq!(p.decide(after + 13 * MIB, last(Growth, 5.0)), Some(Growth));
        assert_eq!(p.decide(after + 13 * MIB, last(Period, 5.0)), Some(Growth));
        // Grown, but the last trim is too recent: a long burst re-faults its
        // code once per interval at most.
        assert_eq!(p.decide(after + 13 * MIB, last(Growth, 0.2)), None);
        // Not grown enough.
        assert_eq!(p.decide(after + 3 * MIB, last(Start, 5.0)), None);
        assert_eq!(p.decide(after + 2 * MIB, last(Period, 59.9)), None);
        // Shrunk below the last level (malloc gave freed heap back).
        assert_eq!(p.decide(after - MIB, last(Growth, 30.0)), None);
        // After a growth trim, less growth calls for one follow-up; after
        // any other, it waits for the period.
        assert_eq!(p.decide(after + 2 * MIB, last(Growth, 0.25)), Some(Settle));
        assert_eq!(p.decide(after + MIB, last(Growth, 5.0)), None);
        assert_eq!(p.decide(after + 2 * MIB, last(Settle, 5.0)), None);
        assert_eq!(p.decide(after + 2 * MIB, last(Start, 5.0)), None);
        assert_eq!(p.decide(after + 2 * MIB, last(Growth, 0.1)), None);
        // The period alone.
        assert_eq!(p.decide(after, last(Settle, 60.0)), Some(Period));
        assert_eq!(p.decide(after - MIB, last(Growth, 61.0)), Some(Period));
    }

    #[test]
    fn daemon_policy_trims_a_burst_within_a_second() {
        let p = TrimPolicy::DAEMON;
        assert!(p.interval <= Duration::from_secs(1));
        assert!(p.settle < p.growth);
        // 20 pod starts re-fault ~9 MiB of code over a ~6 MiB level.
        let last = |ago| {
            Some(LastTrim {
                reason: TrimReason::Start,
                after: 6 * MIB,
                ago,
            })
        };
        assert_eq!(p.decide(15 * MIB, last(p.interval)), Some(TrimReason::Growth));
        assert_eq!(p.decide(6 * MIB, last(p.max_interval)), Some(TrimReason::Period));
    }

    #[test]
    fn trimmer_trims_on_growth_settles_once_and_keeps_memory_in_use() {
        // Thresholds well above what the tests running alongside allocate.
        let policy = TrimPolicy {
            growth: 48 * MIB,
            settle: 16 * MIB,
            interval: Duration::from_secs(1),
            max_interval: Duration::from_secs(60),
        };
        let _one_at_a_time = RESIDENT.lock().unwrap_or_else(|e| e.into_inner());
        let mut trimmer = Trimmer::new(policy, Some(ResidentSize::open().unwrap()));
        let t0 = Instant::now();
        let secs = |s| t0 + Duration::from_secs(s);
        let first = trimmer.tick(t0).expect("the first tick trims");
        assert_eq!(first.reason, TrimReason::Start);
        assert!(first.after > 0, "{first:?}");
        assert_eq!(trimmer.tick(secs(2)), None);

        let grown = Touched::new(64 * MIB as usize);
        let second = trimmer.tick(secs(3)).expect("64 MiB of growth trims");
        assert_eq!(second.reason, TrimReason::Growth);
        assert!(
            second.before >= first.after + 48 * MIB,
            "{first:?} then {second:?}"
        );
        // The touched pages are in use, so they stay and become the level
        // later growth counts from: no trim every interval for memory that
        // cannot go.
        assert!(
            second.after >= first.after + 48 * MIB,
            "{first:?} then {second:?}"
        );
        assert_eq!(trimmer.tick(secs(5)), None);

        // Less than `growth` after a growth trim: one follow-up, no more.
        let settled = Touched::new(32 * MIB as usize);
        let third = trimmer.tick(secs(6)).expect("32 MiB after a growth trim");
        assert_eq!(third.reason, TrimReason::Settle);
        let more = Touched::new(32 * MIB as usize);
        assert_eq!(trimmer.tick(secs(7)), None);

        drop((grown, settled, more));
        // The period applies even when nothing grew.
        let fourth = trimmer.tick(secs(67)).expect("a minute later");
        assert_eq!(fourth.reason, TrimReason::Period);
    }

    #[test]
    fn trimmer_without_resident_size_trims_on_the_period_only() {
        let _one_at_a_time = RESIDENT.lock().unwrap_or_else(|e| e.into_inner());
        let mut trimmer = Trimmer::new(TrimPolicy::DAEMON, None);
        let t0 = Instant::now();
        let first = trimmer.tick(t0).map(|t| t.reason);
        assert_eq!(first, Some(TrimReason::Start));
        assert_eq!(trimmer.tick(t0 + Duration::from_secs(59)), None);
        let second = trimmer.tick(t0 + Duration::from_secs(60)).map(|t| t.reason);
        assert_eq!(second, Some(TrimReason::Period));
    }
}
