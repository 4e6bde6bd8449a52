//! One request to the running router on `run_dir/router.sock`, as the CLI
//! makes them (`postern stats`, `postern access`): connect, check the
//! greeting, send, read one reply, all within 10 s.

use std::path::Path;
use std::time::Duration;

use postern_shared::proto::{self, Attrs};
use postern_shared::route::PROTOCOL;

/// Sends `req` (its `id` is set here) and returns the reply, whatever its status.
pub fn router(sock: &Path, req: Attrs) -> Result<Attrs, String> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    rt.block_on(async {
        let talk = async {
            let stream = tokio::net::UnixStream::connect(sock)
                .await
                .map_err(|e| e.to_string())?;
            let mut conn = tokio::io::BufStream::new(stream);
            let hello = proto::read(&mut conn)
                .await
                .map_err(|e| e.to_string())?
                .ok_or("closed before its greeting")?;
            if hello.get("protocol") != Some(PROTOCOL) {
                return Err("not a router socket".to_string());
            }
            proto::write(&mut conn, &req.with("id", 1))
                .await
                .map_err(|e| e.to_string())?;
            proto::read(&mut conn)
                .await
                .map_err(|e| e.to_string())?
                .ok_or_else(|| "closed without answering".to_string())
        };
        tokio::time::timeout(Duration::from_secs(10), talk)
            .await
            .map_err(|_| "no answer within 10s".to_string())?
    })
}
