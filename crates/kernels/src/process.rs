//! Process-wide settings a command-line program needs that only `unsafe` FFI can make.

/// Restores the default action of `SIGPIPE` (terminate quietly), as C programs have it.
///
/// Rust starts programs with `SIGPIPE` ignored, so writing to a closed pipe
/// (`convnet models | head -3`) returns `EPIPE` and `println!` panics with "failed printing to
/// stdout". With the default action the process ends as `cat` or `grep` do in a pipeline:
/// silently, status 141 (128 + SIGPIPE) as the shell reports it. Only programs call this,
/// never libraries. Files being written are safe: they are renamed into place only when
/// complete. No-op off Unix.
pub fn restore_default_sigpipe() {
    #[cfg(unix)]
    {
        // POSIX numbers: SIGPIPE is 13 on Linux, the BSDs and macOS; SIG_DFL is 0
        const SIGPIPE: i32 = 13;
        const SIG_DFL: usize = 0;
        unsafe extern "C" {
            fn signal(signum: i32, handler: usize) -> usize;
        }
        // SAFETY: setting a signal's disposition to SIG_DFL installs no handler code, and
        // is done once at start-up before any thread writes to a pipe.
        unsafe {
            signal(SIGPIPE, SIG_DFL);
        }
    }
}
