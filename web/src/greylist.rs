//! The greylisting page: a search, one of the three views, the manual
//! whitelist, through the router as `postern greylist` does.

use postern_shared::ipc::proto::Attrs;
use postern_shared::ipc::RouterRequest;

use crate::auth::Session;
use crate::pages;
use crate::server::{page, Reply};
use crate::Shared;

/// The greylisting page: a search, else one of the three views.
pub(crate) async fn greylist_page(
    shared: &Shared,
    s: &Session,
    q: &str,
    view: &str,
    done: Option<&Result<String, String>>,
) -> Reply {
    let lines = |r: Result<Attrs, String>| {
        r.map(|a| {
            String::from_utf8_lossy(a.body.as_deref().unwrap_or_default())
                .lines()
                .map(str::to_string)
                .collect::<Vec<_>>()
        })
    };
    let q = q.trim();
    let view = match view {
        "sender" | "recipient" => view,
        _ => "pending",
    };
    let shown = if !q.is_empty() {
        pages::GreylistView {
            title: "Search results",
            lines: lines(
                shared
                    .ask_router(
                        RouterRequest::GreylistSearch {
                            pattern: q.to_string(),
                        }
                        .encode(),
                    )
                    .await,
            ),
        }
    } else {
        let (which, by, title) = match view {
            "sender" => ("passed", Some("sender"), "Passed, by sender"),
            "recipient" => ("passed", Some("recipient"), "Passed, by recipient"),
            _ => ("pending", None, "Pending, by IP"),
        };
        pages::GreylistView {
            title,
            lines: lines(
                shared
                    .ask_router(
                        RouterRequest::GreylistList {
                            which: Some(which.into()),
                            by: by.map(str::to_string),
                        }
                        .encode(),
                    )
                    .await,
            ),
        }
    };
    let whitelist = lines(
        shared
            .ask_router(
                RouterRequest::GreylistWhitelist {
                    op: "list".into(),
                    kind: String::new(),
                    pattern: String::new(),
                    comment: None,
                    by: None,
                }
                .encode(),
            )
            .await,
    );
    page(
        s,
        "Greylisting",
        "/greylist",
        pages::greylist(&s.csrf, q, view, &shown, &whitelist, done),
    )
}
