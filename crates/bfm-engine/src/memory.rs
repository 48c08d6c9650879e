//! Giving freed memory back to the operating system.
//!
//! Loading and recording a large catalogue allocates several times the memory the catalogue
//! keeps (file texts, parsed directives, the state store's rows to compare against). glibc's
//! allocator keeps those freed pages in its heap, so an idle server with 10,000 migrations held
//! about twice the memory it uses. After such a burst we ask glibc to return free pages.

/// Return free heap pages to the operating system (glibc only; a no-op elsewhere).
pub fn release_free_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        unsafe extern "C" {
            fn malloc_trim(pad: usize) -> std::ffi::c_int;
        }
        // SAFETY: malloc_trim only walks glibc's own heap bookkeeping; it takes no pointers
        // from us and is thread-safe (it locks each arena).
        unsafe {
            malloc_trim(0);
        }
    }
}
