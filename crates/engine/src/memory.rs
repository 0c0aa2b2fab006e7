//! Giving the heap back after a compile. Cranelift allocates hundreds of KiB to tens of MiB
//! per function compiled and frees it all, but glibc's allocator keeps freed memory in its
//! arenas (one per compiling thread). A server that compiles at every deploy would keep that
//! high-water mark for good; trimming after each compile returns it to the kernel.

/// Returns free heap memory to the kernel (glibc `malloc_trim`); a no-op elsewhere.
pub fn return_freed_heap() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        unsafe extern "C" {
            fn malloc_trim(pad: usize) -> std::ffi::c_int;
        }
        // SAFETY: `malloc_trim` is glibc's documented entry point (malloc.h), takes a plain
        // integer, touches only the allocator's own state under its own locks, and is safe to
        // call from any thread at any time; this target links glibc.
        unsafe {
            malloc_trim(0);
        }
    }
}
