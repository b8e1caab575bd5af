//! The resolver task: asks the container runtime over CRI for the metadata of container ids,
//! concurrently, reconnecting on its own when the socket goes away and comes back.
use std::{
    path::{Path, PathBuf},
    sync::Arc,
    time::{Duration, Instant},
};

use tokio::sync::mpsc;
use tracing::{info, warn};

use super::cri::{CriClient, CriError};
use crate::event::ContainerMeta;

/// Retries of a lookup while the runtime does not know the container yet (it is being created).
const NOT_FOUND_RETRIES: u32 = 20;
const NOT_FOUND_DELAY: Duration = Duration::from_millis(100);
/// Minimum time between two connection attempts to a socket that is down. Short next to the
/// metadata hold (1 s by default), so a lookup that waits for it still answers in time.
const RECONNECT_BACKOFF: Duration = Duration::from_millis(250);

/// Shared connection state of the resolver.
struct Conn {
    client: Option<CriClient>,
    last_attempt: Option<Instant>,
    /// Why the last connection attempt failed: shared with the lookups that waited out the
    /// backoff behind it.
    last_error: Option<CriError>,
    /// A warning was logged for the current outage.
    warned: bool,
}

/// The agent's one connection to the container runtime, shared by the resolvers of every
/// pipeline worker: one connection, one backoff, and one outage (warned about once, and said to
/// be over once, whichever worker's lookup sees it).
#[derive(Clone)]
pub(crate) struct RuntimeConn(Arc<tokio::sync::Mutex<Conn>>);

impl Default for RuntimeConn {
    fn default() -> Self {
        RuntimeConn(Arc::new(tokio::sync::Mutex::new(Conn {
            client: None,
            last_attempt: None,
            last_error: None,
            warned: false,
        })))
    }
}

/// Answers container ids sent on `requests` with CRI metadata on `results`, over `conn`. Each
/// lookup runs concurrently; the connection is made on demand and re-made after failures, at
/// most once per [`RECONNECT_BACKOFF`], so a runtime socket that goes away and comes back is
/// picked up again.
pub(crate) async fn resolver(
    socket: Option<PathBuf>,
    conn: RuntimeConn,
    mut requests: mpsc::Receiver<String>,
    results: mpsc::Sender<(String, Result<ContainerMeta, CriError>)>,
) {
    let conn = conn.0;
    while let Some(id) = requests.recv().await {
        let conn = conn.clone();
        let results = results.clone();
        let socket = socket.clone();
        tokio::spawn(async move {
            let mut attempt = 0;
            let result = loop {
                let r = lookup_once(&conn, socket.as_deref(), &id).await;
                match r {
                    Err(CriError::NotFound(_)) if attempt < NOT_FOUND_RETRIES => {
                        attempt += 1;
                        tokio::time::sleep(NOT_FOUND_DELAY).await;
                    }
                    other => break other,
                }
            };
            let _ = results.send((id, result)).await;
        });
    }
}

async fn lookup_once(
    conn: &tokio::sync::Mutex<Conn>,
    socket: Option<&Path>,
    id: &str,
) -> Result<ContainerMeta, CriError> {
    let mut c = conn.lock().await;
    if c.client.is_none()
        && let Some(at) = c.last_attempt
    {
        // Within the backoff after a failed attempt: wait it out (the event is held meanwhile,
        // so a runtime that just came back is used at once), and if another lookup tried in
        // the meantime and failed, share its answer. So no lookup waits more than one backoff
        // and one attempt, well inside the hold, and a burst of lookups during an outage makes
        // one connection attempt per backoff period.
        let wait = RECONNECT_BACKOFF.saturating_sub(at.elapsed());
        if !wait.is_zero() {
            drop(c);
            tokio::time::sleep(wait).await;
            c = conn.lock().await;
            if c.client.is_none()
                && c.last_attempt != Some(at)
                && let Some(e) = &c.last_error
            {
                return Err(e.clone());
            }
        }
    }
    if c.client.is_none() {
        c.last_attempt = Some(Instant::now());
        let connected = match super::cri::pick_socket(socket) {
            Ok(path) => CriClient::connect(&path).await,
            Err(e) => Err(e),
        };
        match connected {
            Ok(client) => {
                if c.warned {
                    info!(socket = %client.path().display(), "CRI socket reachable again; container metadata resumes");
                } else {
                    info!(socket = %client.path().display(), "connected to the container runtime (CRI)");
                }
                c.warned = false;
                c.last_error = None;
                c.client = Some(client);
            }
            Err(e) => {
                if !c.warned {
                    warn!(error = %e, "container runtime unreachable: container events will carry `missing` metadata until it returns");
                    c.warned = true;
                }
                c.last_error = Some(e.clone());
                return Err(e);
            }
        }
    }
    let Some(client) = c.client.as_mut() else {
        return Err(CriError::NoSocket("not connected".into()));
    };
    let path = client.path().display().to_string();
    // Clone the client (cheap: a channel handle) so that lookups run concurrently.
    let mut client = CriClient::clone_handle(client);
    drop(c);
    let r = client.lookup(id).await;
    if let Err(CriError::Unavailable { reason, .. }) = &r {
        // The socket went away mid-call: reconnect next time.
        let mut c = conn.lock().await;
        if !c.warned {
            warn!(socket = %path, error = %reason, "CRI call failed; reconnecting");
            c.warned = true;
        }
        c.client = None;
    }
    r
}
