//! The byte tunnel behind a WebSocket upgrade, and its clean close at
//! shutdown.
//!
//! Owns: copying bytes both ways between the upgraded client and upstream
//! connections; knowing where each WebSocket frame starts and ends in each
//! direction (from the frame headers as they pass: payloads are never
//! buffered nor read); and, when gatehouse shuts down ([`Tunnels::close_all`]),
//! ending each tunnel with a Close frame, code 1001 (going away): unmasked to
//! the client, masked to the upstream (as a client must mask), each sent at a
//! frame boundary of its direction, never inside a frame in flight.
//! Must not: look at payloads, or see sessions (a session's end arrives as a
//! `watch` from the caller and drops the tunnel).
//!
//! Invariants: a frame whose end does not arrive within [`BOUNDARY_WAIT`]
//! after the close began is cut (the connection is dropped, no frame is
//! injected); the peers' Close replies are waited for at most
//! [`CLOSE_WAIT`]; then both connections are shut.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _};
use tokio::sync::watch;
use tokio::time::Instant;

/// How long a frame in flight may take to end once the close has begun.
pub const BOUNDARY_WAIT: Duration = Duration::from_secs(1);
/// How long the peers get to answer our Close frames with theirs.
pub const CLOSE_WAIT: Duration = Duration::from_secs(1);
/// The close code sent at shutdown: 1001, going away.
pub const GOING_AWAY: u16 = 1001;
/// Bytes read at a time in each direction.
const CHUNK: usize = 16 * 1024;
const OPCODE_CLOSE: u8 = 0x8;

/// Every open tunnel, and the switch that closes them all (at shutdown).
/// Shared across reloads: a tunnel opened on an old state still closes.
#[derive(Debug)]
pub struct Tunnels {
    closing: watch::Sender<bool>,
    open: AtomicUsize,
}

impl Default for Tunnels {
    fn default() -> Self {
        Self {
            closing: watch::channel(false).0,
            open: AtomicUsize::new(0),
        }
    }
}

impl Tunnels {
    /// Tunnels open now.
    pub fn open(&self) -> usize {
        self.open.load(Ordering::Acquire)
    }

    /// Closes every tunnel, open now or opened later, with a Close frame.
    pub fn close_all(&self) {
        self.closing.send_replace(true);
    }

