//! glibc's allocator gives each thread that allocates its own arena (up to eight per
//! core). The render threads of a full sync allocate the render cache, which lives on, so
//! their arenas stay pinned and half empty: at 10,000 services that was about 15 MB of
//! resident memory over the heap itself. The agent has few threads, and two arenas serve
//! them without contention worth measuring.

/// Limits glibc's malloc arenas for the agent, unless the operator set `MALLOC_ARENA_MAX`.
/// Call it before any thread starts.
pub fn limit_malloc_arenas() {
    if std::env::var_os("MALLOC_ARENA_MAX").is_some() {
        return;
    }
    #[cfg(target_env = "gnu")]
    {
        /// Arenas the agent's allocator may use.
        const AGENT_ARENAS: i32 = 2;
        // SAFETY: mallopt only changes an allocator parameter; no other thread exists yet.
        unsafe {
            libc::mallopt(libc::M_ARENA_MAX, AGENT_ARENAS);
        }
    }
}
