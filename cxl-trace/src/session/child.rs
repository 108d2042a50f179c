//! The processes a run follows: a pid and its descendants, or a command it starts.

use std::process::ExitStatus;

use crate::{
    error::{Error, Result},
    probe::Tracer,
};

/// Adds `pid` and its current descendants to the follow set.
pub fn follow_tree(tracer: &mut Tracer, pid: u32) -> Result<()> {
    let mut stack = vec![pid];
    let mut seen = 0usize;
    while let Some(p) = stack.pop() {
        tracer.follow(p)?;
        seen += 1;
        if seen > cxl_trace_common::FOLLOW_MAX as usize {
            break;
        }
        let tasks = std::fs::read_dir(format!("/proc/{p}/task"));
        for task in tasks.into_iter().flatten().flatten() {
            let children =
                std::fs::read_to_string(task.path().join("children")).unwrap_or_default();
            stack.extend(
                children
                    .split_whitespace()
                    .filter_map(|c| c.parse::<u32>().ok()),
            );
        }
    }
    Ok(())
}

/// Starts `cmd` so that it is followed from its first instruction: cxl-trace follows itself
/// for the duration of the spawn, so the in-kernel fork hook adds the child before it runs,
/// then stops following itself (its own events are discarded by the reader).
pub fn spawn_followed(cmd: &[String], tracer: &mut Tracer) -> Result<tokio::process::Child> {
    let Some((prog, args)) = cmd.split_first() else {
        return Err(Error::Usage("no command given after --".into()));
    };
    let me = std::process::id();
    tracer.follow(me)?;
    let spawned = tokio::process::Command::new(prog)
        .args(args)
        .kill_on_drop(true)
        .spawn();
    let unfollowed = tracer.unfollow(me);
    let child = spawned.map_err(|e| Error::Spawn {
        cmd: cmd.join(" "),
        source: e,
    })?;
    unfollowed?;
    Ok(child)
}

/// Shell-style exit code of a finished command.
pub fn exit_code(status: ExitStatus) -> i32 {
    use std::os::unix::process::ExitStatusExt;
    status
        .code()
        .or_else(|| status.signal().map(|s| 128 + s))
        .unwrap_or(1)
}

pub async fn wait_child(child: &mut Option<tokio::process::Child>) -> std::io::Result<ExitStatus> {
    match child {
        Some(c) => c.wait().await,
        None => std::future::pending().await,
    }
}
