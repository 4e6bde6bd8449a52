use super::*;
use crate::config::Config;

/// A configuration of two servers (one.test, .sub.test on "One"; two.test
/// on "Two") and these `[[alias]]` blocks.
fn config(aliases: &str) -> Config {
    let text = format!(
        r#"
[proxy]
hostname = "mx.test"
[[server]]
name = "One"
host = "localhost"
port = 1025
domains = ["one.test", ".sub.test"]
[[server]]
name = "Two"
host = "localhost"
port = 2025
domains = ["two.test"]
{aliases}"#
    );
    Config::parse(&text).expect("parses")
}

fn table(aliases: &str) -> Aliases {
    let c = config(aliases);
    let problems = c.validate();
    assert!(problems.is_empty(), "{problems:?}");
    Aliases::build(&c.aliases).0
}

fn problems(aliases: &str) -> Vec<String> {
    config(aliases)
        .validate()
        .into_iter()
        .map(|p| p.to_string())
        .collect()
}

fn expand(t: &Aliases, address: &str) -> Option<Vec<String>> {
    let (l, d) = address.rsplit_once('@').expect("an address");
    t.expand(l, &normalize_domain(d)).expect("expands")
}

const SEED_004: &str = r#"
[[alias]]
address = "social@hebergee.test"
to = ["pomme@one.test", "poire@one.test"]
[[alias]]
address = "abuse@hebergee.test"
to = ["postmaster@one.test"]
[[alias]]
address = "@hebergee.test"
to = ["@one.test"]
"#;

#[test]
fn an_address_then_its_domain_as_virtual_5() {
    let t = table(SEED_004);
    assert_eq!(
        expand(&t, "social@hebergee.test"),
        Some(vec!["pomme@one.test".into(), "poire@one.test".into()])
    );
    assert_eq!(
        expand(&t, "abuse@hebergee.test"),
        Some(vec!["postmaster@one.test".into()]),
        "an explicit alias wins over the domain's"
    );
    assert_eq!(
        expand(&t, "Jean.Dupont@HEBERGEE.test."),
        Some(vec!["Jean.Dupont@one.test".into()]),
        "a translation keeps the client's local part as written"
    );
    assert_eq!(
        expand(&t, "SOCIAL@hebergee.test"),
        Some(vec!["pomme@one.test".into(), "poire@one.test".into()]),
        "lookups ignore case"
    );
    assert_eq!(expand(&t, "anyone@one.test"), None, "not an alias domain");
    assert!(t.is_alias_domain("hebergee.test"));
    assert!(!t.is_alias_domain("one.test"));
}

#[test]
fn targets_expand_again_and_each_comes_once() {
    let t = table(
        r#"
[[alias]]
address = "all@one.test"
to = ["staff@one.test", "boss@one.test"]
[[alias]]
address = "staff@one.test"
to = ["ann@one.test", "Boss@one.test", "bob@one.test"]
"#,
    );
    assert_eq!(
        expand(&t, "all@one.test"),
        Some(vec![
            "ann@one.test".into(),
            "Boss@one.test".into(),
            "bob@one.test".into()
        ])
    );
    assert_eq!(expand(&t, "ann@one.test"), None);
}

#[test]
fn an_address_among_its_own_targets_keeps_a_copy() {
    let t = table(
        r#"
[[alias]]
address = "ann@one.test"
to = ["ann@one.test", "archive@one.test"]
"#,
    );
    assert_eq!(
        expand(&t, "ann@one.test"),
        Some(vec!["ann@one.test".into(), "archive@one.test".into()])
    );
}

#[test]
fn loops_are_refused_with_every_alias_of_the_loop_once() {
    let p = problems(
        r#"
[[alias]]
address = "a@one.test"
to = ["b@one.test"]
[[alias]]
address = "b@one.test"
to = ["c@one.test", "a@one.test"]
"#,
    );
    assert_eq!(
        p,
        vec!["alias[1]: a@one.test loops: a@one.test (alias[1]) → b@one.test (alias[2]) → a@one.test"]
    );
    // Through domain translations, for the local parts that matter.
    let p = problems(
        r#"
[[alias]]
address = "@a.test"
to = ["@b.test"]
[[alias]]
address = "x@b.test"
to = ["x@a.test"]
[[alias]]
address = "y@b.test"
to = ["y@one.test"]
"#,
    );
    assert_eq!(p.len(), 2, "{p:?}");
    assert!(
        p[0].contains("x@a.test (alias[1]) → x@b.test (alias[2]) → x@a.test"),
        "{p:?}"
    );
    assert!(
        p[1].contains("<any>@a.test: target <any>@b.test: no [[server]] receives mail for b.test"),
        "{p:?}"
    );
    // A domain onto itself through another.
    let p = problems(
        r#"
[[alias]]
address = "@a.test"
to = ["@b.test"]
[[alias]]
address = "@b.test"
to = ["@a.test"]
"#,
    );
    assert_eq!(p.len(), 1, "{p:?}");
    assert!(p[0].contains("loops"), "{p:?}");
}

