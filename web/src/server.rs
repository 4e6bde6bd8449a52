//! The HTTP side: hyper's HTTP/1.1 server connections, one task each, at
//! most [`MAX_CLIENTS`] at a time, a request head within
//! [`HEAD_TIMEOUT`], a form body of at most [`MAX_BODY`] bytes.
//!
//! Who may connect: loopback, `proxy.admin_networks` and `[web] allow`;
//! anyone else gets `403` on every request (and a log line). Every
//! response carries `Content-Security-Policy` (nothing but this server's
//! stylesheet and forms), `X-Frame-Options: DENY`, `nosniff`, no referrer
//! and no caching.
//!
//! | route | does |
//! |---|---|
//! | `GET /` | the login form (the dashboard when logged in) |
//! | `POST /` | log in: `user`, `password` |
//! | `POST /logout` | log out (CSRF token) |
//! | `GET /dashboard` | `postern status`, from the master |
//! | `GET /queue` | the update queue and the scheduled restarts (the updater's) |
//! | `POST /queue/flush`, `/queue/delete`, `/restarts/cancel` | their actions (CSRF token; `id` for the last two) |
//! | `GET /apply`, `POST /apply` | reload the configuration (CSRF token), with the result |
//! | `GET /style.css` | the stylesheet |
//!
//! A page that needs a session redirects to `/` without one; a form
//! without its session's CSRF token gets `403`.

use std::convert::Infallible;
use std::net::IpAddr;
use std::os::fd::OwnedFd;
use std::sync::Arc;
use std::time::{Duration, Instant};

use http_body_util::{BodyExt, Full, Limited};
use hyper::body::{Bytes, Incoming};
use hyper::header::{HeaderValue, CACHE_CONTROL, CONTENT_TYPE, COOKIE, LOCATION, SET_COOKIE};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use maud::Markup;
use postern_shared::config::in_networks;
use postern_shared::ipc::proto::Attrs;
use postern_shared::ipc::{Outcome, UpdaterReply, UpdaterRequest, WorkerRequest};
use postern_shared::net::unmap;
use postern_shared::smtp::secret_eq;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

use crate::auth::{credentials_ok, Session, SESSION_IDLE};
use crate::{pages, Shared};

/// Connections served at the same time; more wait in the listen backlog.
pub const MAX_CLIENTS: usize = 32;
/// How long a request head may take to arrive.
pub const HEAD_TIMEOUT: Duration = Duration::from_secs(10);
/// Largest form accepted.
pub const MAX_BODY: usize = 16 * 1024;
/// Longest a connection may stay open.
const CONNECTION_LIFETIME: Duration = Duration::from_secs(300);
/// The session cookie's name.
const SESSION_COOKIE: &str = "postern_session";

/// A listener from an inherited descriptor.
pub fn listener(fd: OwnedFd) -> anyhow::Result<TcpListener> {
    let std = std::net::TcpListener::from(fd);
    std.set_nonblocking(true)?;
    Ok(TcpListener::from_std(std)?)
}

