//! How the process asks the C allocator for memory, tuned for a daemon that rebuilds tens of
//! megabytes of policy on every reload and must hand them back afterwards (a Raspberry Pi
//! has little to spare).
//!
//! glibc serves large blocks with `mmap` only above a threshold that it raises on its own
//! after the first large free; from then on, list texts and matcher tables land in the heap,
//! where freeing them rarely shrinks the process. Fixing the threshold keeps every large
//! block in its own mapping: freed blocks go straight back to the system, and growing one
//! is a `mremap` instead of a copy, so a rebuild's peak stays near old + new policy.

/// Blocks of this size or more get their own mapping.
const MMAP_THRESHOLD: libc::c_int = 256 * 1024;

/// Applies the allocator settings; call once at start, before any large allocation.
pub fn tune_allocator() {
    #[cfg(target_env = "gnu")]
    // SAFETY: mallopt only changes allocator parameters; it is called before other threads
    // start allocating large blocks and takes no pointers.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD);
    }
}

/// Returns free heap memory to the system (after a reload dropped the previous policy).
pub fn release_free_memory() {
    #[cfg(target_env = "gnu")]
    // SAFETY: malloc_trim only releases memory the allocator holds free; it takes no pointers.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// Asks the kernel to back `data` with huge pages (2 MiB), now, where it spans whole ones.
///
/// For the matcher's tables, read at random on every query: with 4 KiB pages a 30 MB table
/// needs thousands of TLB entries, far more than a CPU has (a Raspberry Pi's reach is 4 MB),
/// so nearly every lookup also waits for a page-table walk. Huge pages cut that to a few
/// dozen. Best effort: on a kernel without `MADV_COLLAPSE` (before Linux 6.1), or with
/// transparent huge pages off, the pages stay as they are.
pub fn back_with_huge_pages<T>(data: &[T]) {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        const HUGE_PAGE: usize = 2 << 20;
        let start = data.as_ptr() as usize;
        let first = start.next_multiple_of(HUGE_PAGE);
        let end = (start + size_of_val(data)) & !(HUGE_PAGE - 1);
        if end <= first {
            return;
        }
        // SAFETY: the range lies inside `data`, which stays allocated for the call; these
        // advices change only which pages back it, never what it holds.
        unsafe {
            let range = first as *mut libc::c_void;
            libc::madvise(range, end - first, libc::MADV_HUGEPAGE);
            libc::madvise(range, end - first, libc::MADV_COLLAPSE);
        }
    }
}
