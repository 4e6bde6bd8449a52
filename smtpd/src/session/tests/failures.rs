//! Every failure and its reply (`reply.rs`): router, updater, master and
//! backend trouble is 4xx, never 5xx; client timeouts and a stopping
//! process are 421. Timeouts run on paused time.

use super::*;

/// The usual router, but `route` and `policy` requests answered by `special`.
async fn router_with(
    port: u16,
    special: impl Fn(&Attrs) -> Option<Option<Attrs>> + Send + Sync + 'static,
) -> RouterStub {
    RouterStub::start(move |req| special(req).unwrap_or_else(|| usual(req, &[port]))).await
}

/// The reply to a recipient whose lookup fails.
const LOOKUP_FAILURE: &str = "451 4.3.0 <u@one.test>: Temporary lookup failure";

/// A recipient of a session with `setup` gets [`LOOKUP_FAILURE`], and the
/// backend (if any) sees nothing.
async fn lookup_fails(setup: Setup, backend: Option<&BackendStub>) {
    let mut d = in_transaction(setup).await;
    d.play(&[("RCPT TO:<u@one.test>", LOOKUP_FAILURE)]).await;
    if let Some(b) = backend {
        assert_eq!(b.received(), "");
    }
}

#[tokio::test]
async fn a_router_that_cannot_route_gives_451_4_3_0() {
    let one = BackendStub::start(Mode::Normal).await;
    let router = router_with(one.port, |req| match req.get("request") {
        Some("route") => Some(Some(
            answer(req, "tempfail").with("reason", "table reloading"),
        )),
        _ => None,
    })
    .await;
    lookup_fails(Setup::with(&router), Some(&one)).await;
}

#[tokio::test]
async fn a_router_that_does_not_answer_in_time_gives_451_4_3_0() {
    let one = BackendStub::start(Mode::Normal).await;
    let router = router_with(one.port, |req| match req.get("request") {
        Some("route") => Some(None),
        _ => None,
    })
    .await;
    let setup = Setup {
        router_timeout: Duration::from_millis(200),
        ..Setup::with(&router)
    };
    lookup_fails(setup, None).await;
}

#[tokio::test]
async fn no_router_at_all_gives_451_4_3_0_at_rcpt() {
    let setup = Setup::without_router();
    assert!(absent(&setup.router));
    lookup_fails(setup, None).await;
}

#[tokio::test]
async fn a_policy_that_cannot_decide_gives_451_4_3_0_and_the_backend_never_sees_the_recipient() {
    let one = BackendStub::start(Mode::Normal).await;
    let router = router_with(one.port, |req| match req.get("request") {
        Some("policy") => Some(Some(answer(req, "tempfail").with("reason", "dns"))),
        _ => None,
    })
    .await;
    lookup_fails(Setup::with(&router), Some(&one)).await;
}

#[tokio::test]
async fn credentials_the_router_cannot_check_give_454_4_7_0() {
    let (mut d, _) = Setup::without_router().start().await;
    d.play(&[
        ("EHLO client.test", "250 "),
        // AUTH PLAIN \0u\0p
        (
            "AUTH PLAIN AHUAcA==",
            "454 4.7.0 Temporary authentication failure",
        ),
        (
            "RELOAD admin secret",
            "454 4.7.0 Temporary authentication failure",
        ),
    ])
    .await;
}

#[tokio::test]
async fn a_reload_the_master_refuses_gives_451_4_3_5_with_its_reason() {
    let router = RouterStub::start(|req| usual(req, &[])).await;
    let setup = Setup {
        master: Some(Err("line 3: unknown field `porte`\nand more".into())),
        ..Setup::with(&router)
    };
    let (mut d, _) = setup.start().await;
    d.play(&[
        ("EHLO client.test", "250 "),
        (
            "RELOAD admin secret",
            "451 4.3.5 line 3: unknown field `porte` and more",
        ),
    ])
    .await;
    let setup = Setup {
        master: Some(Ok(())),
        ..Setup::with(&router)
    };
    let (mut d, _) = setup.start().await;
    d.play(&[("RELOAD admin secret", "250 2.0.0 Configuration reloaded")])
        .await;
    // No master at all (an smtpd started by hand).
    let (mut d, _) = Setup::with(&router).start().await;
    d.play(&[("RELOAD admin*secret", "451 4.3.5 no master")])
        .await;
}