    /// Waits until no tunnel is open, or `timeout`; true when none is.
    pub async fn closed(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        while self.open() > 0 {
            if Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        true
    }

    fn enter(self: &Arc<Self>) -> OpenTunnel {
        self.open.fetch_add(1, Ordering::AcqRel);
        OpenTunnel(Arc::clone(self))
    }
}

/// One open tunnel, counted until dropped.
struct OpenTunnel(Arc<Tunnels>);

impl Drop for OpenTunnel {
    fn drop(&mut self) {
        self.0.open.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Copies bytes both ways between an upgraded client and upstream until
/// both sides have closed, either fails, `end` fires (turns `true` or loses
/// its sender: the session ended, the connections are dropped), or
/// `tunnels` closes them all (a Close frame 1001 each way, see the module).
pub async fn splice(
    client: hyper::upgrade::OnUpgrade,
    upstream: hyper::upgrade::OnUpgrade,
    end: Option<watch::Receiver<bool>>,
    tunnels: Arc<Tunnels>,
) {
    let (client, upstream) = match tokio::try_join!(client, upstream) {
        Ok(pair) => pair,
        Err(e) => {
            tracing::debug!(error = %e, "upgrade failed");
            return;
        }
    };
    let _open = tunnels.enter();
    let closing = tunnels.closing.subscribe();
    let ended = async move {
        match end {
            // an error means the sender is gone: end too (fail closed)
            Some(mut end) => drop(end.wait_for(|ended| *ended).await),
            None => std::future::pending().await,
        }
    };
    tunnel(TokioIo::new(client), TokioIo::new(upstream), ended, closing).await;
}

/// [`splice`] on any two connections (the tests drive it over duplex pipes).
async fn tunnel<C, U>(
    client: C,
    upstream: U,
    ended: impl Future<Output = ()>,
    closing: watch::Receiver<bool>,
) where
    C: AsyncRead + AsyncWrite + Unpin,
    U: AsyncRead + AsyncWrite + Unpin,
{
    let (client_rd, client_wr) = tokio::io::split(client);
    let (upstream_rd, upstream_wr) = tokio::io::split(upstream);
    let up = pump(client_rd, upstream_wr, closing.clone());
    let down = pump(upstream_rd, client_wr, closing);
    tokio::pin!(up, down, ended);
    let (mut up_done, mut down_done) = (None, None);
    while up_done.is_none() || down_done.is_none() {
        tokio::select! {
            p = &mut up, if up_done.is_none() => up_done = Some(p),
            p = &mut down, if down_done.is_none() => down_done = Some(p),
            () = &mut ended => {
                tracing::debug!("upgraded connection closed: its session ended");
                return;
            }
        }
        let broken = |end: Option<End>| matches!(end, Some(End::Failed | End::Cut));
        let failed =
            broken(up_done.as_ref().map(|p| p.end)) || broken(down_done.as_ref().map(|p| p.end));
        if failed {
            tracing::debug!("upgraded connection closed: a side failed or a frame did not end");
            return;
        }
    }
    let (Some(mut up), Some(mut down)) = (up_done, down_done) else {
        return;
    };
    // both directions stopped at a frame boundary (or their source ended):
    // a Close frame each way, then a short wait for the peers' own
    let deadline = Instant::now() + CLOSE_WAIT;
    let sent_up = up.end == End::Stopped && send_close(&mut up.dst, true).await;
    let sent_down = down.end == End::Stopped && send_close(&mut down.dst, false).await;
    if sent_up || sent_down {
        tracing::debug!("upgraded connection closing: gatehouse is shutting down");
        // the upstream answers on the downward source, the client upward
        let _ = tokio::join!(
            down.await_close(sent_up, deadline),
            up.await_close(sent_down, deadline),
        );
    }
    let _ = tokio::join!(up.dst.shutdown(), down.dst.shutdown());
}

/// How one direction stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum End {
    /// Its source closed; its destination was shut for writing.
    Eof,
    /// The close began and the direction is at a frame boundary.
    Stopped,
    /// The close began and the frame in flight did not end in time.
    Cut,
    /// Reading or writing failed.
    Failed,
}

/// One direction, once it stopped.
struct Pumped<R, W> {
    src: R,
    dst: W,
    frames: FrameTracker,
    end: End,
}

impl<R: AsyncRead + Unpin, W> Pumped<R, W> {
    /// When `wanted`: reads (and drops) from the source until a Close frame
    /// arrives, the source ends, or `deadline`.
    async fn await_close(&mut self, wanted: bool, deadline: Instant) {
        if !wanted || self.end != End::Stopped {
            return;
        }
        let before = self.frames.closes;
        let mut buf = vec![0u8; CHUNK];
        while self.frames.closes == before {
            match tokio::time::timeout_at(deadline, self.src.read(&mut buf)).await {
                Ok(Ok(n)) if n > 0 => {
                    self.frames.advance(buf.get(..n).unwrap_or_default(), false);
                }
                _ => return,
            }
        }
    }
}

/// Copies `src` to `dst` until `src` ends, a read or write fails, or
/// `closing` turns true and the direction reaches a frame boundary.
async fn pump<R, W>(mut src: R, mut dst: W, mut closing: watch::Receiver<bool>) -> Pumped<R, W>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut frames = FrameTracker::default();
    let mut buf = vec![0u8; CHUNK];
    // set once the close has begun: the frame in flight must end by then
    let mut deadline: Option<Instant> = None;
    let end = loop {
        if deadline.is_none() && *closing.borrow() {
            deadline = Some(Instant::now() + BOUNDARY_WAIT);
        }
        if deadline.is_some() && frames.at_boundary() {
            break End::Stopped;
        }
        let until = deadline;
        let read = async {
            match until {
                Some(d) => tokio::time::timeout_at(d, src.read(&mut buf)).await.ok(),
                None => Some(src.read(&mut buf).await),
            }
        };
        let n = tokio::select! {
            r = read => match r {
                None => break End::Cut,
                Some(Ok(0)) => {
                    let _ = dst.shutdown().await;
                    break End::Eof;
                }
                Some(Ok(n)) => n,
                Some(Err(_)) => break End::Failed,
            },
            // a sender gone (cannot happen while the tunnel holds it) closes too
            _ = closing.changed(), if deadline.is_none() => {
                deadline = Some(Instant::now() + BOUNDARY_WAIT);
                continue;
            }
        };
        let read = buf.get(..n).unwrap_or_default();
        let upto = frames.advance(read, deadline.is_some());
        let passed = dst.write_all(read.get(..upto).unwrap_or_default()).await;
        if passed.is_err() || dst.flush().await.is_err() {
            break End::Failed;
        }
        if upto < n {
            // closing, at a boundary: what follows is not passed on, but
            // still tracked, to find the peer's Close frame after it
            frames.advance(read.get(upto..).unwrap_or_default(), false);
            break End::Stopped;
        }
    };
    Pumped {
        src,
        dst,
        frames,
        end,
    }
}

/// Writes a Close frame with code 1001; `masked` for the upstream (frames
/// from a client are masked). False when it could not be written.
async fn send_close<W: AsyncWrite + Unpin>(dst: &mut W, masked: bool) -> bool {
    let frame = close_frame(masked.then(mask_key));
    dst.write_all(&frame).await.is_ok() && dst.flush().await.is_ok()
}

fn mask_key() -> [u8; 4] {
    use ring::rand::SecureRandom as _;
    let mut key = [0u8; 4];
    // a fixed key still makes a valid frame if the RNG fails
    let _ = ring::rand::SystemRandom::new().fill(&mut key);
    key
}

/// A final Close frame with code [`GOING_AWAY`] and no reason, masked with
/// `mask` when given.
fn close_frame(mask: Option<[u8; 4]>) -> Vec<u8> {
    let code = GOING_AWAY.to_be_bytes();
    match mask {
        None => vec![0x80 | OPCODE_CLOSE, 2, code[0], code[1]],
        Some(k) => vec![
            0x80 | OPCODE_CLOSE,
            0x80 | 2,
            k[0],
            k[1],
            k[2],
            k[3],
            code[0] ^ k[0],
            code[1] ^ k[1],
        ],
    }
}

/// Where one direction is in its stream of frames, from the headers alone.
#[derive(Debug, Default)]
struct FrameTracker {
    /// The header read so far (at most 2 + 8 + 4 bytes).
    head: [u8; 14],
    have: usize,
    /// Payload bytes of the current frame still to pass.
    left: u64,
    /// Close frames seen (their header complete).
    closes: u32,
}

impl FrameTracker {
    /// Between two frames.
    fn at_boundary(&self) -> bool {
        self.have == 0 && self.left == 0
    }

