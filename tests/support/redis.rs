//! Real `redis-server` processes for the session store tests: a standalone
//! server ([`RedisServer`]), a Sentinel set-up ([`RedisSentinel`]: master,
//! replica, one sentinel) and a Cluster ([`RedisCluster`]: three masters
//! joined by `redis-cli --cluster create`), plus [`Resp`], a minimal RESP
//! client to look inside them (no `redis` crate needed by the harness).
//!
//! Every process listens on an ephemeral loopback port (chosen free, retried
//! when another process takes it first), keeps nothing on disk beyond its own
//! temp directory (`--save "" --appendonly no`; the directory is removed on
//! drop) and is killed and reaped on drop: no pid files, no leftovers.
//!
//! [`redis_available`] decides whether a test runs: a missing `redis-server`
//! or `redis-cli` skips it with one loud line saying how to install them, or
//! fails it under `GATEHOUSE_REQUIRE_E2E=1` (as for nginx and Caddy).

use std::fmt;
use std::future::Future;
use std::io;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tokio::io::{AsyncBufReadExt as _, AsyncReadExt as _, AsyncWriteExt as _, BufReader};
use tokio::net::TcpStream;

use super::e2e::{Binary, TempDir, find_binary, free_port};

pub const REDIS_SERVER: Binary = Binary {
    name: "redis-server",
    also: &["/usr/bin/redis-server", "/usr/local/bin/redis-server"],
    install: "apt-get install -y redis-server redis-tools (Debian/Ubuntu)",
};

pub const REDIS_CLI: Binary = Binary {
    name: "redis-cli",
    also: &["/usr/bin/redis-cli", "/usr/local/bin/redis-cli"],
    install: "apt-get install -y redis-server redis-tools (Debian/Ubuntu)",
};

/// How long a process may take to answer `PING`.
const START_TIMEOUT: Duration = Duration::from_secs(15);
/// How long one RESP exchange may take.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(3);
/// How long a Sentinel failover or a Cluster may take to settle.
const SETTLE_TIMEOUT: Duration = Duration::from_secs(30);
/// Tries at a fresh port when another process took the chosen one.
const PORT_TRIES: usize = 5;

/// Whether `test` can run: `redis-server` and `redis-cli` are installed.
/// When one is missing this prints one loud line and returns `false`, or
/// panics under `GATEHOUSE_REQUIRE_E2E=1`.
pub fn redis_available(test: &str) -> bool {
    find_binary(REDIS_SERVER, test).is_some() && find_binary(REDIS_CLI, test).is_some()
}

fn binary(bin: Binary) -> PathBuf {
    find_binary(bin, "a redis test").unwrap_or_else(|| {
        panic!(
            "`{}` is not installed; call redis_available first",
            bin.name
        )
    })
}

// === RESP ===

/// A RESP reply.
#[derive(Clone, PartialEq, Eq)]
pub enum Reply {
    Simple(String),
    Error(String),
    Int(i64),
    Bulk(Option<Vec<u8>>),
    Array(Option<Vec<Self>>),
}

impl Reply {
    /// The text of a simple or bulk string (lossy UTF-8); panics otherwise.
    pub fn text(&self) -> String {
        match self {
            Self::Simple(s) => s.clone(),
            Self::Bulk(Some(b)) => String::from_utf8_lossy(b).into_owned(),
            other => panic!("expected a string reply, got {other:?}"),
        }
    }

    /// The bytes of a bulk string; panics otherwise.
    pub fn bytes(&self) -> Vec<u8> {
        match self {
            Self::Bulk(Some(b)) => b.clone(),
            Self::Simple(s) => s.as_bytes().to_vec(),
            other => panic!("expected a bulk reply, got {other:?}"),
        }
    }

    pub fn int(&self) -> i64 {
        match self {
            Self::Int(i) => *i,
            other => panic!("expected an integer reply, got {other:?}"),
        }
    }

    /// The items of an array (empty for a nil array); panics otherwise.
    pub fn items(&self) -> Vec<Self> {
        match self {
            Self::Array(items) => items.clone().unwrap_or_default(),
            other => panic!("expected an array reply, got {other:?}"),
        }
    }

    pub fn is_error(&self) -> bool {
        matches!(self, Self::Error(_))
    }
}

