use super::*;

/// A frame from `first` byte (FIN, opcode) with `payload`, masked with
/// `mask` when given (the payload bytes are not actually masked: the
/// tracker never reads them).
fn frame(first: u8, payload: &[u8], mask: Option<[u8; 4]>) -> Vec<u8> {
    let m = if mask.is_some() { 0x80 } else { 0 };
    let mut f = vec![first];
    match payload.len() {
        n if n < 126 => f.push(m | u8::try_from(n).unwrap()),
        n if n <= 0xffff => {
            f.push(m | 126);
            f.extend_from_slice(&u16::try_from(n).unwrap().to_be_bytes());
        }
        n => {
            f.push(m | 127);
            f.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    if let Some(k) = mask {
        f.extend_from_slice(&k);
    }
    f.extend_from_slice(payload);
    f
}

#[test]
fn the_tracker_finds_frame_boundaries_for_every_length_form_and_mask() {
    for len in [0usize, 1, 125, 126, 127, 1000, 65_535, 65_536, 70_000] {
        for mask in [None, Some([1, 2, 3, 4])] {
            let f = frame(0x82, &vec![0xAA; len], mask);
            // fed whole, then a byte at a time: at a boundary only at the end
            let mut t = FrameTracker::default();
            assert_eq!(t.advance(&f, false), f.len());
            assert!(t.at_boundary(), "len {len} mask {mask:?}");
            let mut t = FrameTracker::default();
            for (i, b) in f.iter().enumerate() {
                t.advance(std::slice::from_ref(b), false);
                assert_eq!(t.at_boundary(), i == f.len() - 1, "len {len} byte {i}");
            }
        }
    }
}

#[test]
fn stopping_at_a_boundary_passes_exactly_the_rest_of_the_frame_in_flight() {
    let first = frame(0x82, &[7; 300], Some([9, 9, 9, 9]));
    let second = frame(0x81, b"next", Some([1, 1, 1, 1]));
    let mut t = FrameTracker::default();
    // 10 bytes of the first frame passed before the close began
    assert_eq!(t.advance(&first[..10], false), 10);
    let mut rest = first[10..].to_vec();
    rest.extend_from_slice(&second);
    assert_eq!(t.advance(&rest, true), first.len() - 10);
    assert!(t.at_boundary());
    // already at a boundary: nothing more passes
    assert_eq!(t.advance(&second, true), 0);
}

#[test]
fn the_tracker_counts_close_frames_and_survives_hostile_bytes() {
    let mut t = FrameTracker::default();
    t.advance(&frame(0x81, b"hi", None), false);
    assert_eq!(t.closes, 0);
    t.advance(&close_frame(Some([5, 6, 7, 8])), false);
    assert_eq!(t.closes, 1);
    // a claimed length of 2^64-1 and garbage: no panic, stays mid-frame
    let mut t = FrameTracker::default();
    let mut evil = vec![0x82, 127];
    evil.extend_from_slice(&u64::MAX.to_be_bytes());
    evil.extend_from_slice(&[0xff; 4096]);
    assert_eq!(t.advance(&evil, false), evil.len());
    assert!(!t.at_boundary());
    assert_eq!(t.advance(&[0xff; 4096], true), 4096);
}

#[test]
fn close_frames_carry_code_1001_masked_only_toward_the_upstream() {
    assert_eq!(close_frame(None), [0x88, 0x02, 0x03, 0xE9]);
    let k = [0x11, 0x22, 0x33, 0x44];
    assert_eq!(
        close_frame(Some(k)),
        [0x88, 0x82, 0x11, 0x22, 0x33, 0x44, 0x03 ^ 0x11, 0xE9 ^ 0x22]
    );
}

/// Reads until `want` bytes arrived or 2 s passed.
async fn read_n<R: AsyncRead + Unpin>(r: &mut R, want: usize) -> Vec<u8> {
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    let deadline = Instant::now() + Duration::from_secs(2);
    while got.len() < want {
        match tokio::time::timeout_at(deadline, r.read(&mut buf)).await {
            Ok(Ok(n)) if n > 0 => got.extend_from_slice(&buf[..n]),
            _ => break,
        }
    }
    got
}

#[tokio::test]
async fn a_close_at_shutdown_waits_for_the_frame_in_flight_then_sends_1001_both_ways() {
    let (client, mut client_peer) = tokio::io::duplex(1 << 16);
    let (upstream, mut upstream_peer) = tokio::io::duplex(1 << 16);
    let (closing_tx, closing) = watch::channel(false);
    let task = tokio::spawn(tunnel(client, upstream, std::future::pending(), closing));

    // the upstream has sent half a frame to the client when the close begins
    let big = frame(0x82, &[0x5A; 1000], None);
    upstream_peer.write_all(&big[..500]).await.unwrap();
    assert_eq!(read_n(&mut client_peer, 500).await, big[..500]);
    closing_tx.send_replace(true);
    tokio::time::sleep(Duration::from_millis(50)).await;
    // the rest of the frame still passes, and only then the Close frame
    upstream_peer.write_all(&big[500..]).await.unwrap();
    let rest = big.len() - 500;
    let got = read_n(&mut client_peer, rest + 4).await;
    assert_eq!(&got[..rest], &big[500..]);
    assert_eq!(
        &got[rest..],
        [0x88, 0x02, 0x03, 0xE9],
        "unmasked 1001 to the client"
    );

    // the upstream gets a masked Close 1001
    let got = read_n(&mut upstream_peer, 8).await;
    assert_eq!(got[..2], [0x88, 0x82]);
    let k = &got[2..6];
    assert_eq!(
        [got[6] ^ k[0], got[7] ^ k[1]],
        [0x03, 0xE9],
        "masked 1001 upstream"
    );

    // both peers answer; the tunnel then shuts both connections
    client_peer
        .write_all(&close_frame(Some([1, 2, 3, 4])))
        .await
        .unwrap();
    upstream_peer.write_all(&close_frame(None)).await.unwrap();
    tokio::time::timeout(Duration::from_millis(500), task)
        .await
        .expect("the tunnel ends once both Close replies arrived")
        .unwrap();
    let mut rest = Vec::new();
    client_peer.read_to_end(&mut rest).await.unwrap();
    assert!(rest.is_empty(), "nothing after the Close frame: {rest:?}");
}

#[tokio::test]
async fn a_frame_that_never_ends_is_cut_without_a_close_frame_inside_it() {
    let (client, mut client_peer) = tokio::io::duplex(1 << 16);
    let (upstream, mut upstream_peer) = tokio::io::duplex(1 << 16);
    let (closing_tx, closing) = watch::channel(false);
    let task = tokio::spawn(tunnel(client, upstream, std::future::pending(), closing));
    let big = frame(0x82, &[0x5A; 1000], None);
    upstream_peer.write_all(&big[..500]).await.unwrap();
    assert_eq!(read_n(&mut client_peer, 500).await.len(), 500);
    closing_tx.send_replace(true);
    tokio::time::timeout(BOUNDARY_WAIT + Duration::from_secs(1), task)
        .await
        .expect("cut after BOUNDARY_WAIT")
        .unwrap();
    let mut rest = Vec::new();
    client_peer.read_to_end(&mut rest).await.unwrap();
    assert!(
        rest.is_empty(),
        "no bytes injected into the frame: {rest:?}"
    );
}

#[tokio::test]
async fn bytes_pass_both_ways_untouched_until_each_side_closes() {
    let (client, mut client_peer) = tokio::io::duplex(1 << 16);
    let (upstream, mut upstream_peer) = tokio::io::duplex(1 << 16);
    let (_closing_tx, closing) = watch::channel(false);
    let task = tokio::spawn(tunnel(client, upstream, std::future::pending(), closing));
    let up = frame(0x81, b"hello upstream", Some([1, 2, 3, 4]));
    client_peer.write_all(&up).await.unwrap();
    assert_eq!(read_n(&mut upstream_peer, up.len()).await, up);
    let down = frame(0x82, &[1; 70_000], None);
    let (sent, got) = tokio::join!(
        upstream_peer.write_all(&down),
        read_n(&mut client_peer, down.len())
    );
    sent.unwrap();
    assert_eq!(got, down);
    drop(client_peer);
    drop(upstream_peer);
    tokio::time::timeout(Duration::from_secs(1), task)
        .await
        .unwrap()
        .unwrap();
}
