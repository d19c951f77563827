//! glibc allocator settings for the agent.
//!
//! glibc gives each thread that allocates its own arena (up to eight per core). The render
//! threads of a full sync allocate the render cache, which lives on, so their arenas stay
//! pinned and half empty: at 10,000 services that was about 15 MB of resident memory over
//! the heap itself. The agent has few threads, and one arena serves them.
//!
//! glibc also raises its mmap threshold each time a large block is freed, so later large
//! buffers (a full sync's dispatch rules, several MB) come from the heap and leave holes
//! there when freed. A fixed threshold sends them to mmap, and freeing them returns the
//! memory at once.

/// Sets the agent's allocator parameters, each unless the operator set its environment
/// variable (`MALLOC_ARENA_MAX`, `MALLOC_MMAP_THRESHOLD_`). Call it before any thread
/// starts.
pub fn tune_allocator() {
    #[cfg(target_env = "gnu")]
    {
        /// Arenas the agent's allocator may use.
        const AGENT_ARENAS: i32 = 1;
        /// Blocks at least this large are mapped on their own.
        const MMAP_THRESHOLD: i32 = 256 * 1024;
        let unset = |name: &str| std::env::var_os(name).is_none();
        // SAFETY: mallopt only changes allocator parameters; no other thread exists yet.
        unsafe {
            if unset("MALLOC_ARENA_MAX") {
                libc::mallopt(libc::M_ARENA_MAX, AGENT_ARENAS);
            }
            if unset("MALLOC_MMAP_THRESHOLD_") {
                libc::mallopt(libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD);
            }
        }
    }
}