#[test]
fn a_translation_into_a_domain_with_aliases_follows_them() {
    let t = table(
        r#"
[[alias]]
address = "@old.test"
to = ["@new.test"]
[[alias]]
address = "sales@new.test"
to = ["ann@one.test"]
[[alias]]
address = "@new.test"
to = ["@one.test"]
"#,
    );
    assert_eq!(
        expand(&t, "sales@old.test"),
        Some(vec!["ann@one.test".into()])
    );
    assert_eq!(
        expand(&t, "bob@old.test"),
        Some(vec!["bob@one.test".into()])
    );
}

#[test]
fn ten_levels_and_no_more() {
    let chain = |n: usize| {
        (0..n)
            .map(|i| {
                format!(
                    "[[alias]]\naddress = \"l{i}@one.test\"\nto = [\"l{}@one.test\"]\n",
                    i + 1
                )
            })
            .collect::<String>()
    };
    let t = table(&chain(MAX_DEPTH));
    assert_eq!(expand(&t, "l0@one.test"), Some(vec!["l10@one.test".into()]));
    let p = problems(&chain(MAX_DEPTH + 1));
    assert_eq!(p.len(), 1, "reported once, from the top: {p:?}");
    assert!(p[0].starts_with("alias[1]: l0@one.test goes through more than 10 aliases"));
}

#[test]
fn every_target_routes_and_one_aliases_targets_share_a_server() {
    let p = problems(
        r#"
[[alias]]
address = "list@one.test"
to = ["ann@one.test", "bob@two.test"]
[[alias]]
address = "fwd@one.test"
to = ["someone@gmail.test"]
[[alias]]
address = "deep@x.sub.test"
to = ["ok@y.sub.test"]
"#,
    );
    assert_eq!(
        p,
        vec![
            "alias[1]: list@one.test: targets on two servers: ann@one.test on server[1] (One), bob@two.test on server[2] (Two); a session's transaction goes to one server",
            "alias[2]: fwd@one.test: target someone@gmail.test: no [[server]] receives mail for gmail.test",
        ]
    );
}

#[test]
fn bad_addresses_and_duplicates_are_named() {
    let p = problems(
        r#"
[[alias]]
address = "social"
to = ["a@one.test"]
[[alias]]
address = "x@one.test"
to = []
[[alias]]
address = "y@one.test"
to = ["@two.test", "\"q\"@one.test"]
[[alias]]
address = "Z@One.test"
to = ["a@one.test"]
[[alias]]
address = "z@one.test"
to = ["b@one.test"]
"#,
    );
    assert_eq!(
        p,
        vec![
            "alias[1].address: \"social\" is not an address such as \"user@example.com\" nor a domain such as \"@example.com\"",
            "alias[2].to: needs at least one address",
            "alias[3].to[0]: \"@two.test\" is a whole domain: only a domain alias (\"@one.test\") may have one",
            "alias[3].to[1]: \"\\\"q\\\"@one.test\": the local part may hold letters, digits, dots and -_+=&'*/?^`{|}~#$ only",
            "alias[5].address: \"z@one.test\" is also the address of alias[4]",
        ]
    );
}

#[test]
fn summaries_name_the_alias_domains() {
    let t = table(SEED_004);
    let c = config(SEED_004);
    let s = t.summaries(&DomainIndex::new(&c.servers));
    assert_eq!(
        s,
        vec![DomainSummary {
            domain: "hebergee.test".into(),
            aliases: 3,
            catch_all: true,
            listed_by: None,
        }]
    );
}

