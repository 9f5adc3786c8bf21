//! A TCP proxy in front of the local AWS server, for the fault suite: it passes connections
//! through, or makes the server unreachable (new connections are closed at once and the ones
//! in flight are cut, as a stopped server would), or answers every DynamoDB request as a
//! throttled table does. Everything it passes is the real server's work.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// What the proxy does with a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProxyMode {
    Pass,
    /// The server is down: connections are closed, and the open ones cut.
    Down,
    /// DynamoDB requests are answered `ProvisionedThroughputExceededException`, as many as
    /// [`FaultProxy::throttle_next`] says (then they pass again).
    Throttle,
}

/// The proxy, listening on 127.0.0.1 at `endpoint()`.
pub struct FaultProxy {
    endpoint: String,
    mode: watch::Sender<ProxyMode>,
    throttles_left: Arc<AtomicU64>,
    throttled: Arc<AtomicU64>,
}

const THROTTLED_RESPONSE_BODY: &str = r#"{"__type":"com.amazonaws.dynamodb.v20120810#ProvisionedThroughputExceededException","message":"The level of configured provisioned throughput for the table was exceeded."}"#;

impl FaultProxy {
    /// A proxy in front of `target` (host:port), passing everything.
    pub async fn start(target: &str) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("a free port");
        let endpoint = format!("http://{}", listener.local_addr().expect("bound"));
        let (mode, watching) = watch::channel(ProxyMode::Pass);
        let throttles_left = Arc::new(AtomicU64::new(0));
        let throttled = Arc::new(AtomicU64::new(0));
        let target = target.to_owned();
        let (left, count) = (throttles_left.clone(), throttled.clone());
        tokio::spawn(async move {
            loop {
                let Ok((client, _)) = listener.accept().await else {
                    continue;
                };
                let current = *watching.borrow();
                match current {
                    ProxyMode::Down => drop(client),
                    ProxyMode::Throttle => {
                        let (left, count) = (left.clone(), count.clone());
                        let target = target.clone();
                        let watching = watching.clone();
                        tokio::spawn(throttle(client, target, left, count, watching));
                    }
                    ProxyMode::Pass => {
                        tokio::spawn(pass(client, target.clone(), watching.clone()));
                    }
                }
            }
        });
        Self {
            endpoint,
            mode,
            throttles_left,
            throttled,
        }
    }

    /// Where clients should send their requests.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    pub fn set(&self, mode: ProxyMode) {
        self.mode.send_replace(mode);
    }

    /// Throttles the next `n` DynamoDB requests, then passes again.
    pub fn throttle_next(&self, n: u64) {
        self.throttles_left.store(n, Ordering::SeqCst);
        self.set(ProxyMode::Throttle);
    }

    /// DynamoDB requests answered as throttled so far.
    pub fn throttled(&self) -> u64 {
        self.throttled.load(Ordering::SeqCst)
    }
}

/// Pipes the connection to the server until either side closes it or the server goes down.
async fn pass(mut client: TcpStream, target: String, mut watching: watch::Receiver<ProxyMode>) {
    let Ok(mut server) = TcpStream::connect(&target).await else {
        return;
    };
    tokio::select! {
        _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
        _ = watching.wait_for(|mode| *mode == ProxyMode::Down) => {}
    }
}

/// Answers each DynamoDB request on the connection as throttled while throttles are left;
/// the first request past them (or one for another service) is passed to the server, with
/// the rest of the connection.
async fn throttle(
    mut client: TcpStream,
    target: String,
    left: Arc<AtomicU64>,
    count: Arc<AtomicU64>,
    watching: watch::Receiver<ProxyMode>,
) {
    loop {
        let Some(request) = read_request(&mut client).await else {
            return;
        };
        let dynamodb = String::from_utf8_lossy(&request)
            .to_ascii_lowercase()
            .contains("x-amz-target: dynamodb_20120810.");
        let take = dynamodb
            && left
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                .is_ok();
        if !take {
            // Passed on from here: this request first, then the connection.
            let Ok(mut server) = TcpStream::connect(&target).await else {
                return;
            };
            if server.write_all(&request).await.is_err() {
                return;
            }
            let mut watching = watching.clone();
            tokio::select! {
                _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
                _ = watching.wait_for(|mode| *mode == ProxyMode::Down) => {}
            }
            return;
        }
        count.fetch_add(1, Ordering::SeqCst);
        let response = format!(
            "HTTP/1.1 400 Bad Request\r\ncontent-type: application/x-amz-json-1.0\r\nx-amzn-requestid: throttled\r\ncontent-length: {}\r\n\r\n{}",
            THROTTLED_RESPONSE_BODY.len(),
            THROTTLED_RESPONSE_BODY
        );
        if client.write_all(response.as_bytes()).await.is_err() {
            return;
        }
    }
}

/// One whole HTTP/1.1 request (head and a `content-length` body), or `None` at its end.
async fn read_request(client: &mut TcpStream) -> Option<Vec<u8>> {
    let mut request = Vec::new();
    let mut buffer = [0u8; 8192];
    let head_end = loop {
        if let Some(end) = request.windows(4).position(|w| w == b"\r\n\r\n") {
            break end + 4;
        }
        let read = client.read(&mut buffer).await.ok()?;
        if read == 0 {
            return None;
        }
        request.extend_from_slice(&buffer[..read]);
    };
    let head = String::from_utf8_lossy(&request[..head_end]).to_ascii_lowercase();
    let length: usize = head
        .lines()
        .find_map(|line| line.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0);
    while request.len() < head_end + length {
        let read = client.read(&mut buffer).await.ok()?;
        if read == 0 {
            return None;
        }
        request.extend_from_slice(&buffer[..read]);
    }
    Some(request)
}