impl fmt::Debug for Reply {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Simple(s) => write!(f, "+{s}"),
            Self::Error(e) => write!(f, "-{e}"),
            Self::Int(i) => write!(f, ":{i}"),
            Self::Bulk(None) | Self::Array(None) => f.write_str("(nil)"),
            Self::Bulk(Some(b)) => write!(f, "{:?}", String::from_utf8_lossy(b)),
            Self::Array(Some(items)) => f.debug_list().entries(items).finish(),
        }
    }
}

/// One RESP2 connection to a Redis server or sentinel, every exchange
/// bounded by a timeout.
pub struct Resp {
    stream: BufReader<TcpStream>,
}

impl Resp {
    /// Connects to `127.0.0.1:port`, sending `AUTH` when `password` is given.
    pub async fn connect(port: u16, password: Option<&str>) -> io::Result<Self> {
        let stream = tokio::time::timeout(COMMAND_TIMEOUT, TcpStream::connect(("127.0.0.1", port)))
            .await
            .map_err(|_elapsed| io::Error::new(io::ErrorKind::TimedOut, "connect timed out"))??;
        let mut conn = Self {
            stream: BufReader::new(stream),
        };
        if let Some(password) = password {
            let reply = conn.cmd(&["AUTH", password]).await?;
            if reply.is_error() {
                return Err(io::Error::other(format!("AUTH refused: {reply:?}")));
            }
        }
        Ok(conn)
    }

    /// Sends one command; a Redis error comes back as [`Reply::Error`].
    pub async fn cmd(&mut self, args: &[&str]) -> io::Result<Reply> {
        let args: Vec<&[u8]> = args.iter().map(|a| a.as_bytes()).collect();
        self.cmd_bytes(&args).await
    }

    /// [`Resp::cmd`] with binary arguments.
    pub async fn cmd_bytes(&mut self, args: &[&[u8]]) -> io::Result<Reply> {
        let mut out = format!("*{}\r\n", args.len()).into_bytes();
        for arg in args {
            out.extend_from_slice(format!("${}\r\n", arg.len()).as_bytes());
            out.extend_from_slice(arg);
            out.extend_from_slice(b"\r\n");
        }
        let exchange = async {
            self.stream.get_mut().write_all(&out).await?;
            read_reply(&mut self.stream).await
        };
        tokio::time::timeout(COMMAND_TIMEOUT, exchange)
            .await
            .map_err(|_elapsed| {
                io::Error::new(io::ErrorKind::TimedOut, "redis command timed out")
            })?
    }
}

fn read_reply(
    r: &mut BufReader<TcpStream>,
) -> Pin<Box<dyn Future<Output = io::Result<Reply>> + Send + '_>> {
    Box::pin(async move {
        let mut line = String::new();
        if r.read_line(&mut line).await? == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        let line = line.trim_end_matches("\r\n");
        let (kind, rest) = line.split_at_checked(1).unwrap_or(("", ""));
        let bad = || {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("bad RESP line {line:?}"),
            )
        };
        let len = || rest.parse::<i64>().map_err(|_e| bad());
        Ok(match kind {
            "+" => Reply::Simple(rest.to_owned()),
            "-" => Reply::Error(rest.to_owned()),
            ":" => Reply::Int(len()?),
            "$" => match usize::try_from(len()?) {
                Err(_negative) => Reply::Bulk(None),
                Ok(n) => {
                    let mut buf = vec![0; n + 2];
                    r.read_exact(&mut buf).await?;
                    buf.truncate(n);
                    Reply::Bulk(Some(buf))
                }
            },
            "*" => match usize::try_from(len()?) {
                Err(_negative) => Reply::Array(None),
                Ok(n) => {
                    let mut items = Vec::with_capacity(n);
                    for _ in 0..n {
                        items.push(read_reply(r).await?);
                    }
                    Reply::Array(Some(items))
                }
            },
            _ => return Err(bad()),
        })
    })
}

/// The `field:value` lines of an `INFO` or `CLUSTER INFO` reply.
pub fn info_field(info: &str, field: &str) -> Option<String> {
    info.lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .map(|v| v.trim().to_owned())
}