    /// Follows `bytes`; returns how many of them pass. With `stop_at_boundary`,
    /// that is up to the first frame boundary (0 when already at one);
    /// otherwise all.
    fn advance(&mut self, bytes: &[u8], stop_at_boundary: bool) -> usize {
        if stop_at_boundary && self.at_boundary() {
            return 0;
        }
        let mut i = 0;
        while i < bytes.len() {
            if self.left > 0 {
                let rest = bytes.len() - i;
                let take = usize::try_from(self.left).map_or(rest, |left| left.min(rest));
                self.left -= take as u64;
                i += take;
                if stop_at_boundary && self.left == 0 {
                    return i;
                }
                continue;
            }
            let Some(slot) = self.head.get_mut(self.have) else {
                // cannot happen: a header is complete at 14 bytes at most
                self.have = 0;
                continue;
            };
            *slot = bytes.get(i).copied().unwrap_or_default();
            self.have += 1;
            i += 1;
            if self.have >= 2 && self.have == header_len(self.head[1]) {
                self.left = payload_len(&self.head);
                self.have = 0;
                if self.head[0] & 0x0f == OPCODE_CLOSE {
                    self.closes = self.closes.saturating_add(1);
                }
                if stop_at_boundary && self.left == 0 {
                    return i;
                }
            }
        }
        i
    }
}

/// A frame header's length from its second byte: 2, the extended length
/// (2 or 8), the mask key (4).
fn header_len(second: u8) -> usize {
    let ext = match second & 0x7f {
        126 => 2,
        127 => 8,
        _ => 0,
    };
    let mask = if second & 0x80 != 0 { 4 } else { 0 };
    2 + ext + mask
}

fn payload_len(head: &[u8; 14]) -> u64 {
    match head[1] & 0x7f {
        126 => u64::from(u16::from_be_bytes([head[2], head[3]])),
        127 => u64::from_be_bytes([
            head[2], head[3], head[4], head[5], head[6], head[7], head[8], head[9],
        ]),
        n => u64::from(n),
    }
}

#[cfg(test)]
mod tests;