#[test]
fn overlapping_aliases_are_walked_once_each_and_depth_is_checked_on_every_path() {
    // 8 levels of 30 aliases, each standing for all 30 of the next level:
    // 30^8 paths, 240 aliases to walk.
    let mut text = String::new();
    for level in 0..8 {
        for i in 0..30 {
            let to: Vec<String> = (0..30)
                .map(|j| format!("\"l{}x{j}@one.test\"", level + 1))
                .collect();
            text.push_str(&format!(
                "[[alias]]\naddress = \"l{level}x{i}@one.test\"\nto = [{}]\n",
                to.join(", ")
            ));
        }
    }
    let t = table(&text);
    let got = expand(&t, "l0x0@one.test").expect("an alias");
    assert_eq!(got.len(), 30);
    assert_eq!(got[0], "l8x0@one.test");

    // x@ is 8 levels deep; met first from the top (1 + 8), then again
    // under two more aliases (3 + 8 > 10).
    let mut text = String::from(
        "[[alias]]\naddress = \"top@one.test\"\nto = [\"x@one.test\", \"a1@one.test\"]\n\
         [[alias]]\naddress = \"a1@one.test\"\nto = [\"a2@one.test\"]\n\
         [[alias]]\naddress = \"a2@one.test\"\nto = [\"x@one.test\"]\n\
         [[alias]]\naddress = \"x@one.test\"\nto = [\"x1@one.test\"]\n",
    );
    for i in 1..8 {
        text.push_str(&format!(
            "[[alias]]\naddress = \"x{i}@one.test\"\nto = [\"x{}@one.test\"]\n",
            i + 1
        ));
    }
    let p = problems(&text);
    assert!(
        p.iter().any(
            |p| p.starts_with("alias[1]: top@one.test goes through more than 10 aliases")
                && p.contains("a2@one.test (alias[3]) → x@one.test (alias[4]) → …")
        ),
        "{p:?}"
    );
}

#[test]
fn an_alias_must_fit_in_one_transaction_and_one_answer() {
    let c = |to: &[String]| {
        let quoted: Vec<String> = to.iter().map(|t| format!("{t:?}")).collect();
        problems(&format!(
            "[[alias]]\naddress = \"list@one.test\"\nto = [{}]\n",
            quoted.join(", ")
        ))
    };
    let three: Vec<String> = ["a", "b", "c"]
        .iter()
        .map(|l| format!("{l}@one.test"))
        .collect();
    let text = format!(
        "[proxy]\nhostname = \"mx.test\"\nmax_recipients = 2\n[[server]]\nname = \"One\"\nhost = \"h\"\nport = 25\ndomains = [\"one.test\"]\n[[alias]]\naddress = \"list@one.test\"\nto = [{}]\n",
        three.iter().map(|t| format!("{t:?}")).collect::<Vec<_>>().join(", ")
    );
    let p: Vec<String> = Config::parse(&text)
        .expect("parses")
        .validate()
        .into_iter()
        .map(|p| p.to_string())
        .collect();
    assert_eq!(
        p,
        ["alias[1]: list@one.test: expands to 3 addresses, more than proxy.max_recipients (2): a transaction could never take them all"]
    );
    // 1,000 long addresses: more than a route answer carries.
    let long: Vec<String> = (0..1000)
        .map(|i| format!("firstname.lastname.{i:04}@customer-company.one.test"))
        .collect();
    let p = c(&long);
    assert_eq!(p.len(), 1, "{p:?}");
    assert!(
        p[0].contains("more than a route answer carries (49152): split the list"),
        "{p:?}"
    );
    // The same target twice is one target.
    let twice = vec![
        "a@one.test".to_string(),
        "A@one.test".to_string(),
        "a@one.test".to_string(),
    ];
    assert!(c(&twice).is_empty());
}

#[test]
fn address_keys_ignore_case_quotes_and_a_trailing_dot() {
    assert_eq!(address_key("Ann@One.Test."), "ann@one.test");
    assert_eq!(address_key("Ann@ One.Test. "), "ann@one.test");
    assert_eq!(address_key("Åsa@X.test"), "åsa@x.test");
    assert_eq!(address_key("\"A b\"@X.test"), "a b@x.test");
    for a in [
        "Ann@One.Test.",
        "x.Y+z@Sub.Example.ORG",
        "a@b",
        "Q@Ünï.test",
    ] {
        let (l, d) = a.rsplit_once('@').expect("an address");
        assert_eq!(address_key(a), key(l, &normalize_domain(d)), "{a}");
    }
    assert_eq!(address_key("\"ann\"@one.test"), "ann@one.test");
    assert_ne!(address_key("ann@one.test"), address_key("anne@one.test"));
}
