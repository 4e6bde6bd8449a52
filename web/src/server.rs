//! The HTTP side: hyper's HTTP/1.1 server connections, one task each, at
//! most [`MAX_CLIENTS`] at a time, a request head within
//! [`HEAD_TIMEOUT`], a form body of at most [`MAX_BODY`] bytes.
//!
//! Who may connect: loopback, `proxy.admin_networks` and `[web] allow`;
//! anyone else has its connection closed at once, before any TLS handshake
//! (and a log line); a request on a connection opened before a reload took
//! its address away gets `403`. Every
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
use postern_shared::ipc::{Outcome, RouterRequest, UpdaterReply, UpdaterRequest, WorkerRequest};
use postern_shared::net::unmap;
use postern_shared::smtp::secret_eq;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

use crate::access::{access_entries, access_page, access_save, policy_test};
use crate::auth::{credentials_ok, Session};
use crate::greylist::greylist_page;
use crate::logs::{ask_log, refusal};
use crate::mx::{mx_rows, served_domains, this_host};
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
        // Who may not use the console gets nothing: not a TLS handshake,
        // not a connection slot held for minutes.
        let ip = unmap(peer.ip());
        if !allowed(&shared, ip) {
            tracing::warn!(
                "console connection from {ip} refused: not in loopback, admin_networks or web.allow"
            );
            drop(permit);
            continue;
        }
        let shared = shared.clone();
        let tls = shared.tls.read().unwrap_or_else(|p| p.into_inner()).clone();
        tokio::spawn(async move {
            let _permit = permit;
            let https = tls.is_some();
            let svc = hyper::service::service_fn(move |req| {
                let shared = shared.clone();
                async move { Ok::<_, Infallible>(secured(handle(req, ip, https, &shared).await, https)) }
            });
            let http = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(HEAD_TIMEOUT)
                .clone();
            match tls {
                None => {
                    let conn = http.serve_connection(TokioIo::new(stream), svc);
                    let _ = tokio::time::timeout(CONNECTION_LIFETIME, conn).await;
                }
                Some(acceptor) => {
                    let stream =
                        match tokio::time::timeout(HEAD_TIMEOUT, acceptor.accept(stream)).await {
                            Ok(Ok(s)) => s,
                            Ok(Err(e)) => {
                                tracing::info!("console TLS handshake with {ip} failed: {e}");
                                return;
                            }
                            Err(_) => return,
                        };
                    let conn = http.serve_connection(TokioIo::new(stream), svc);
                    let _ = tokio::time::timeout(CONNECTION_LIFETIME, conn).await;
                }
            }
        });
    }
}

pub(crate) type Reply = Response<Full<Bytes>>;

/// Whether `ip` may use the console.
fn allowed(shared: &Shared, ip: IpAddr) -> bool {
    let config = shared.config();
    ip.is_loopback()
        || in_networks(ip, &config.proxy.admin_networks)
        || in_networks(ip, &config.web.allow)
}

