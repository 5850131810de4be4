//! Prism (`@stoplight/prism-cli`, pinned in `tools/prism`) as a mock of a provider's API, built from
//! the provider's own OpenAPI document. Prism validates every request against the spec: a request
//! that breaks it is answered 422 (or 400/401/404 when the spec's security or paths say so) instead
//! of the spec's example, and its log names each violation.
//!
//! Started once per test binary ([`shared`]), on a free port. The process is tied to the test binary
//! through a pipe: when the binary exits, the pipe closes and a small shell wrapper stops Prism.

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

/// How long Prism may take to load a spec (Twilio's is 1.8 MB).
const START_TIMEOUT: Duration = Duration::from_secs(90);

pub struct Prism {
    pub base_url: String,
    log: Arc<Mutex<Vec<String>>>,
    _child: Child,
    /// Held open for the life of the test binary; its closing stops Prism.
    _lifeline: ChildStdin,
}

impl Prism {
    /// Log lines so far (Prism's own, colour codes stripped).
    pub fn log(&self) -> Vec<String> {
        self.log.lock().unwrap().clone()
    }

    /// The violations Prism logged since log line `from_line` (see [`Self::mark`]). Prism is shared
    /// by the tests of the binary, so this may include other tests' violations: use it to explain
    /// a failure, and assert on the answer the plugin got.
    pub fn violations_since(&self, from_line: usize) -> Vec<String> {
        self.log()
            .into_iter()
            .skip(from_line)
            .filter(|line| line.contains("Violation") || line.contains("violation"))
            .collect()
    }

    /// How many log lines there are now: pass to [`Self::violations_since`] after a request.
    pub fn mark(&self) -> usize {
        self.log.lock().unwrap().len()
    }

    /// Whether Prism logs a line containing `needle` within `within`. Prism's output is read by a
    /// thread, so the line of a request may come in just after its answer.
    pub fn logs_within(&self, needle: &str, within: Duration) -> bool {
        let deadline = Instant::now() + within;
        loop {
            if self.log.lock().unwrap().iter().any(|l| l.contains(needle)) {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// The Prism for `spec` (a path under the specs directory, see [`super::spec`], or a derived spec
/// from [`super::specs`]), started on first use and shared by every test of this binary.
pub fn shared(spec: impl AsRef<Path>) -> &'static Prism {
    static RUNNING: OnceLock<Mutex<HashMap<PathBuf, &'static Prism>>> = OnceLock::new();
    let path = spec.as_ref();
    let path = if path.is_absolute() {
        path.to_path_buf()
    } else {
        super::spec(path.to_str().expect("a UTF-8 spec path"))
    };
    let mut running = RUNNING
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|e| e.into_inner());
    running
        .entry(path.clone())
        .or_insert_with(|| Box::leak(Box::new(start(&path))))
}

/// The Prism executable, installed by `npm ci` in `tools/prism` (`.ci/run` does it; so does this,
/// once, if it is missing).
fn prism_bin() -> PathBuf {
    let tools = super::repo_root().join("tools/prism");
    let bin = tools.join("node_modules/.bin/prism");
    if bin.is_file() {
        return bin;
    }
    // Several test binaries may get here at once: one installs, the others wait on the lock.
    let lock = std::fs::File::create(std::env::temp_dir().join("hermes-prism-install.lock"))
        .expect("creating the install lock");
    lock.lock().expect("taking the install lock");
    if !bin.is_file() {
        let status = Command::new("npm")
            .args(["ci", "--no-audit", "--no-fund", "--silent"])
            .current_dir(&tools)
            .status()
            .expect("running npm (Node.js is needed for the provider tests)");
        assert!(status.success(), "npm ci in {} failed", tools.display());
    }
    bin
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

fn start(spec: &Path) -> Prism {
    let bin = prism_bin();
    let port = free_port();
    // `read` returns when the test binary's end of the pipe closes; then Prism is stopped.
    let mut child = Command::new("sh")
        .arg("-c")
        .arg(r#""$0" "$@" & prism=$!; read _ignored; kill $prism"#)
        .arg(&bin)
        .args(["mock", "-h", "127.0.0.1", "-p", &port.to_string()])
        .arg(spec)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("starting Prism");
    let lifeline = child.stdin.take().expect("piped stdin");
    let log = Arc::new(Mutex::new(Vec::new()));
    for stream in [
        Box::new(child.stdout.take().expect("piped stdout")) as Box<dyn std::io::Read + Send>,
        Box::new(child.stderr.take().expect("piped stderr")),
    ] {
        let log = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stream).lines().map_while(Result::ok) {
                log.lock().unwrap().push(strip_ansi(&line));
            }
        });
    }
    let started = Instant::now();
    let ready = || {
        log.lock()
            .unwrap()
            .iter()
            .any(|l| l.contains("Prism is listening"))
    };
    while !(ready() && TcpStream::connect(("127.0.0.1", port)).is_ok()) {
        if let Ok(Some(status)) = child.try_wait() {
            panic!(
                "Prism exited ({status}) for {}:\n{}",
                spec.display(),
                log.lock().unwrap().join("\n")
            );
        }
        assert!(
            started.elapsed() < START_TIMEOUT,
            "Prism did not start within {START_TIMEOUT:?} for {}:\n{}",
            spec.display(),
            log.lock().unwrap().join("\n")
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    Prism {
        base_url: format!("http://127.0.0.1:{port}"),
        log,
        _child: child,
        _lifeline: lifeline,
    }
}

fn strip_ansi(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            // CSI: ESC [ ... final byte in @..~
            for c in chars.by_ref() {
                if ('@'..='~').contains(&c) && c != '[' {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}
