//! A TCP proxy standing in for the load balancer in front of the Herald
//! nodes: each new connection goes to the next node in turn, skipping nodes
//! whose port refuses connections (killed, or not listening yet). A paused
//! node still accepts (the kernel completes the handshake), exactly as it
//! would behind a real balancer; clients notice it by its silence.
//!
//! A request carrying an `x-chaos-conn: LABEL` header has the node it was
//! sent to recorded under that label ([`Routes`]), so reports can name the
//! node behind each stream.

use parking_lot::Mutex;
use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// Which node (index into the backends) each labelled request went to.
pub type Routes = Arc<Mutex<HashMap<String, usize>>>;

/// The header that labels a request for [`Routes`].
pub const LABEL: &str = "x-chaos-conn";

/// Starts the proxy on an ephemeral port in front of `backends` (ports on
/// 127.0.0.1); returns its port and the routes of labelled requests. It
/// runs until the runtime ends.
pub async fn start(backends: Vec<u16>) -> (u16, Routes) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind the proxy");
    let port = listener.local_addr().expect("proxy address").port();
    let next = Arc::new(AtomicUsize::new(0));
    let routes = Routes::default();
    let recorded = routes.clone();
    tokio::spawn(async move {
        loop {
            let client = match listener.accept().await {
                Ok((client, _)) => client,
                Err(_) => {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
            };
            let first = next.fetch_add(1, Ordering::Relaxed);
            let backends = backends.clone();
            tokio::spawn(forward(client, first, backends, recorded.clone()));
        }
    });
    (port, routes)
}

/// The value of the [`LABEL`] header in the start of a request, if any.
fn label_of(head: &[u8]) -> Option<String> {
    let head = String::from_utf8_lossy(head);
    head.split("\r\n").find_map(|line| {
        let (name, value) = line.split_once(':')?;
        name.eq_ignore_ascii_case(LABEL).then(|| value.trim().to_string())
    })
}

/// Connects `client` to the first backend, from `first` on, that accepts.
async fn forward(mut client: TcpStream, first: usize, backends: Vec<u16>, routes: Routes) {
    // The start of the request (its head, in practice), read before
    // choosing a node so its label can be recorded with the choice.
    let mut head = vec![0u8; 16 * 1024];
    let n = match tokio::time::timeout(Duration::from_secs(5), client.read(&mut head)).await {
        Ok(Ok(n)) if n > 0 => n,
        _ => return,
    };
    head.truncate(n);
    let label = label_of(&head);
    for k in 0..backends.len() {
        let node = (first + k) % backends.len();
        let port = backends[node];
        let Ok(Ok(mut upstream)) =
            tokio::time::timeout(Duration::from_secs(1), TcpStream::connect(("127.0.0.1", port))).await
        else {
            continue;
        };
        if let Some(label) = &label {
            routes.lock().insert(label.clone(), node);
        }
        let _ = client.set_nodelay(true);
        let _ = upstream.set_nodelay(true);
        if upstream.write_all(&head).await.is_err() {
            return;
        }
        let _ = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
        return;
    }
    // No node accepts: dropping the client refuses it like a dead balancer.
}
