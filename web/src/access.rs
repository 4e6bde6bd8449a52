//! The access lists page: the lists as the router holds them, the
//! add/edit form with its errors next to their fields, the test form.

use std::net::IpAddr;

use hyper::StatusCode;
use postern_shared::access::{is_date, AccessFile, Action, Entry, Method as AccessMethod, Pattern};
use postern_shared::ipc::policy::{Query, Verdict as PolicyVerdict};
use postern_shared::ipc::RouterRequest;

use crate::auth::Session;
use crate::pages;
use crate::server::{html, Fields, Reply};
use crate::Shared;

/// The access lists as the router holds them.
pub(crate) async fn access_entries(shared: &Shared) -> Result<Vec<Entry>, String> {
    let reply = shared
        .ask_router(RouterRequest::AccessList.encode())
        .await?;
    let text = String::from_utf8_lossy(reply.body.as_deref().unwrap_or_default()).into_owned();
    AccessFile::parse(&text)
        .map(|f| f.entries)
        .map_err(|e| e.to_string())
}

/// The "test an address" form's verdict, when it was filled in.
pub(crate) async fn policy_test(shared: &Shared, fields: &Fields) -> pages::PolicyTest {
    let field = |name: &str| fields.get(name);
    let mut t = pages::PolicyTest {
        client: field("client").trim().to_string(),
        helo: field("helo").trim().to_string(),
        from: field("from").trim().to_string(),
        to: field("to").trim().to_string(),
        verdict: None,
    };
    if t.client.is_empty() && t.to.is_empty() {
        return t;
    }
    let bare = |a: &str| a.trim_start_matches('<').trim_end_matches('>').to_string();
    let Ok(client) = t.client.parse::<IpAddr>() else {
        t.verdict = Some(Err(format!("{:?} is not an IP address.", t.client)));
        return t;
    };
    let q = Query {
        sid: "console-test".into(),
        client,
        client_name: None,
        helo: (!t.helo.is_empty()).then(|| t.helo.clone()),
        sender: bare(&t.from),
        recipient: bare(&t.to),
        improper_pipelining: false,
        dry: true,
    };
    t.verdict = Some(
        shared
            .ask_router(q.to_attrs())
            .await
            .and_then(|r| {
                PolicyVerdict::from_attrs(&r)
                    .ok_or_else(|| "the router's answer is not a verdict".into())
            })
            .map(|v| v.describe()),
    );
    t
}

/// The access page, with the form as given and an action's result.
pub(crate) async fn access_page(
    shared: &Shared,
    s: &Session,
    status: StatusCode,
    form: &pages::EntryForm,
    test: &pages::PolicyTest,
    done: Option<&Result<String, String>>,
) -> Reply {
    let entries = access_entries(shared).await;
    let today = postern_shared::runtime::time::local_date(
        postern_shared::runtime::time::local_day(postern_shared::runtime::time::now_millis()),
    );
    html(
        status,
        pages::page(
            "Access lists",
            "/access",
            &s.user,
            &s.csrf,
            pages::access(&s.csrf, &entries, &today, form, test, done),
        ),
    )
}