/// One request.
async fn handle(req: Request<Incoming>, ip: IpAddr, https: bool, shared: &Shared) -> Reply {
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
    // A GET form's fields are in the query string.
    let mut fields = form;
    fields.extend(parse_form(parts.uri.query().unwrap_or_default().as_bytes()));
    let fields = Fields(fields);
    let field = |name: &str| fields.get(name);
    let path = parts.uri.path();
    let verb = match parts.method {
        Method::GET | Method::HEAD => Verb::Get,
        Method::POST => Verb::Post,
        _ => Verb::Other,
    };
    let Some(guard) = ROUTES
        .iter()
        .find(|(v, p, _)| *v == verb && *p == path)
        .map(|r| r.2)
    else {
        return if ROUTES.iter().any(|(_, p, _)| *p == path) {
            html(
                StatusCode::METHOD_NOT_ALLOWED,
                pages::error(405, "Not with this method."),
            )
        } else {
            html(StatusCode::NOT_FOUND, pages::error(404, "No such page."))
        };
    };
    let s = match (guard, session) {
        (Guard::Public, s) => s,
        (_, None) => return redirect("/"),
        (Guard::Form, Some(s)) if !secret_eq(&s.csrf, field("csrf")) => {
            tracing::warn!("console form from {ip} without its session's CSRF token: refused");
            return html(
                StatusCode::FORBIDDEN,
                pages::error(403, "This form is not from this session: reload the page."),
            );
        }
        (_, Some(s)) => Some(s),
    };
    let Some(s) = s else {
        // The public routes.
        return match (verb, path) {
            (Verb::Get, "/style.css") => style(),
            (Verb::Post, "/") => login(shared, ip, https, field("user"), field("password")).await,
            _ => html(StatusCode::OK, pages::login(None)),
        };
    };
    match (verb, path) {
        (Verb::Get, "/style.css") => style(),
        (Verb::Get, "/") => redirect("/dashboard"),
        (Verb::Post, "/") => login(shared, ip, https, field("user"), field("password")).await,
        (Verb::Post, "/logout") => {
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
        (Verb::Get, "/dashboard") => {
            let status = shared
                .ask_master(WorkerRequest::Status)
                .await
                .and_then(ok_or_reason)
                .map(|a| {
                    String::from_utf8_lossy(a.body.as_deref().unwrap_or_default()).into_owned()
                });
            page(&s, "Dashboard", "/dashboard", pages::dashboard(&status))
        }
        (Verb::Get, "/stats") => {
            let weeks = field("weeks")
                .parse::<i64>()
                .unwrap_or(8)
                .clamp(1, postern_shared::stats::KEEP_DAYS / 7);
            let report = shared
                .ask_router(RouterRequest::Stats.encode())
                .await
                .and_then(|a| {
                    let text =
                        String::from_utf8_lossy(a.body.as_deref().unwrap_or_default()).into_owned();
                    postern_shared::stats::Stats::decode(&text).map_err(|e| e.to_string())
                })
                .map(|stats| {
                    postern_shared::stats::Report::new(
                        &stats,
                        postern_shared::runtime::time::Day::today(),
                        weeks,
                    )
                });
            page(&s, "Statistics", "/stats", pages::stats(&report, weeks))
        }
        (Verb::Get, "/routing") => {
            let config = shared.config();
            let health: Vec<String> = shared
                .ask_master(WorkerRequest::Backends)
                .await
                .and_then(ok_or_reason)
                .map(|a| a.get_all("backend").map(str::to_string).collect())
                .unwrap_or_default();
            let servers: Vec<pages::ServerRow> = config
                .servers
                .iter()
                .enumerate()
                .map(|(i, sv)| pages::ServerRow {
                    name: sv.display_name(),
                    address: format!("{}:{}", sv.host, sv.port),
                    domains: sv.domains.clone(),
                    relay: sv.relay.iter().map(|r| r.to_string()).collect(),
                    auth: sv.user.is_some(),
                    identity: sv.client_identity.as_str().to_string(),
                    restart: sv.restart_command.is_some(),
                    health: health.get(i).cloned().unwrap_or_else(|| "unknown".into()),
                })
                .collect();
            page(
                &s,
                "Routing",
                "/routing",
                pages::routing(&servers, &served_domains(&config)),
            )
        }
        (Verb::Get, "/mx") => {
            let config = shared.config();
            let here = this_host(&config);
            let rows = mx_rows(shared, &config, &here).await;
            let mut shown: Vec<String> = vec![config.proxy.hostname.clone()];
            shown.extend(here.iter().map(IpAddr::to_string));
            page(&s, "MX check", "/mx", pages::mx(&rows, &shown))
        }
        (Verb::Get, "/access") => {
            let mut form = pages::EntryForm {
                action: "reject".into(),
                method: "from".into(),
                ..Default::default()
            };
            if !field("edit_pattern").is_empty() {
                let key = (
                    field("edit_action").to_string(),
                    field("edit_method").to_string(),
                    field("edit_pattern").to_string(),
                );
                if let Ok(entries) = access_entries(shared).await {
                    if let Some(e) = entries.iter().find(|e| {
                        (e.action.as_str(), e.method.as_str(), e.pattern.to_string())
                            == (key.0.as_str(), key.1.as_str(), key.2.clone())
                    }) {
                        form.action = key.0.clone();
                        form.method = key.1.clone();
                        form.pattern = key.2.clone();
                        form.comment = e.comment.clone();
                        form.keep_until = e.keep_until.clone().unwrap_or_default();
                        form.editing = Some(key);
                    }
                }
            }
            let test = policy_test(shared, &fields).await;
            access_page(shared, &s, StatusCode::OK, &form, &test, None).await
        }
        (Verb::Post, "/access/save") => access_save(shared, &s, ip, &fields).await,
        (Verb::Post, "/access/delete") => {
            let (action, method, pattern) = (field("action"), field("method"), field("pattern"));
            let done = shared
                .ask_router(
                    RouterRequest::AccessRemove {
                        action: action.into(),
                        method: method.into(),
                        pattern: pattern.into(),
                    }
                    .encode(),
                )
                .await
                .map(|_| format!("Removed: {action} {method} {pattern}."));
            if done.is_ok() {
                tracing::info!(
                    "access lists: {action} {method} {pattern} removed by {} from {ip} (the console)",
                    s.user
                );
            }
            let form = pages::EntryForm {
                action: "reject".into(),
                method: "from".into(),
                ..Default::default()
            };
            let test = pages::PolicyTest::default();
            access_page(shared, &s, StatusCode::OK, &form, &test, Some(&done)).await
        }
        (Verb::Get, "/greylist") => {
            greylist_page(shared, &s, field("q"), field("view"), None).await
        }
        (Verb::Post, "/greylist/whitelist") => {
            let (op, kind, pattern) = (field("op"), field("kind"), field("pattern").trim());
            let op = if op == "remove" { "remove" } else { "add" };
            let done = shared
                .ask_router(
                    RouterRequest::GreylistWhitelist {
                        op: op.into(),
                        kind: kind.into(),
                        pattern: pattern.into(),
                        comment: None,
                        by: Some(format!("{} (console)", s.user)),
                    }
                    .encode(),
                )
                .await
                .map(|_| {
                    tracing::info!(
                        "greylisting: whitelist {op} {kind} {pattern} by {} from {ip} (the console)",
                        s.user
                    );
                    if op == "add" {
                        format!("Whitelisted: {kind} {pattern}.")
                    } else {
                        format!("Removed from the whitelist: {kind} {pattern}.")
                    }
                });
            greylist_page(shared, &s, "", "", Some(&done)).await
        }
        (Verb::Get, "/logs") => {
            let (q, since) = (field("q").trim(), field("since").trim());
            let found = if q.is_empty() {
                None
            } else {
                Some(ask_log(shared, "search", q, since).await.map(|(a, lines)| {
                    (
                        a.get_all("looked").last().unwrap_or("searched").to_string(),
                        lines,
                    )
                }))
            };
            page(&s, "Logs", "/logs", pages::logs(q, since, found.as_ref()))
        }
        (Verb::Get, "/refused") => {
            let (to, since) = (field("to").trim(), field("since").trim());
            // The report runs when the form was sent (or the page opened bare).
            let found = ask_log(shared, "refused", to, since)
                .await
                .map(|(a, lines)| {
                    let rows = lines.iter().filter_map(|l| refusal(l)).collect();
                    (
                        a.get_all("looked").last().unwrap_or("searched").to_string(),
                        rows,
                    )
                });
            page(
                &s,
                "Refused mail",
                "/refused",
                pages::refused(to, since, Some(&found)),
            )
        }
        (Verb::Get, "/logs/session") => {
            let (sid, since) = (field("sid").trim(), field("since").trim());
            // A session id is a few letters and digits: anything else would
            // only make the master read every file for nothing.
            let lines = if sid.is_empty()
                || sid.len() > 64
                || !sid
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_.:".contains(&b))
            {
                Err(format!("{sid:?} is not a session id."))
            } else {
                ask_log(shared, "session", sid, since)
                    .await
                    .map(|(_, lines)| lines)
            };
            page(
                &s,
                &format!("Session {sid}"),
                "/logs",
                pages::session(sid, &lines),
            )
        }
        (Verb::Get, "/queue") => queue_page(shared, &s, None).await,
        (Verb::Post, "/queue/flush" | "/queue/delete" | "/restarts/cancel") => {
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
            tracing::info!("queue {what:?} asked by {} from {ip} (the console)", s.user);
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
        (Verb::Get, "/apply") => page(&s, "Apply", "/apply", pages::apply(&s.csrf, None)),
        (Verb::Post, "/apply") => {
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
        // Every route of the table is above.
        _ => html(StatusCode::NOT_FOUND, pages::error(404, "No such page.")),
    }
}

/// How a route is asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Verb {
    Get,
    Post,
    Other,
}

/// What a route needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Guard {
    /// Anyone allowed to connect.
    Public,
    /// A logged-in session.
    Session,
    /// A logged-in session and its CSRF token (every form that changes something).
    Form,
}

/// Every route: a path with another method gets `405`, an unknown path `404`.
const ROUTES: &[(Verb, &str, Guard)] = &[
    (Verb::Get, "/style.css", Guard::Public),
    (Verb::Get, "/", Guard::Public),
    (Verb::Post, "/", Guard::Public),
    (Verb::Post, "/logout", Guard::Form),
    (Verb::Get, "/dashboard", Guard::Session),
    (Verb::Get, "/stats", Guard::Session),
    (Verb::Get, "/routing", Guard::Session),
    (Verb::Get, "/mx", Guard::Session),
    (Verb::Get, "/access", Guard::Session),
    (Verb::Post, "/access/save", Guard::Form),
    (Verb::Post, "/access/delete", Guard::Form),
    (Verb::Get, "/greylist", Guard::Session),
    (Verb::Post, "/greylist/whitelist", Guard::Form),
    (Verb::Get, "/logs", Guard::Session),
    (Verb::Get, "/logs/session", Guard::Session),
    (Verb::Get, "/refused", Guard::Session),
    (Verb::Get, "/queue", Guard::Session),
    (Verb::Post, "/queue/flush", Guard::Form),
    (Verb::Post, "/queue/delete", Guard::Form),
    (Verb::Post, "/restarts/cancel", Guard::Form),
    (Verb::Get, "/apply", Guard::Session),
    (Verb::Post, "/apply", Guard::Form),
];

fn style() -> Reply {
    Response::builder()
        .header(CONTENT_TYPE, "text/css; charset=utf-8")
        .body(Full::new(Bytes::from_static(pages::STYLE.as_bytes())))
        .expect("a valid response")
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
async fn login(shared: &Shared, ip: IpAddr, https: bool, user: &str, password: &str) -> Reply {
    let config = shared.config();
    let admin = (
        config.proxy.admin_user.as_deref().unwrap_or_default(),
        config.proxy.admin_password.as_deref().unwrap_or_default(),
    );
    let now = Instant::now();
    let wait = shared
        .auth
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .must_wait(ip, now);
    if let Some(d) = wait {
        tracing::warn!("console login from {ip} refused: too soon after a failed one");
        let secs = d.as_secs().max(1);
        let mut r = html(
            StatusCode::TOO_MANY_REQUESTS,
            pages::login(Some(&format!(
                "Too many failed logins from this address: try again in {secs} s."
            ))),
        );
        r.headers_mut()
            .insert(hyper::header::RETRY_AFTER, HeaderValue::from(secs));
        return r;
    }
    let ok = !admin.0.is_empty() && credentials_ok(user, password, admin);
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
    // Secure over HTTPS: the browser never sends it over plain HTTP. A
    // session cookie (no Max-Age): the session ends on the server after
    // SESSION_IDLE without a request, however long it was used before.
    let cookie = format!(
        "{SESSION_COOKIE}={token}; HttpOnly; SameSite=Strict; Path=/{}",
        if https { "; Secure" } else { "" }
    );
    r.headers_mut().insert(
        SET_COOKIE,
        HeaderValue::from_str(&cookie).expect("a token is hex"),
    );
    r
}

/// The master's answer when it says `status=ok`, else its reason.
pub(crate) fn ok_or_reason(a: Attrs) -> Result<Attrs, String> {
    if Outcome::is_ok(&a) {
        Ok(a)
    } else {
        Err(Outcome::reason_in(&a).unwrap_or("refused").to_string())
    }
}

/// A page after login.
pub(crate) fn page(s: &Session, title: &str, here: &str, body: Markup) -> Reply {
    html(
        StatusCode::OK,
        pages::page(title, here, &s.user, &s.csrf, body),
    )
}

pub(crate) fn html(status: StatusCode, m: Markup) -> Reply {
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

/// The headers every response carries (over HTTPS, HSTS too).
fn secured(mut r: Reply, https: bool) -> Reply {
    let h = r.headers_mut();
    if https {
        h.insert(
            "strict-transport-security",
            HeaderValue::from_static("max-age=31536000"),
        );
    }
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

/// A request's form fields (the body's, then the query string's).
pub(crate) struct Fields(Vec<(String, String)>);

impl Fields {
    /// The first value of `name`, or empty.
    pub(crate) fn get(&self, name: &str) -> &str {
        self.0
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .unwrap_or_default()
    }
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
                // Two hex digits, nothing else (from_str_radix would take "+5").
                b'%' if i + 2 < b.len()
                    && b[i + 1].is_ascii_hexdigit()
                    && b[i + 2].is_ascii_hexdigit() =>
                {
                    let hex = std::str::from_utf8(&b[i + 1..i + 3]).unwrap_or("00");
                    out.push(u8::from_str_radix(hex, 16).unwrap_or(0));
                    i += 2;
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
        assert_eq!(parse_form(b"a=%+5"), [("a".to_string(), "% 5".to_string())]);
        let mut h = hyper::HeaderMap::new();
        h.insert(
            COOKIE,
            HeaderValue::from_static("a=1; postern_session=abc; b=2"),
        );
        assert_eq!(cookie(&h, "postern_session").as_deref(), Some("abc"));
        assert_eq!(cookie(&h, "c"), None);
    }
}
