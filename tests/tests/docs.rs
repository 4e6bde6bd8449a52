//! The documentation stands alone: a clone of the repository (or the
//! installed package's `/usr/share/doc/postern`) has everything it refers
//! to, and `conf/postern.toml` — the reference of every key — is valid and
//! complete.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use postern_tests::*;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .canonicalize()
        .expect("workspace root")
}

/// The files a reader of the repository reads.
fn documents() -> Vec<PathBuf> {
    let root = root();
    let mut files = vec![root.join("README.md"), root.join("ARCHITECTURE.md")];
    for dir in ["docs", "conf", "bench", "examples", "systemd", "packaging"] {
        let mut found: Vec<PathBuf> = std::fs::read_dir(root.join(dir))
            .unwrap_or_else(|e| panic!("{dir}: {e}"))
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.is_file())
            .collect();
        found.sort();
        files.extend(found);
    }
    files
}

/// The targets of the Markdown links `[text](target)` in `text`.
fn links(text: &str) -> Vec<String> {
    text.split("](")
        .skip(1)
        .filter_map(|rest| rest.split_once(')').map(|(t, _)| t.trim().to_string()))
        .collect()
}

#[test]
fn no_document_points_outside_the_repository() {
    let root = root();
    let mut bad = Vec::new();
    let mut checked = 0;
    for file in documents() {
        let Ok(text) = std::fs::read_to_string(&file) else {
            continue; // not text
        };
        let name = file.strip_prefix(&root).expect("inside").display();
        for needle in ["../shared", "shared/SPEC", "shared/research", "/work/"] {
            if text.contains(needle) {
                bad.push(format!("{name}: mentions {needle}"));
            }
        }
        if file.extension().is_some_and(|e| e == "md") {
            for target in links(&text) {
                if target.contains("://")
                    || target.starts_with('#')
                    || target.starts_with("mailto:")
                {
                    continue;
                }
                checked += 1;
                let path = target.split('#').next().unwrap_or_default();
                let resolved = file.parent().expect("dir").join(path).canonicalize();
                match resolved {
                    Ok(p) if p.starts_with(&root) => {}
                    Ok(p) => bad.push(format!(
                        "{name}: {target} leaves the repository ({})",
                        p.display()
                    )),
                    Err(_) => bad.push(format!("{name}: {target} does not exist")),
                }
            }
        }
    }
    assert!(bad.is_empty(), "{}", bad.join("\n"));
    // README and docs/ link each other: a parser finding nothing is broken.
    assert!(checked > 20, "only {checked} links found");
}

/// `section.key` for each `key = …` line of a TOML text, `[[server]]` keys
/// as `server.key`.
fn keys(toml: &str) -> BTreeSet<String> {
    let mut section = String::new();
    let mut out = BTreeSet::new();
    for line in toml.lines().map(str::trim) {
        if let Some(s) = line.strip_prefix("[[").and_then(|l| l.strip_suffix("]]")) {
            section = s.to_string();
        } else if let Some(s) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            section = s.to_string();
        } else if let Some((key, _)) = line.split_once(" = ") {
            if !key.starts_with('#') {
                out.insert(format!("{section}.{key}"));
            }
        }
    }
    out
}

#[test]
fn conf_postern_toml_is_valid_with_its_commented_keys_and_names_every_key() {
    let conf = std::fs::read_to_string(root().join("conf/postern.toml")).expect("conf");
    // Uncomment what is commented out as a key or a table ("#key = …",
    // "#[tls]"), not the prose ("# Offer AUTH …").
    let all: String = conf
        .lines()
        .map(|l| match l.strip_prefix('#') {
            Some(rest)
                if rest.starts_with('[')
                    || rest.split_once(" = ").is_some_and(|(k, _)| {
                        k.chars()
                            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
                    }) =>
            {
                rest
            }
            _ => l,
        })
        .fold(String::new(), |mut s, l| {
            s.push_str(l);
            s.push('\n');
            s
        });
    assert!(
        all.contains("\n[tls]\n") && all.contains("\n[metrics]\n"),
        "{all}"
    );

    // What depends on the machine points at what exists here: a certificate
    // made for the test, the built workers, the user running the test.
    let dir = TempDir::new("docs-conf");
    let out = Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
        ])
        .args(["-nodes", "-days", "1", "-subj", "/CN=mx.example.net"])
        .arg("-keyout")
        .arg(dir.path("key.pem"))
        .arg("-out")
        .arg(dir.path("cert.pem"))
        .stdin(Stdio::null())
        .output()
        .expect("openssl (tests/run installs it)");
    assert!(out.status.success(), "{out:?}");
    let me = nix::unistd::User::from_uid(nix::unistd::geteuid())
        .expect("lookup")
        .expect("the test's user")
        .name;
    let all = all
        .replace(
            "/etc/postern/tls/fullchain.pem",
            &dir.path("cert.pem").display().to_string(),
        )
        .replace(
            "/etc/postern/tls/key.pem",
            &dir.path("key.pem").display().to_string(),
        )
        .replace(
            "daemon_dir = \"/usr/lib/postern\"",
            &format!("daemon_dir = {:?}", bin_dir().display().to_string()),
        )
        .replace("user = \"postern\"", &format!("user = {me:?}"));
    let path = dir.path("all.toml");
    std::fs::write(&path, &all).expect("write");

    let run = |cmd: &str| {
        let out = Command::new(bin("postern"))
            .arg("-c")
            .arg(&path)
            .arg(cmd)
            .env_remove("POSTERN_CONFIG")
            .stdin(Stdio::null())
            .output()
            .expect("postern");
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let err = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(
            out.status.success(),
            "postern {cmd} on conf/postern.toml uncommented:\n{err}\n{all}"
        );
        text
    };
    run("check");
    // Every key the effective configuration has (defaults filled in) is
    // named in conf/postern.toml.
    let effective = keys(&run("config"));
    assert!(
        effective.contains("proxy.listen") && effective.len() > 20,
        "postern config read as {effective:?}"
    );
    let named = keys(&all);
    let missing: Vec<&String> = effective.difference(&named).collect();
    assert!(missing.is_empty(), "not in conf/postern.toml: {missing:?}");
}
