//! The console's HTML, written with maud: every value is escaped by
//! construction, there is no script at all, and one stylesheet
//! (`/style.css`, below) does the layout, so the pages work on a host
//! without internet and under a `Content-Security-Policy` that allows
//! nothing else.

use maud::{html, Markup, DOCTYPE};

/// The stylesheet: one file, no external font or image.
pub const STYLE: &str = "\
body{font-family:system-ui,sans-serif;margin:0;color:#222;background:#fafafa}\
header{background:#234;color:#fff;padding:.6em 1em;display:flex;gap:1.5em;align-items:center}\
header a{color:#fff;text-decoration:none}header a.here{text-decoration:underline}\
header form{margin-left:auto}main{padding:1em 1.5em;max-width:72em}\
pre{background:#fff;border:1px solid #ccc;padding:.8em;overflow-x:auto}\
.error{color:#a00}.ok{color:#060}label{display:block;margin:.5em 0}\
input,button{font-size:1em;padding:.3em .5em}";

/// The menu, in seed 001's order (the pages built so far).
const MENU: &[(&str, &str)] = &[
    ("/dashboard", "Dashboard"),
    ("/queue", "Update queue"),
    ("/apply", "Apply"),
];

/// A page after login: the menu, the user and a log-out button, `body`.
pub fn page(title: &str, here: &str, user: &str, csrf: &str, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                title { "postern — " (title) }
                link rel="stylesheet" href="/style.css";
            }
            body {
                header {
                    strong { "postern" }
                    @for (href, name) in MENU {
                        a href=(href) class=[(*href == here).then_some("here")] { (name) }
                    }
                    form method="post" action="/logout" {
                        input type="hidden" name="csrf" value=(csrf);
                        (user) " "
                        button type="submit" { "Log out" }
                    }
                }
                main {
                    h1 { (title) }
                    (body)
                }
            }
        }
    }
}

/// The login form, with an error when the last attempt failed.
pub fn login(error: Option<&str>) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                title { "postern — log in" }
                link rel="stylesheet" href="/style.css";
            }
            body {
                header { strong { "postern" } }
                main {
                    h1 { "Log in" }
                    @if let Some(e) = error { p.error { (e) } }
                    form method="post" action="/" {
                        label { "User " input type="text" name="user" autocomplete="username" required; }
                        label { "Password " input type="password" name="password" autocomplete="current-password" required; }
                        button type="submit" { "Log in" }
                    }
                }
            }
        }
    }
}

/// The dashboard: `postern status` as the master says it.
pub fn dashboard(status: &Result<String, String>) -> Markup {
    html! {
        @match status {
            Ok(text) => pre { (text) },
            Err(e) => p.error { "The master did not tell: " (e) },
        }
    }
}

/// The update queue and the restart schedule, as `postern queue` and
/// `postern restarts` print them, with their actions; `done` says how the
/// last action went.
pub fn queue(
    csrf: &str,
    queue: &Result<String, String>,
    restarts: &Result<String, String>,
    done: Option<&Result<String, String>>,
) -> Markup {
    html! {
        @match done {
            Some(Ok(m)) => p.ok { (m) },
            Some(Err(e)) => p.error { (e) },
            None => {},
        }
        h2 { "Update mails" }
        @match queue {
            Ok(t) => pre { (t) },
            Err(e) => p.error { (e) },
        }
        form method="post" action="/queue/flush" {
            input type="hidden" name="csrf" value=(csrf);
            button type="submit" { "Try every deferred copy now" }
        }
        form method="post" action="/queue/delete" {
            input type="hidden" name="csrf" value=(csrf);
            label { "Update mail id " input type="text" name="id" required; }
            button type="submit" { "Delete" }
        }
        h2 { "Scheduled restarts" }
        @match restarts {
            Ok(t) => pre { (t) },
            Err(e) => p.error { (e) },
        }
        form method="post" action="/restarts/cancel" {
            input type="hidden" name="csrf" value=(csrf);
            label { "Restart id " input type="text" name="id" required; }
            button type="submit" { "Cancel" }
        }
    }
}

/// Apply: reload the configuration file, and the last result.
pub fn apply(csrf: &str, result: Option<&Result<(), String>>) -> Markup {
    html! {
        @match result {
            Some(Ok(())) => p.ok { "Configuration reloaded." },
            Some(Err(e)) => p.error { "Not reloaded: " (e) " The running configuration stays." },
            None => {},
        }
        p { "Reads the configuration file again and applies it, as " code { "postern reload" } " does: an invalid file changes nothing." }
        form method="post" action="/apply" {
            input type="hidden" name="csrf" value=(csrf);
            button type="submit" { "Reload the configuration" }
        }
    }
}

/// A page for an error (`404`, `403`…), without the menu.
pub fn error(status: u16, text: &str) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head { meta charset="utf-8"; title { "postern — " (status) } link rel="stylesheet" href="/style.css"; }
            body { main { h1 { (status) } p { (text) } p { a href="/" { "postern" } } } }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_escaped() {
        let p = dashboard(&Ok("<script>alert(1)</script> & \"x\"".into())).into_string();
        assert!(
            p.contains("&lt;script&gt;alert(1)&lt;/script&gt; &amp; &quot;x&quot;"),
            "{p}"
        );
        let p = page("t", "/dashboard", "<b>", "\"><x", html! {}).into_string();
        assert!(!p.contains("<b>") && !p.contains("\"><x"), "{p}");
        assert!(!p.contains("<script"), "no script at all");
    }
}
