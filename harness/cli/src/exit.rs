//! Exit codes: a contract with users' CI scripts.

/// The process exit codes of every verb.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
#[repr(i32)]
pub enum Exit {
    /// Everything passed.
    Ok = 0,
    /// A check failed (only `run` judges a cluster).
    CheckFailed = 1,
    /// Bad input: a scenario or the arguments.
    BadInput = 2,
    /// Infrastructure error: could not stand up, or inconclusive cells.
    Infrastructure = 3,
    /// Interrupted by Ctrl-C / SIGINT (after cleanup): 128 + 2, as shells report it.
    Interrupted = 130,
    /// Terminated by SIGTERM (after the same cleanup as Ctrl-C): 128 + 15.
    Terminated = 143,
}

/// The async runtime of a verb that talks to servers, or exit 3 saying why it could not start
/// (a process out of threads or file descriptors is an infrastructure problem, not bad input).
pub fn runtime(
    term: &crate::term::Term,
    multi_thread: bool,
) -> Result<tokio::runtime::Runtime, Exit> {
    let mut builder = if multi_thread {
        tokio::runtime::Builder::new_multi_thread()
    } else {
        tokio::runtime::Builder::new_current_thread()
    };
    builder.enable_all().build().map_err(|e| {
        eprintln!(
            "{} cannot start the async runtime: {e}",
            term.red("error:", true)
        );
        Exit::Infrastructure
    })
}