#[tokio::test]
async fn an_update_mail_the_updater_cannot_store_gives_451_4_3_0() {
    let mut d = in_transaction(Setup::without_router()).await;
    d.play(&[
        ("RCPT TO:<update@mx.test>", "250 2.1.5 Ok"),
        ("DATA", "354 "),
        (
            "restart spamwars now\r\n.",
            "451 4.3.0 Error: queue file write error, try again later",
        ),
    ])
    .await;
}

/// A router sending `one.test` to `port` with a short timeout.
async fn route_one_to(port: u16, timeout: Duration) -> RouterStub {
    router_with(port, move |req| match req.get("request") {
        Some("route") => Some(Some(route_to(req, 1, port, timeout))),
        _ => None,
    })
    .await
}

const UNREACHABLE: &str =
    "451 4.4.1 Service unavailable: the mail server is not reachable, try again later";

#[tokio::test]
async fn a_backend_that_cannot_be_reached_refuses_or_stays_silent_gives_451_4_4_1() {
    let refused = closed_port().await;
    let greets_554 = BackendStub::start(Mode::RefuseGreeting).await;
    let silent = BackendStub::start(Mode::Silent).await;
    for port in [refused, greets_554.port, silent.port] {
        let router = route_one_to(port, Duration::from_millis(300)).await;
        let mut d = in_transaction(Setup::with(&router)).await;
        d.play(&[("RCPT TO:<u@one.test>", UNREACHABLE)]).await;
    }
}

#[tokio::test]
async fn a_backend_lost_after_it_accepted_recipients_fails_the_rest_of_the_transaction() {
    let one = BackendStub::start(Mode::DropAtSecondRcpt).await;
    let router = route_one_to(one.port, Duration::from_secs(5)).await;
    let mut d = in_transaction(Setup::with(&router)).await;
    let lost = "451 4.4.1 Error: the mail server connection was lost during this transaction";
    d.play(&[
        ("RCPT TO:<a@one.test>", "250 2.1.5"),
        ("RCPT TO:<b@one.test>", UNREACHABLE),
        ("RCPT TO:<c@one.test>", lost),
        ("DATA", lost),
        // The transaction is over; the next one connects anew.
        ("MAIL FROM:<s@x.test>", "250 2.1.0"),
        ("RCPT TO:<a@one.test>", "250 2.1.5"),
    ])
    .await;
}

#[tokio::test(start_paused = true)]
async fn a_client_that_says_nothing_gets_421_4_4_2() {
    let (mut d, _) = Setup::without_router().start().await;
    d.play(&[("EHLO client.test", "250 ")]).await;
    let r = d.reply().await;
    assert_eq!(r, "421 4.4.2 mx.test Error: timeout exceeded");
    d.ends().await;
}

#[tokio::test(start_paused = true)]
async fn a_transaction_without_a_message_in_time_gets_421_4_4_2() {
    let mut d = in_transaction(Setup::without_router()).await;
    d.play(&[("RSET", "250 2.0.0"), ("MAIL FROM:<s@x.test>", "250 2.1.0")])
        .await;
    let r = d.reply().await;
    assert_eq!(
        r,
        "421 4.4.2 mx.test Error: timeout exceeded, no message completed"
    );
    d.ends().await;
}

#[tokio::test(start_paused = true)]
async fn a_body_that_stops_coming_gets_421_4_4_2() {
    let mut d = in_transaction(Setup::without_router()).await;
    d.play(&[("RCPT TO:<update@mx.test>", "250 2.1.5"), ("DATA", "354 ")])
        .await;
    d.send(b"restart spamwars now\r\n").await;
    let r = d.reply().await;
    assert_eq!(r, "421 4.4.2 mx.test Error: timeout exceeded");
    d.ends().await;
}

#[tokio::test(start_paused = true)]
async fn a_stopping_process_tells_an_idle_session_421_4_3_2() {
    let setup = Setup {
        stopping: true,
        ..Setup::without_router()
    };
    let (d, greeting) = setup.start().await;
    assert!(greeting.starts_with("220 "), "{greeting}");
    let mut d = d;
    let r = d.reply().await;
    assert_eq!(
        r,
        "421 4.3.2 mx.test Service shutting down, closing transmission channel"
    );
    d.ends().await;
}
