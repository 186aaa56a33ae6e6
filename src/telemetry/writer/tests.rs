#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{self, Write};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tracing_subscriber::fmt::MakeWriter as _;

use super::{CAPACITY, spawn};

/// An output that keeps what it is given and counts the writes.
#[derive(Clone, Default)]
struct Recorded(Arc<Mutex<(Vec<u8>, usize)>>);

impl Write for Recorded {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let mut r = self.0.lock().unwrap();
        r.0.extend_from_slice(buf);
        r.1 += 1;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

fn line(i: usize) -> String {
    format!("{{\"msg\":\"request\",\"n\":{i}}}\n")
}

#[test]
fn every_line_is_written_whole_and_in_order_by_the_time_the_guard_is_dropped() {
    let out = Recorded::default();
    let (writer, guard) = spawn(out.clone(), CAPACITY);
    for i in 0..10_000 {
        writer.make_writer().write_all(line(i).as_bytes()).unwrap();
    }
    drop(guard);
    let (bytes, _) = out.0.lock().unwrap().clone();
    let want: String = (0..10_000).map(line).collect();
    assert_eq!(String::from_utf8(bytes).unwrap(), want);
    assert_eq!(writer.dropped(), 0);
}

#[test]
fn lines_logged_together_are_written_in_a_few_writes_not_one_each() {
    let out = Recorded::default();
    let (writer, guard) = spawn(out.clone(), CAPACITY);
    for i in 0..1_000 {
        writer.make_writer().write_all(line(i).as_bytes()).unwrap();
    }
    drop(guard);
    let writes = out.0.lock().unwrap().1;
    assert!(writes <= 10, "{writes} writes for 1,000 lines");
}

#[test]
fn a_line_alone_is_written_soon_without_waiting_for_more() {
    let out = Recorded::default();
    let (writer, _guard) = spawn(out.clone(), CAPACITY);
    writer.make_writer().write_all(b"one\n").unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    while out.0.lock().unwrap().0.is_empty() {
        assert!(Instant::now() < deadline, "a single line was never written");
        std::thread::sleep(Duration::from_millis(1));
    }
    assert_eq!(out.0.lock().unwrap().0, b"one\n");
}

/// An output that blocks until told to go on.
struct Stuck(mpsc::Receiver<()>, Recorded);

impl Write for Stuck {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let _ = self.0.recv();
        self.1.write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[test]
fn a_stuck_output_never_blocks_the_logger_lines_over_capacity_are_dropped_whole_and_counted() {
    let (go, stuck) = mpsc::channel();
    let out = Recorded::default();
    let (writer, guard) = spawn(Stuck(stuck, out.clone()), 1_000);
    // the first line is taken by the thread, which then blocks writing it
    writer.make_writer().write_all(b"first\n").unwrap();
    std::thread::sleep(Duration::from_millis(50));
    let started = Instant::now();
    // 100 lines of 50 bytes: 20 fit in 1,000 bytes, 80 do not
    let fifty = format!("{}\n", "x".repeat(49));
    for _ in 0..100 {
        writer.make_writer().write_all(fifty.as_bytes()).unwrap();
    }
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "logging waited on the output"
    );
    assert_eq!(writer.dropped(), 80);
    // let every write through; the guard's drop flushes the rest
    for _ in 0..1_000 {
        let _ = go.send(());
    }
    drop(guard);
    let (bytes, _) = out.0.lock().unwrap().clone();
    let text = String::from_utf8(bytes).unwrap();
    assert_eq!(text, format!("first\n{}", fifty.repeat(20)));
}

#[test]
fn an_output_that_never_takes_its_lines_does_not_keep_the_process_from_exiting() {
    let (_go, stuck) = mpsc::channel();
    let (writer, guard) = spawn(Stuck(stuck, Recorded::default()), CAPACITY);
    writer.make_writer().write_all(b"never written\n").unwrap();
    std::thread::sleep(Duration::from_millis(50));
    let started = Instant::now();
    drop(guard);
    let took = started.elapsed();
    assert!(
        took < Duration::from_secs(3),
        "the guard waited {took:?} on a stuck output"
    );
}
