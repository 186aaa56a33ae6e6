//! A WebSocket open at shutdown is closed cleanly (issue 12, item 4): the
//! client gets a Close frame with code 1001 (going away), not a cut
//! connection, and the upstream a (masked) Close frame of its own.

use std::time::Duration;

use futures_util::{SinkExt as _, StreamExt as _};
use http::StatusCode;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest as _;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

use crate::support::idp::{IdpOptions, MockIdp};
use crate::support::proxy::TestProxy;
use crate::support::upstream::Recorder;

#[tokio::test]
async fn a_websocket_gets_a_close_frame_1001_at_shutdown() {
    let idp = MockIdp::start(IdpOptions::auto_approving("alice")).await;
    let upstream = Recorder::start().await;
    let proxy = TestProxy::start(
        "[[routes]]\npath = \"/__ws\"\npolicy = \"public\"\n",
        &idp,
        &upstream,
    )
    .await;
    let req = format!("ws://{}/__ws", proxy.host())
        .into_client_request()
        .unwrap();
    let stream = TcpStream::connect(proxy.addr()).await.unwrap();
    let (mut ws, resp) = tokio_tungstenite::client_async(req, stream).await.unwrap();
    assert_eq!(resp.status(), StatusCode::SWITCHING_PROTOCOLS);
    ws.send(Message::text("hello")).await.unwrap();
    assert_eq!(ws.next().await.unwrap().unwrap(), Message::text("hello"));

    let shutdown = tokio::spawn(proxy.shutdown());
    let msg = tokio::time::timeout(Duration::from_secs(5), ws.next())
        .await
        .expect("no Close frame within 5 s");
    match msg {
        Some(Ok(Message::Close(Some(frame)))) => assert_eq!(frame.code, CloseCode::Away),
        other => panic!("expected a Close frame 1001, got {other:?}"),
    }
    // the client's reply completes the handshake; then the stream ends
    let end = tokio::time::timeout(Duration::from_secs(5), ws.next()).await;
    assert!(matches!(end, Ok(None | Some(Err(_)))), "{end:?}");
    tokio::time::timeout(Duration::from_secs(10), shutdown)
        .await
        .expect("the shutdown ends once the tunnel closed")
        .unwrap();
}
