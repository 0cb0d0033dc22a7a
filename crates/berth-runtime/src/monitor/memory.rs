//! Giving back what a long-lived helper (a monitor, an exec waiter) used
//! only to start.
//!
//! Such a process lives as long as its container and is multiplied by the
//! number of containers, so its resident set is what berth costs per
//! container. Most of it is not data but the executable's own pages: the
//! kernel maps file pages around every fault (64 KiB), so the start-up code
//! (config parsing, spawning the runtime, glibc's and std's initialisation)
//! leaves nearly the whole text segment mapped although the steady loop runs
//! a few functions of it.

use std::ffi::c_void;

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

#[cfg(test)]
mod tests {
    use super::*;

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

    #[test]
    fn startup_code_pages_are_released_and_come_back() {
        let exe = std::fs::read_link("/proc/self/exe").unwrap();
        let before = resident_code_kib();
        assert!(before > 0, "no code mapping of {} found", exe.display());
        release_startup_pages();
        let after = resident_code_kib();
        assert!(
            after < before,
            "code resident before {before} KiB, after {after} KiB"
        );
        // The process goes on running code from the dropped pages.
        assert_eq!(
            crate::logs::format_rfc3339nano(time::OffsetDateTime::UNIX_EPOCH),
            "1970-01-01T00:00:00.000000000Z"
        );
    }
}