/// Accepts connections until the process ends.
pub async fn accept_loop(listener: TcpListener, shared: Arc<Shared>) {
    let slots = Arc::new(Semaphore::new(MAX_CLIENTS));
    loop {
        let Ok(permit) = slots.clone().acquire_owned().await else {
            return;
        };
        let (stream, peer) = match listener.accept().await {
            Ok(a) => a,
            Err(e) => {
                tracing::warn!("accept: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let shared = shared.clone();
        tokio::spawn(async move {
            let _permit = permit;
            let ip = unmap(peer.ip());
            let svc = hyper::service::service_fn(move |req| {
                let shared = shared.clone();
                async move { Ok::<_, Infallible>(secured(handle(req, ip, &shared).await)) }
            });
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(HEAD_TIMEOUT)
                .serve_connection(TokioIo::new(stream), svc);
            let _ = tokio::time::timeout(CONNECTION_LIFETIME, conn).await;
        });
    }
}

type Reply = Response<Full<Bytes>>;

/// Whether `ip` may use the console.
fn allowed(shared: &Shared, ip: IpAddr) -> bool {
    let config = shared.config();
    ip.is_loopback()
        || in_networks(ip, &config.proxy.admin_networks)
        || in_networks(ip, &config.web.allow)
}

/// One request.
async fn handle(req: Request<Incoming>, ip: IpAddr, shared: &Shared) -> Reply {
    if !allowed(shared, ip) {
        tracing::warn!(
            "console request from {ip} refused: not in loopback, admin_networks or web.allow"
        );
        return html(
            StatusCode::FORBIDDEN,
            pages::error(403, "Not from this address."),
        );
    }
    let (parts, body) = req.into_parts();
    let token = cookie(&parts.headers, SESSION_COOKIE);
    let now = Instant::now();
    let session = token.as_deref().and_then(|t| {
        shared
            .auth
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .session(t, now)
    });
    let form = if parts.method == Method::POST {
        match Limited::new(body, MAX_BODY).collect().await {
            Ok(b) => parse_form(&b.to_bytes()),
            Err(_) => {
                return html(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    pages::error(413, "That form is too large."),
                )
            }
        }
    } else {
        Vec::new()
    };
    let field = |name: &str| {
        form.iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .unwrap_or_default()
    };
    let path = parts.uri.path();
    match (&parts.method, path) {
        (&Method::GET, "/style.css") => Response::builder()
            .header(CONTENT_TYPE, "text/css; charset=utf-8")
            .body(Full::new(Bytes::from_static(pages::STYLE.as_bytes())))
            .expect("a valid response"),
        (&Method::GET, "/") => match session {
            Some(_) => redirect("/dashboard"),
            None => html(StatusCode::OK, pages::login(None)),
        },
        (&Method::POST, "/") => login(shared, ip, field("user"), field("password")).await,
        (&Method::GET, "/dashboard" | "/apply" | "/queue")
        | (
            &Method::POST,
            "/apply" | "/logout" | "/queue/flush" | "/queue/delete" | "/restarts/cancel",
        ) if session.is_none() => redirect("/"),
        (
            &Method::POST,
            "/apply" | "/logout" | "/queue/flush" | "/queue/delete" | "/restarts/cancel",
        ) if !session
            .as_ref()
            .is_some_and(|s| secret_eq(&s.csrf, field("csrf"))) =>
        {
            tracing::warn!("console form from {ip} without its session's CSRF token: refused");
            html(
                StatusCode::FORBIDDEN,
                pages::error(403, "This form is not from this session: reload the page."),
            )
        }
        (&Method::POST, "/logout") => {
            if let Some(t) = &token {
                shared
                    .auth
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .close(t);
            }
            let mut r = redirect("/");
            r.headers_mut().insert(
                SET_COOKIE,
                HeaderValue::from_static(
                    "postern_session=; HttpOnly; SameSite=Strict; Path=/; Max-Age=0",
                ),
            );
            r
        }
        (&Method::GET, "/dashboard") => {
            let s = session.expect("checked above");
            let status = shared
                .ask_master(WorkerRequest::Status)
                .await
                .and_then(ok_or_reason)
                .map(|a| {
                    String::from_utf8_lossy(a.body.as_deref().unwrap_or_default()).into_owned()
                });
            page(&s, "Dashboard", "/dashboard", pages::dashboard(&status))
        }
        (&Method::GET, "/queue") => {
            let s = session.expect("checked above");
            queue_page(shared, &s, None).await
        }
        (&Method::POST, "/queue/flush" | "/queue/delete" | "/restarts/cancel") => {
            let s = session.expect("checked above");
            let id = field("id").trim().to_string();
            let (req, what) = match path {
                "/queue/flush" => (UpdaterRequest::Flush, "flush".to_string()),
                "/queue/delete" => (
                    UpdaterRequest::Delete { id: id.clone() },
                    format!("delete {id}"),
                ),
                _ => (
                    UpdaterRequest::Cancel { id: id.clone() },
                    format!("cancel restart {id}"),
                ),
            };
            tracing::info!("queue {what} asked by {} from {ip} (the console)", s.user);
            let done = match shared.ask_updater(req).await {
                Ok(UpdaterReply::Flushed { count }) => {
                    Ok(format!("{count} deferred copies will be tried now."))
                }
                Ok(UpdaterReply::Done | UpdaterReply::Text(_) | UpdaterReply::Queued { .. }) => {
                    Ok(match path {
                        "/queue/flush" => "0 deferred copies will be tried now.".to_string(),
                        "/queue/delete" => format!("Update mail {id} deleted."),
                        _ => format!("Restart {id} cancelled."),
                    })
                }
                Ok(
                    UpdaterReply::NotFound(why)
                    | UpdaterReply::Reject(why)
                    | UpdaterReply::TempFail(why),
                ) => Err(format!("Not done: {why}")),
                Err(e) => Err(e),
            };
            queue_page(shared, &s, Some(&done)).await
        }
        (&Method::GET, "/apply") => {
            let s = session.expect("checked above");
            page(&s, "Apply", "/apply", pages::apply(&s.csrf, None))
        }
        (&Method::POST, "/apply") => {
            let s = session.expect("checked above");
            tracing::info!("reload asked by {} from {ip} (the console)", s.user);
            let result = shared
                .ask_master(WorkerRequest::Reload {
                    sid: format!("console:{}@{ip}", s.user),
                })
                .await
                .and_then(ok_or_reason)
                .map(|_| ());
            page(&s, "Apply", "/apply", pages::apply(&s.csrf, Some(&result)))
        }
        (
            _,
            "/" | "/dashboard" | "/apply" | "/logout" | "/style.css" | "/queue" | "/queue/flush"
            | "/queue/delete" | "/restarts/cancel",
        ) => html(
            StatusCode::METHOD_NOT_ALLOWED,
            pages::error(405, "Not with this method."),
        ),
        _ => html(StatusCode::NOT_FOUND, pages::error(404, "No such page.")),
    }
}

/// The update queue page, after an action's result when there was one.
async fn queue_page(shared: &Shared, s: &Session, done: Option<&Result<String, String>>) -> Reply {
    let text = |r: Result<UpdaterReply, String>| match r {
        Ok(UpdaterReply::Text(t)) => Ok(String::from_utf8_lossy(&t).into_owned()),
        Ok(_) => Ok(String::new()),
        Err(e) => Err(e),
    };
    let queue = text(shared.ask_updater(UpdaterRequest::List).await);
    let restarts = text(shared.ask_updater(UpdaterRequest::Restarts).await);
    page(
        s,
        "Update queue",
        "/queue",
        pages::queue(&s.csrf, &queue, &restarts, done),
    )
}

/// A login attempt: a session and the dashboard, or the form again after
/// the failure's delay.
async fn login(shared: &Shared, ip: IpAddr, user: &str, password: &str) -> Reply {
    let config = shared.config();
    let admin = (
        config.proxy.admin_user.as_deref().unwrap_or_default(),
        config.proxy.admin_password.as_deref().unwrap_or_default(),
    );
    let ok = !admin.0.is_empty() && credentials_ok(user, password, admin);
    let now = Instant::now();
    if !ok {
        let delay = shared
            .auth
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .failed(ip, now);
        tracing::warn!("failed console login from {ip}");
        tokio::time::sleep(delay).await;
        return html(
            StatusCode::UNAUTHORIZED,
            pages::login(Some("Wrong user or password.")),
        );
    }
    let token = {
        let mut auth = shared.auth.lock().unwrap_or_else(|p| p.into_inner());
        auth.succeeded(ip);
        auth.open(user, now)
    };
    tracing::info!("console login by {user} from {ip}");
    let mut r = redirect("/dashboard");
    let cookie = format!(
        "{SESSION_COOKIE}={token}; HttpOnly; SameSite=Strict; Path=/; Max-Age={}",
        SESSION_IDLE.as_secs()
    );
    r.headers_mut().insert(
        SET_COOKIE,
        HeaderValue::from_str(&cookie).expect("a token is hex"),
    );
    r
}

/// The master's answer when it says `status=ok`, else its reason.
fn ok_or_reason(a: Attrs) -> Result<Attrs, String> {
    if Outcome::is_ok(&a) {
        Ok(a)
    } else {
        Err(Outcome::reason_in(&a).unwrap_or("refused").to_string())
    }
}

/// A page after login.
fn page(s: &Session, title: &str, here: &str, body: Markup) -> Reply {
    html(
        StatusCode::OK,
        pages::page(title, here, &s.user, &s.csrf, body),
    )
}

fn html(status: StatusCode, m: Markup) -> Reply {
    Response::builder()
        .status(status)
        .header(CONTENT_TYPE, "text/html; charset=utf-8")
        .body(Full::new(Bytes::from(m.into_string())))
        .expect("a valid response")
}

fn redirect(to: &'static str) -> Reply {
    Response::builder()
        .status(StatusCode::SEE_OTHER)
        .header(LOCATION, to)
        .body(Full::new(Bytes::new()))
        .expect("a valid response")
}

/// The headers every response carries.
fn secured(mut r: Reply) -> Reply {
    let h = r.headers_mut();
    for (name, value) in [
        (
            "content-security-policy",
            "default-src 'none'; style-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
        ),
        ("x-frame-options", "DENY"),
        ("x-content-type-options", "nosniff"),
        ("referrer-policy", "no-referrer"),
    ] {
        h.insert(name, HeaderValue::from_static(value));
    }
    h.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

/// A cookie's value from the request's `Cookie` headers.
fn cookie(headers: &hyper::HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|c| {
            let (k, v) = c.trim().split_once('=')?;
            (k == name).then(|| v.to_string())
        })
}

/// An `application/x-www-form-urlencoded` body's fields.
fn parse_form(body: &[u8]) -> Vec<(String, String)> {
    let decode = |s: &str| -> String {
        let b = s.as_bytes();
        let mut out = Vec::with_capacity(b.len());
        let mut i = 0;
        while i < b.len() {
            match b[i] {
                b'+' => out.push(b' '),
                b'%' if i + 2 < b.len() => {
                    match u8::from_str_radix(
                        std::str::from_utf8(&b[i + 1..i + 3]).unwrap_or("zz"),
                        16,
                    ) {
                        Ok(v) => {
                            out.push(v);
                            i += 2;
                        }
                        Err(_) => out.push(b'%'),
                    }
                }
                c => out.push(c),
            }
            i += 1;
        }
        String::from_utf8_lossy(&out).into_owned()
    };
    String::from_utf8_lossy(body)
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (decode(k), decode(v))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forms_and_cookies_decode() {
        assert_eq!(
            parse_form(b"user=ad+min&password=p%40ss%25&csrf=&x"),
            [
                ("user".to_string(), "ad min".to_string()),
                ("password".into(), "p@ss%".into()),
                ("csrf".into(), String::new()),
                ("x".into(), String::new()),
            ]
        );
        assert_eq!(parse_form(b"a=%4"), [("a".to_string(), "%4".to_string())]);
        assert_eq!(parse_form(b"a=%zz"), [("a".to_string(), "%zz".to_string())]);
        let mut h = hyper::HeaderMap::new();
        h.insert(
            COOKIE,
            HeaderValue::from_static("a=1; postern_session=abc; b=2"),
        );
        assert_eq!(cookie(&h, "postern_session").as_deref(), Some("abc"));
        assert_eq!(cookie(&h, "c"), None);
    }
}