/// Adds an entry, or saves an edited one (the old one replaced), with
/// what is wrong next to its field.
pub(crate) async fn access_save(
    shared: &Shared,
    s: &Session,
    ip: IpAddr,
    fields: &Fields,
) -> Reply {
    let field = |name: &str| fields.get(name);
    let mut form = pages::EntryForm {
        action: field("action").to_string(),
        method: field("method").to_string(),
        pattern: field("pattern").trim().to_string(),
        comment: field("comment").trim().to_string(),
        keep_until: field("keep_until").trim().to_string(),
        editing: (!field("old_pattern").is_empty()).then(|| {
            (
                field("old_action").to_string(),
                field("old_method").to_string(),
                field("old_pattern").to_string(),
            )
        }),
        error: None,
    };
    let test = pages::PolicyTest::default();
    // What the router would refuse, said next to its field.
    let method = match form.method.parse::<AccessMethod>() {
        Ok(m) => m,
        Err(e) => {
            form.error = Some(("", e));
            return access_page(shared, s, StatusCode::BAD_REQUEST, &form, &test, None).await;
        }
    };
    if form.action.parse::<Action>().is_err() {
        form.error = Some(("", format!("{:?} is not accept or reject", form.action)));
        return access_page(shared, s, StatusCode::BAD_REQUEST, &form, &test, None).await;
    }
    if let Err(e) = Pattern::parse(method, &form.pattern) {
        form.error = Some(("pattern", e.to_string()));
        return access_page(shared, s, StatusCode::BAD_REQUEST, &form, &test, None).await;
    }
    if !form.keep_until.is_empty() && !is_date(&form.keep_until) {
        form.error = Some((
            "keep_until",
            format!("{:?} is not a date such as 2027-01-31", form.keep_until),
        ));
        return access_page(shared, s, StatusCode::BAD_REQUEST, &form, &test, None).await;
    }
    let add = RouterRequest::AccessAdd {
        action: form.action.clone(),
        method: form.method.clone(),
        pattern: form.pattern.clone(),
        comment: Some(form.comment.clone()),
        keep_until: Some(form.keep_until.clone()),
        by: Some(format!("{} (console)", s.user)),
    };
    let new_key = (
        form.action.clone(),
        form.method.clone(),
        form.pattern.clone(),
    );
    let result = match &form.editing {
        // An edit: the old entry goes first (the same key would be a
        // duplicate); if the new one is refused, the old one comes back.
        Some(old) => {
            let remove = |k: &(String, String, String)| RouterRequest::AccessRemove {
                action: k.0.clone(),
                method: k.1.clone(),
                pattern: k.2.clone(),
            };
            // The entry as it is now, to put it back if the new one is
            // refused: without it, nothing is removed.
            let previous = access_entries(shared).await.and_then(|entries| {
                entries
                    .into_iter()
                    .find(|e| {
                        (e.action.as_str(), e.method.as_str(), e.pattern.to_string())
                            == (old.0.as_str(), old.1.as_str(), old.2.clone())
                    })
                    .ok_or_else(|| format!("no entry {} {} {} any more", old.0, old.1, old.2))
            });
            match previous {
                Err(e) => Err(e),
                Ok(p) => match shared.ask_router(remove(old).encode()).await {
                    Err(e) => Err(e),
                    Ok(_) => match shared.ask_router(add.encode()).await {
                        Ok(_) => Ok(()),
                        Err(e) => {
                            let back = shared
                                .ask_router(
                                    RouterRequest::AccessAdd {
                                        action: old.0.clone(),
                                        method: old.1.clone(),
                                        pattern: old.2.clone(),
                                        comment: Some(p.comment),
                                        keep_until: p.keep_until,
                                        by: p.added_by,
                                    }
                                    .encode(),
                                )
                                .await;
                            Err(match back {
                                Ok(_) => format!("{e} (the entry is as it was)"),
                                Err(b) => format!(
                                    "{e}; and the entry as it was could not be put back: {b}"
                                ),
                            })
                        }
                    },
                },
            }
        }
        None => shared.ask_router(add.encode()).await.map(|_| ()),
    };
    match result {
        Ok(()) => {
            let verb = if form.editing.is_some() {
                "saved"
            } else {
                "added"
            };
            tracing::info!(
                "access lists: {} {} {} {verb} by {} from {ip} (the console)",
                new_key.0,
                new_key.1,
                new_key.2,
                s.user
            );
            let done = Ok(format!(
                "{}: {} {} {}.",
                if form.editing.is_some() {
                    "Saved"
                } else {
                    "Added"
                },
                new_key.0,
                new_key.1,
                new_key.2
            ));
            let fresh = pages::EntryForm {
                action: form.action.clone(),
                method: form.method.clone(),
                ..Default::default()
            };
            access_page(shared, s, StatusCode::OK, &fresh, &test, Some(&done)).await
        }
        Err(e) => {
            form.error = Some(("", e));
            access_page(shared, s, StatusCode::BAD_REQUEST, &form, &test, None).await
        }
    }
}
