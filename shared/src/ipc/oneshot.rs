//! One request on a connection of its own, both sides.
//!
//! `master.sock` and `updater.sock` take one request per connection, and the
//! CLI asks the router that way too. [`Server::call`] is the client: connect,
//! check the greeting of a server that sends one, send the request, read one
//! reply, all within the server's time limit. [`serve`] is the server: accept
//! connections, read one request from each, hand it with a reply channel to
//! the process's main loop, write the answer back. Garbage from a peer drops
//! that connection only.

use std::path::Path;
use std::time::Duration;

use tokio::io::BufStream;
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::{mpsc, oneshot};

use crate::ipc::proto::{self, Attrs, ProtoError};

/// What a one-shot client expects of the server it calls.
#[derive(Debug, Clone, Copy)]
pub struct Server {
    /// Its name in error messages ("the router closed the connection…").
    pub name: &'static str,
    /// The `protocol=` of its greeting, if it greets. A server that greets
    /// multiplexes, matching replies by `id`: the request is sent with `id=1`.
    pub greeting: Option<&'static str>,
    /// How long the whole exchange may take.
    pub timeout: Duration,
}

/// The router, as the CLI asks it (`postern stats`, `access`, `greylist`).
pub const ROUTER: Server = Server {
    name: "router",
    greeting: Some(crate::ipc::route::PROTOCOL),
    timeout: Duration::from_secs(10),
};

/// The master's control socket: a reload waits for every worker's
/// acknowledgement, so it may take a while.
pub const MASTER: Server = Server {
    name: "master",
    greeting: None,
    timeout: Duration::from_secs(30),
};

/// The updater (smtpd's update mails, `postern queue`, `postern restarts`):
/// queueing waits for an fsync'd spool.
pub const UPDATER: Server = Server {
    name: "updater",
    greeting: None,
    timeout: Duration::from_secs(30),
};

/// Why a one-shot call got no reply.
#[derive(Debug, thiserror::Error)]
pub enum CallError {
    /// The socket could not be reached (not running, or not allowed).
    #[error("{0}")]
    Connect(std::io::Error),
    /// The connection failed, or the server sent garbage.
    #[error("{0}")]
    Proto(#[from] ProtoError),
    /// The server closed the connection before greeting.
    #[error("closed before its greeting")]
    NoGreeting,
    /// The greeting is not the expected server's.
    #[error("not a {0} socket")]
    WrongServer(&'static str),
    /// The server closed the connection without answering.
    #[error("the {0} closed the connection without answering")]
    Closed(&'static str),
    /// No answer within the server's time limit.
    #[error("no answer within {0:?}")]
    Timeout(Duration),
}

impl CallError {
    /// Whether this user may not use the socket (it is there: not "not running").
    pub fn is_permission_denied(&self) -> bool {
        matches!(self, CallError::Connect(e) if e.kind() == std::io::ErrorKind::PermissionDenied)
    }
}

impl Server {
    /// Sends `req` on a fresh connection to `path` and returns the reply,
    /// whatever its status.
    pub async fn call(&self, path: &Path, req: Attrs) -> Result<Attrs, CallError> {
        tokio::time::timeout(self.timeout, self.exchange(path, req))
            .await
            .map_err(|_| CallError::Timeout(self.timeout))?
    }

    /// [`Server::call`] from synchronous code (the CLI), on a runtime of its own.
    pub fn call_blocking(&self, path: &Path, req: Attrs) -> Result<Attrs, CallError> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(CallError::Connect)?;
        rt.block_on(self.call(path, req))
    }

    async fn exchange(&self, path: &Path, mut req: Attrs) -> Result<Attrs, CallError> {
        let stream = UnixStream::connect(path)
            .await
            .map_err(CallError::Connect)?;
        let mut conn = BufStream::new(stream);
        if let Some(protocol) = self.greeting {
            let hello = proto::read(&mut conn).await?.ok_or(CallError::NoGreeting)?;
            if hello.get("protocol") != Some(protocol) {
                return Err(CallError::WrongServer(self.name));
            }
            req.push("id", 1);
        }
        proto::write(&mut conn, &req).await?;
        proto::read(&mut conn)
            .await?
            .ok_or(CallError::Closed(self.name))
    }
}

/// Serves one request per connection on `listener`: each request goes to
/// the main loop through `tx`, made into its message by `wrap` with the
/// channel its answer comes back on. A connection whose request is garbage
/// is dropped (and logged); one whose request gets no answer is closed.
pub async fn serve<M: Send + 'static>(
    listener: UnixListener,
    name: &'static str,
    tx: mpsc::Sender<M>,
    wrap: fn(Attrs, oneshot::Sender<Attrs>) -> M,
) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            // Out of descriptors, most likely: let some close.
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        };
        let tx = tx.clone();
        tokio::spawn(async move {
            let mut conn = BufStream::new(stream);
            let req = match proto::read(&mut conn).await {
                Ok(Some(r)) => r,
                Ok(None) => return,
                Err(e) => {
                    tracing::warn!("dropping {name} client: {e}");
                    return;
                }
            };
            let (reply_tx, reply_rx) = oneshot::channel();
            if tx.send(wrap(req, reply_tx)).await.is_err() {
                return;
            }
            if let Ok(answer) = reply_rx.await {
                let _ = proto::write(&mut conn, &answer).await;
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ipc::{self, ControlVerb};

    #[tokio::test]
    async fn one_request_one_reply_and_a_time_limit() {
        let path =
            std::env::temp_dir().join(format!("postern-oneshot-{}.sock", std::process::id()));
        let _ = std::fs::remove_file(&path);
        let listener = UnixListener::bind(&path).expect("bind");
        let (tx, mut rx) = mpsc::channel(1);
        tokio::spawn(serve(listener, "test", tx, |req, reply| (req, reply)));
        tokio::spawn(async move {
            while let Some((req, reply)) = rx.recv().await {
                let req: Attrs = req;
                if ipc::verb::<ControlVerb>(&req) == Ok(ControlVerb::Status) {
                    let _ = reply.send(ipc::Outcome::Ok.reply(None));
                }
                // Anything else: never answered (the reply channel is dropped).
            }
        });
        let answer = MASTER
            .call(&path, ipc::request(ControlVerb::Status))
            .await
            .expect("answered");
        assert_eq!(answer.get("status"), Some("ok"));
        let dropped = MASTER.call(&path, ipc::request(ControlVerb::Stop)).await;
        assert!(matches!(dropped, Err(CallError::Closed("master"))));
        // A server that should greet and does not: the time limit ends it.
        let greeter = Server {
            timeout: Duration::from_millis(200),
            ..ROUTER
        };
        let greeting = greeter.call(&path, ipc::request(ControlVerb::Status)).await;
        assert!(
            matches!(greeting, Err(CallError::Timeout(_))),
            "{greeting:?}"
        );
        let _ = std::fs::remove_file(&path);
    }
}