/// Polls `check` every 50 ms until it returns `Some`, or panics after
/// `timeout` with `what` and the last thing `check` saw.
pub async fn poll<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, String>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        let last = match check().await {
            Ok(v) => return v,
            Err(e) => e,
        };
        assert!(
            Instant::now() < deadline,
            "{what}: not after {timeout:?}; last seen: {last}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

// === one process ===

/// What a process is.
#[derive(Clone, Debug)]
enum Role {
    Standalone,
    Replica {
        master_port: u16,
    },
    ClusterNode,
    Sentinel {
        master_name: String,
        master_port: u16,
    },
}

/// Why a process did not start.
enum StartError {
    PortTaken(String),
    Failed(String),
}

/// A running `redis-server` (or sentinel): killed and reaped on drop; its
/// temp dir (logs, and a dump only when asked for) removed after it.
pub struct RedisServer {
    role: Role,
    port: u16,
    /// The Cluster bus port (`cluster-port`), for cluster nodes.
    bus_port: Option<u16>,
    password: Option<String>,
    child: Option<Child>,
    /// Dropped after the child is killed (fields drop in order).
    dir: TempDir,
}

impl RedisServer {
    /// A standalone server without a password.
    pub async fn start() -> Self {
        Self::launch(Role::Standalone, None).await
    }

    /// A standalone server with `requirepass password`.
    pub async fn start_with_password(password: &str) -> Self {
        Self::launch(Role::Standalone, Some(password.to_owned())).await
    }

    /// Starts a process on fresh ports, trying others when one is taken.
    async fn launch(role: Role, password: Option<String>) -> Self {
        let label = match role {
            Role::Standalone => "redis",
            Role::Replica { .. } => "redis-replica",
            Role::ClusterNode => "redis-cluster",
            Role::Sentinel { .. } => "redis-sentinel",
        };
        let mut last = String::new();
        for attempt in 1..=PORT_TRIES {
            let mut server = Self {
                port: free_port(),
                bus_port: matches!(role, Role::ClusterNode).then(free_port),
                role: role.clone(),
                password: password.clone(),
                child: None,
                dir: TempDir::new(label),
            };
            match server.spawn().await {
                Ok(()) => return server,
                Err(StartError::PortTaken(why)) => {
                    eprintln!("{label}: port taken (attempt {attempt}), trying another: {why}");
                    last = why;
                }
                Err(StartError::Failed(why)) => panic!("{label} did not start: {why}"),
            }
        }
        panic!("{label} did not start: ports kept being taken; last: {last}")
    }

    /// The command line for this process, its config file written to the
    /// temp dir where one is needed (a sentinel rewrites its own).
    fn command(&self) -> Command {
        let d = self.dir.path();
        let mut cmd = Command::new(binary(REDIS_SERVER));
        let mut args: Vec<String> = Vec::new();
        if let Role::Sentinel {
            master_name,
            master_port,
        } = &self.role
        {
            let conf = format!(
                "port {port}\n\
                 bind 127.0.0.1\n\
                 daemonize no\n\
                 dir {dir}\n\
                 sentinel monitor {master_name} 127.0.0.1 {master_port} 1\n\
                 sentinel down-after-milliseconds {master_name} 1000\n\
                 sentinel failover-timeout {master_name} 5000\n\
                 sentinel parallel-syncs {master_name} 1\n{auth}",
                port = self.port,
                dir = d.display(),
                auth = self
                    .password
                    .as_ref()
                    .map(|p| format!("sentinel auth-pass {master_name} {p}\n"))
                    .unwrap_or_default(),
            );
            let path = d.join("sentinel.conf");
            // a sentinel started again keeps what it learnt (the new master)
            if !path.exists() {
                self.dir.write("sentinel.conf", &conf);
            }
            cmd.arg(path).arg("--sentinel");
            return cmd;
        }
        let port = self.port.to_string();
        args.extend(
            [
                "--port",
                &port,
                "--bind",
                "127.0.0.1",
                "--daemonize",
                "no",
                "--save",
                "",
                "--appendonly",
                "no",
                "--protected-mode",
                "no",
                "--dir",
            ]
            .map(str::to_owned),
        );
        args.push(d.display().to_string());
        if let Some(pw) = &self.password {
            args.extend(["--requirepass".to_owned(), pw.clone()]);
            args.extend(["--masterauth".to_owned(), pw.clone()]);
        }
        match &self.role {
            Role::Replica { master_port } => {
                args.extend([
                    "--replicaof".to_owned(),
                    "127.0.0.1".to_owned(),
                    master_port.to_string(),
                ]);
            }
            Role::ClusterNode => {
                let bus = self.bus_port.unwrap_or_default().to_string();
                args.extend(
                    [
                        "--cluster-enabled",
                        "yes",
                        "--cluster-config-file",
                        "nodes.conf",
                        "--cluster-node-timeout",
                        "2000",
                        "--cluster-port",
                        &bus,
                    ]
                    .map(str::to_owned),
                );
            }
            Role::Standalone | Role::Sentinel { .. } => {}
        }
        cmd.args(args);
        cmd
    }

    /// Spawns the process and waits until it answers `PING`.
    async fn spawn(&mut self) -> Result<(), StartError> {
        let file = |name: &str| {
            let p = self.dir.path().join(name);
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&p)
                .map_err(|e| format!("create {}: {e}", p.display()))
                .unwrap()
        };
        let mut cmd = self.command();
        cmd.stdin(Stdio::null())
            .stdout(file("stdout.log"))
            .stderr(file("stderr.log"))
            .current_dir(self.dir.path());
        let child = cmd
            .spawn()
            .map_err(|e| StartError::Failed(format!("spawn redis-server: {e}")))?;
        self.child = Some(child);
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Some(Ok(Some(status))) = self.child.as_mut().map(Child::try_wait) {
                self.child = None;
                let logs = self.logs();
                let msg = format!("exited with {status} before answering PING:\n{logs}");
                return Err(if logs.contains("in use") {
                    StartError::PortTaken(msg)
                } else {
                    StartError::Failed(msg)
                });
            }
            if let Ok(reply) = self.cmd(&["PING"]).await
                && reply == Reply::Simple("PONG".into())
            {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(StartError::Failed(format!(
                    "not answering PING on 127.0.0.1:{} after {START_TIMEOUT:?}:\n{}",
                    self.port,
                    self.logs()
                )));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// `redis://127.0.0.1:PORT` (no password in it: see [`Self::password`]).
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn password(&self) -> Option<&str> {
        self.password.as_deref()
    }

    /// Whether the process is running (not stopped).
    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }

    /// A new connection, authenticated when the server has a password.
    pub async fn connect(&self) -> io::Result<Resp> {
        Resp::connect(self.port, self.password.as_deref()).await
    }

    /// One command on a new connection.
    pub async fn cmd(&self, args: &[&str]) -> io::Result<Reply> {
        self.connect().await?.cmd(args).await
    }

    /// Kills the process (SIGKILL: a crash, not a clean shutdown) and reaps
    /// it; the port is free again when this returns.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ignored = child.kill();
            let _reaped = child.wait();
        }
    }

    /// Starts the process again on the same port, empty (nothing was saved).
    /// Panics if the port was taken meanwhile.
    pub async fn restart(&mut self) {
        self.stop();
        let _ignored = std::fs::remove_file(self.dir.path().join("dump.rdb"));
        self.start_again().await;
    }

    /// `SAVE`s, kills and starts again on the same port with the same data.
    pub async fn restart_keeping_data(&mut self) {
        let saved = self.cmd(&["SAVE"]).await.unwrap();
        assert_eq!(saved, Reply::Simple("OK".into()), "SAVE before restart");
        self.stop();
        self.start_again().await;
    }

    /// Starts a stopped process again on the same port.
    pub async fn start_again(&mut self) {
        assert!(self.child.is_none(), "start_again: still running");
        // a port can linger a moment after the kill; the same port is the
        // point here, so retry it rather than move
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            match self.spawn().await {
                Ok(()) => return,
                Err(StartError::PortTaken(why)) if Instant::now() < deadline => {
                    eprintln!(
                        "redis restart on port {}: taken, retrying: {why}",
                        self.port
                    );
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(StartError::PortTaken(why) | StartError::Failed(why)) => {
                    panic!("redis did not restart on port {}: {why}", self.port)
                }
            }
        }
    }

    /// Every key (`SCAN` to the end), on this server only.
    pub async fn keys(&self) -> Vec<Vec<u8>> {
        let mut conn = self.connect().await.unwrap();
        let mut cursor = "0".to_owned();
        let mut keys = Vec::new();
        loop {
            let reply = conn
                .cmd(&["SCAN", &cursor, "COUNT", "1000"])
                .await
                .unwrap()
                .items();
            cursor = reply[0].text();
            keys.extend(reply[1].items().iter().map(Reply::bytes));
            if cursor == "0" {
                return keys;
            }
        }
    }

    /// What `redis-cli --scan` lists (keys as text, one per line), through
    /// the real client, so a test sees what an operator's dump shows.
    pub async fn cli_scan(&self) -> Vec<String> {
        let out = self.cli(&["--scan"]).await;
        out.lines().map(str::to_owned).collect()
    }

    /// Runs `redis-cli -p PORT args...`; panics on a non-zero exit.
    pub async fn cli(&self, args: &[&str]) -> String {
        let mut cmd = Command::new(binary(REDIS_CLI));
        cmd.arg("-h")
            .arg("127.0.0.1")
            .arg("-p")
            .arg(self.port.to_string());
        if let Some(pw) = &self.password {
            cmd.env("REDISCLI_AUTH", pw);
        }
        cmd.args(args);
        run(cmd).await
    }

    /// Everything the process logged so far, for assertion messages.
    pub fn logs(&self) -> String {
        ["stdout.log", "stderr.log"]
            .iter()
            .map(|name| {
                let p = self.dir.path().join(name);
                let text = std::fs::read_to_string(&p).unwrap_or_default();
                format!("--- {} ---\n{text}", p.display())
            })
            .collect::<Vec<_>>()
            .join("\n")
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Runs `cmd` off the async threads; its stdout, or a panic with its output.
async fn run(mut cmd: Command) -> String {
    let shown = format!("{cmd:?}");
    let out = tokio::task::spawn_blocking(move || cmd.stdin(Stdio::null()).output())
        .await
        .unwrap()
        .map_err(|e| format!("{shown}: {e}"))
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{shown} failed with {}:\n{stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

// === Sentinel ===

/// A master, one replica and one sentinel (quorum 1, down after 1 s), so a
/// failover completes in a few seconds.
pub struct RedisSentinel {
    master: RedisServer,
    replica: RedisServer,
    sentinel: RedisServer,
    master_name: String,
}

impl RedisSentinel {
    pub const MASTER_NAME: &'static str = "gatehouse-test";

    /// Starts all three and waits until the sentinel knows the replica and
    /// the replica is in sync, so a failover can happen.
    pub async fn start() -> Self {
        let master = RedisServer::launch(Role::Standalone, None).await;
        let replica = RedisServer::launch(
            Role::Replica {
                master_port: master.port,
            },
            None,
        )
        .await;
        let master_name = Self::MASTER_NAME.to_owned();
        let sentinel = RedisServer::launch(
            Role::Sentinel {
                master_name: master_name.clone(),
                master_port: master.port,
            },
            None,
        )
        .await;
        let set = Self {
            master,
            replica,
            sentinel,
            master_name,
        };
        poll(
            "replica in sync with the master",
            SETTLE_TIMEOUT,
            || async {
                let info = set.replica.cmd(&["INFO", "replication"]).await;
                let info = info.map_err(|e| e.to_string())?.text();
                match info_field(&info, "master_link_status").as_deref() {
                    Some("up") => Ok(()),
                    _ => Err(info),
                }
            },
        )
        .await;
        poll("sentinel knows the replica", SETTLE_TIMEOUT, || async {
            let reply = set
                .sentinel
                .cmd(&["SENTINEL", "REPLICAS", &set.master_name])
                .await
                .map_err(|e| e.to_string())?;
            let known = match &reply {
                Reply::Array(Some(replicas)) => replicas.iter().any(|r| {
                    let fields = r.items();
                    let get = |name: &str| {
                        fields
                            .chunks(2)
                            .find(|kv| kv[0].text() == name)
                            .map(|kv| kv[1].text())
                    };
                    get("port") == Some(set.replica.port.to_string())
                        && get("flags").as_deref() == Some("slave")
                        && get("master-link-status").as_deref() == Some("ok")
                }),
                _ => false,
            };
            if known {
                Ok(())
            } else {
                Err(format!("{reply:?}"))
            }
        })
        .await;
        set
    }

    /// `redis://127.0.0.1:PORT` of the sentinel.
    pub fn sentinel_url(&self) -> String {
        self.sentinel.url()
    }

    pub fn master_name(&self) -> &str {
        &self.master_name
    }

    pub fn master(&self) -> &RedisServer {
        &self.master
    }

    pub fn replica(&self) -> &RedisServer {
        &self.replica
    }

    pub fn sentinel(&self) -> &RedisServer {
        &self.sentinel
    }

    /// The master's port as the sentinel names it now.
    pub async fn current_master_port(&self) -> io::Result<u16> {
        let reply = self
            .sentinel
            .cmd(&["SENTINEL", "GET-MASTER-ADDR-BY-NAME", &self.master_name])
            .await?;
        let items = reply.items();
        items
            .get(1)
            .and_then(|p| p.text().parse().ok())
            .ok_or_else(|| io::Error::other(format!("no master address: {reply:?}")))
    }

    /// Kills the master (a crash).
    pub fn kill_master(&mut self) {
        self.master.stop();
    }

    /// Waits until the sentinel names the replica as the master and the
    /// replica says it is one; panics after 30 s. Returns how long it took.
    pub async fn wait_for_promotion(&self) -> Duration {
        let started = Instant::now();
        poll("sentinel promotes the replica", SETTLE_TIMEOUT, || async {
            let port = self
                .current_master_port()
                .await
                .map_err(|e| e.to_string())?;
            let info = self
                .replica
                .cmd(&["INFO", "replication"])
                .await
                .map_err(|e| e.to_string())?
                .text();
            let role = info_field(&info, "role");
            if port == self.replica.port && role.as_deref() == Some("master") {
                Ok(())
            } else {
                Err(format!(
                    "sentinel names port {port} (replica is {}), replica role {role:?}",
                    self.replica.port
                ))
            }
        })
        .await;
        started.elapsed()
    }

    /// Every log, for assertion messages.
    pub fn logs(&self) -> String {
        format!(
            "=== master ===\n{}\n=== replica ===\n{}\n=== sentinel ===\n{}",
            self.master.logs(),
            self.replica.logs(),
            self.sentinel.logs()
        )
    }
}

// === Cluster ===

/// Three masters with `cluster-enabled yes`, joined by `redis-cli --cluster
/// create ... --cluster-replicas 0`, every slot served.
pub struct RedisCluster {
    nodes: Vec<RedisServer>,
}

impl RedisCluster {
    /// Starts three nodes, creates the cluster and waits for
    /// `cluster_state:ok` on every node.
    pub async fn start() -> Self {
        let mut nodes = Vec::new();
        for _ in 0..3 {
            nodes.push(RedisServer::launch(Role::ClusterNode, None).await);
        }
        let mut cmd = Command::new(binary(REDIS_CLI));
        cmd.arg("--cluster").arg("create");
        for n in &nodes {
            cmd.arg(format!("127.0.0.1:{}", n.port));
        }
        cmd.args(["--cluster-replicas", "0", "--cluster-yes"]);
        let created = run(cmd).await;
        let cluster = Self { nodes };
        for node in &cluster.nodes {
            poll("cluster_state:ok", SETTLE_TIMEOUT, || async {
                let info = node.cmd(&["CLUSTER", "INFO"]).await;
                let info = info.map_err(|e| e.to_string())?.text();
                let ok = info_field(&info, "cluster_state").as_deref() == Some("ok")
                    && info_field(&info, "cluster_slots_ok").as_deref() == Some("16384")
                    && info_field(&info, "cluster_known_nodes").as_deref() == Some("3");
                if ok {
                    Ok(())
                } else {
                    Err(format!("{info}\nredis-cli said:\n{created}"))
                }
            })
            .await;
        }
        cluster
    }

    /// `redis://127.0.0.1:PORT` of every node.
    pub fn urls(&self) -> Vec<String> {
        self.nodes.iter().map(RedisServer::url).collect()
    }

    pub fn nodes(&self) -> &[RedisServer] {
        &self.nodes
    }

    /// Runs one command on the node that serves its key, following `MOVED`
    /// (as a cluster client does) from the first node.
    pub async fn cmd(&self, args: &[&str]) -> io::Result<Reply> {
        let mut port = self.nodes[0].port;
        for _hop in 0..4 {
            let reply = Resp::connect(port, None).await?.cmd(args).await?;
            match &reply {
                Reply::Error(e) if e.starts_with("MOVED ") => {
                    port = e
                        .rsplit(':')
                        .next()
                        .and_then(|p| p.parse().ok())
                        .ok_or_else(|| io::Error::other(format!("bad MOVED: {e}")))?;
                }
                _ => return Ok(reply),
            }
        }
        Err(io::Error::other("too many MOVED redirects"))
    }

    /// Every key on every node.
    pub async fn keys(&self) -> Vec<Vec<u8>> {
        let mut all = Vec::new();
        for node in &self.nodes {
            all.extend(node.keys().await);
        }
        all
    }
}
