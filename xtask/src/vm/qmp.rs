//! QEMU's QMP socket, relayed to the guest: the guest scenario appends QMP commands (one JSON
//! object a line) to `/results/qmp.in`; the host sends each to QEMU and appends QEMU's answer
//! to `/results/qmp.out`, line for line. So a scenario inside the guest can inject CXL events
//! and errors, which only the emulator can.

use std::{
    fs,
    io::{BufRead as _, BufReader, Write as _},
    os::unix::net::UnixStream,
    path::{Path, PathBuf},
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    thread::JoinHandle,
    time::Duration,
};

use anyhow::{bail, Context as _, Result};

/// The relay thread; stops when dropped.
pub(crate) struct Relay {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Relays `rundir/qmp.in` to the QMP socket `rundir/qmp.sock` until dropped.
pub(crate) fn relay(rundir: &Path) -> Relay {
    let stop = Arc::new(AtomicBool::new(false));
    let (dir, flag) = (rundir.to_path_buf(), stop.clone());
    let _ = fs::remove_file(dir.join("qmp.in"));
    let _ = fs::remove_file(dir.join("qmp.out"));
    let thread = std::thread::spawn(move || {
        let mut conn: Option<Qmp> = None;
        let mut done = 0usize;
        while !flag.load(Ordering::Relaxed) {
            std::thread::sleep(Duration::from_millis(100));
            let requests = fs::read_to_string(dir.join("qmp.in")).unwrap_or_default();
            for line in requests.lines().skip(done) {
                let answer = conn
                    .take()
                    .map_or_else(|| Qmp::connect(&dir.join("qmp.sock")), Ok)
                    .and_then(|mut q| q.execute(line).map(|a| (q, a)));
                let text = match answer {
                    Ok((q, a)) => {
                        conn = Some(q);
                        a
                    }
                    Err(e) => format!("{{\"error\":{{\"desc\":{:?}}}}}", format!("{e:#}")),
                };
                let out = fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(dir.join("qmp.out"));
                if let Ok(mut f) = out {
                    let _ = writeln!(f, "{text}");
                }
                done += 1;
            }
        }
    });
    Relay {
        stop,
        thread: Some(thread),
    }
}

/// A QMP connection in command mode.
struct Qmp {
    stream: UnixStream,
    reader: BufReader<UnixStream>,
}

impl Qmp {
    fn connect(path: &PathBuf) -> Result<Self> {
        let stream = UnixStream::connect(path)
            .with_context(|| format!("cannot connect to {}", path.display()))?;
        stream.set_read_timeout(Some(Duration::from_secs(10)))?;
        let reader = BufReader::new(stream.try_clone()?);
        let mut q = Self { stream, reader };
        // The greeting, then capabilities negotiation.
        q.read_line()?;
        q.execute(r#"{"execute":"qmp_capabilities"}"#)?;
        Ok(q)
    }

    fn read_line(&mut self) -> Result<String> {
        let mut line = String::new();
        if self.reader.read_line(&mut line)? == 0 {
            bail!("QMP closed the connection");
        }
        Ok(line.trim_end().to_string())
    }

    /// Sends one command; its answer (`return` or `error`), asynchronous events skipped.
    fn execute(&mut self, command: &str) -> Result<String> {
        writeln!(self.stream, "{command}")?;
        loop {
            let line = self.read_line()?;
            if is_answer(&line) {
                return Ok(line);
            }
        }
    }
}

/// A QMP answer, as opposed to an asynchronous event.
fn is_answer(line: &str) -> bool {
    #[derive(serde::Deserialize)]
    struct Probe {
        #[serde(default)]
        event: Option<String>,
    }
    serde_json::from_str::<Probe>(line).is_ok_and(|p| p.event.is_none())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_are_told_from_events() {
        assert!(is_answer(r#"{"return": {}}"#));
        assert!(is_answer(
            r#"{"error": {"class": "GenericError", "desc": "x"}}"#
        ));
        assert!(!is_answer(
            r#"{"timestamp": {"seconds": 1, "microseconds": 2}, "event": "RESUME"}"#
        ));
        assert!(!is_answer("not json"));
    }

    /// The relay against a fake QMP server: greeting, capabilities, one command.
    #[test]
    fn the_relay_answers_each_request_line() {
        let dir = std::env::temp_dir().join(format!("cxl-trace-qmp-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).expect("dir");
        let listener = std::os::unix::net::UnixListener::bind(dir.join("qmp.sock")).expect("bind");
        let server = std::thread::spawn(move || {
            let (mut s, _) = listener.accept().expect("accept");
            let mut r = BufReader::new(s.try_clone().expect("clone"));
            writeln!(s, r#"{{"QMP": {{"version": {{}}}}}}"#).expect("greet");
            let mut line = String::new();
            r.read_line(&mut line).expect("caps");
            writeln!(s, r#"{{"return": {{}}}}"#).expect("caps answer");
            line.clear();
            r.read_line(&mut line).expect("command");
            writeln!(s, r#"{{"event": "X"}}"#).expect("event");
            writeln!(s, r#"{{"return": {{"got": {}}}}}"#, line.trim().len()).expect("answer");
        });
        let relay = relay(&dir);
        fs::write(dir.join("qmp.in"), "{\"execute\":\"query-status\"}\n").expect("request");
        let mut out = String::new();
        for _ in 0..50 {
            out = fs::read_to_string(dir.join("qmp.out")).unwrap_or_default();
            if !out.is_empty() {
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        drop(relay);
        server.join().expect("server");
        assert_eq!(out.trim(), r#"{"return": {"got": 26}}"#);
        let _ = fs::remove_dir_all(&dir);
    }
}
