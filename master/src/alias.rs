//! `postern alias test ADDRESS` (SPEC §12): what an address stands for and
//! where it goes, from the configuration file — the table the next start
//! or reload applies, the same lookups as the router's
//! (`postern_shared::alias`, `postern_shared::domains`).

use std::path::Path;
use std::process::ExitCode;

use postern_shared::alias::Aliases;
use postern_shared::config::{normalize_domain, Config};
use postern_shared::domains::DomainIndex;
use postern_shared::smtp::{parse_path, Path as SmtpPath};

use crate::cli::AliasCommand;

/// Runs `postern alias …`.
pub fn run(command: AliasCommand, config: &Config, file: &Path) -> ExitCode {
    match command {
        AliasCommand::Test { address } => test(&address, config, file),
    }
}

fn test(address: &str, config: &Config, file: &Path) -> ExitCode {
    let bare = address.trim().trim_start_matches('<').trim_end_matches('>');
    let mailbox = match parse_path(bare, true) {
        Ok(SmtpPath::Mailbox(m)) => m,
        _ => {
            eprintln!("postern: alias: {address:?} is not an address such as user@example.com");
            return ExitCode::from(2);
        }
    };
    let Some(domain) = mailbox.routing_domain() else {
        println!("{bare}: no alias; a route in the address: 554 5.7.1 Relaying denied");
        return ExitCode::FAILURE;
    };
    let (aliases, _) = Aliases::build(&config.aliases);
    let index = DomainIndex::new(&config.servers);
    let server = |d: &str| {
        index.server_of(&normalize_domain(d)).map(|i| {
            let s = &config.servers[i];
            format!("{} ({}:{})", s.display_name(), s.host, s.port)
        })
    };
    let code = match aliases.expand(&mailbox.local, &domain) {
        Ok(Some(targets)) => {
            println!("{bare} is an alias of:");
            for t in &targets {
                println!("  {t}");
            }
            let first = targets.first().and_then(|t| t.rsplit_once('@'));
            match first.and_then(|(_, d)| server(d)) {
                Some(s) => {
                    println!("server: {s}");
                    ExitCode::SUCCESS
                }
                None => {
                    println!("no server receives them: 451 4.3.0");
                    ExitCode::FAILURE
                }
            }
        }
        Ok(None) => match server(&domain) {
            Some(s) => {
                println!("{bare}: no alias");
                println!("server: {s}");
                ExitCode::SUCCESS
            }
            None if aliases.is_alias_domain(&domain) => {
                println!(
                    "{bare}: no alias takes it in alias domain {domain}, and no server lists the domain: 550 5.1.1 User unknown in virtual alias table"
                );
                ExitCode::FAILURE
            }
            None => {
                println!("{bare}: no alias, and no server receives mail for {domain}: 554 5.7.1 Relaying denied");
                ExitCode::FAILURE
            }
        },
        Err(e) => {
            println!("{bare}: the alias {e}");
            ExitCode::FAILURE
        }
    };
    println!("(the aliases of {})", file.display());
    code
}

/// The alias domains and what serves them, as lines of `postern status`
/// and comments at the end of `postern config`'s output (empty without
/// aliases): `DOMAIN  N aliases[, catch-all]  SERVER`, at most
/// [`SHOWN_DOMAINS`] of them.
pub fn domain_lines(config: &Config) -> Vec<String> {
    let (aliases, _) = Aliases::build(&config.aliases);
    let index = DomainIndex::new(&config.servers);
    let all = aliases.summaries(&index);
    let mut out: Vec<String> = all
        .iter()
        .take(SHOWN_DOMAINS)
        .map(|d| {
            let what = format!(
                "{} alias{}{}",
                d.aliases,
                if d.aliases == 1 { "" } else { "es" },
                if d.catch_all { ", catch-all" } else { "" }
            );
            let listed = match d.listed_by {
                Some(i) => format!("other addresses to {}", config.servers[i].display_name()),
                None if d.catch_all => "served by its aliases".to_string(),
                None => "served: other addresses get 550 5.1.1".to_string(),
            };
            format!("{:<28} {what:<24} {listed}", d.domain)
        })
        .collect();
    if all.len() > SHOWN_DOMAINS {
        out.push(format!("… and {} more", all.len() - SHOWN_DOMAINS));
    }
    out
}

/// Alias domains listed at most by `postern status` and `postern config`.
pub const SHOWN_DOMAINS: usize = 50;

/// `postern config`'s closing comment: the alias domains it serves.
pub fn served_domains(config: &Config) -> String {
    let lines = domain_lines(config);
    if lines.is_empty() {
        return String::new();
    }
    let mut text = String::from("\n# Alias domains (served even when no [[server]] lists them):\n");
    for l in lines {
        text.push_str(&format!("# {l}\n"));
    }
    text
}
