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
