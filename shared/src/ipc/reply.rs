//! The head of every reply on postern's own sockets, typed: `status=` and,
//! for a refusal or a failure, `reason=` ([`Outcome`]), after the `id` of a
//! multiplexed socket's request. What a reply carries besides — a route, a
//! verdict, a count, a body — is its socket's business, added to the head
//! ([`crate::ipc::route::Route::to_attrs`], [`crate::ipc::policy::Verdict`]…). This
//! is the only place that spells those two attribute names.

use std::fmt;

use crate::ipc::proto::{Attrs, Status};

const ID: &str = "id";
const STATUS: &str = "status";
pub(super) const REASON: &str = "reason";

/// How a request went, as its reply says it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Done, or found.
    Ok,
    /// Looked up, and there is nothing.
    NotFound,
    /// Refused, and why (may be empty).
    Reject(String),
    /// Could not be done now, and why; try again later.
    TempFail(String),
}

impl Outcome {
    /// A refusal.
    pub fn reject(why: impl fmt::Display) -> Outcome {
        Outcome::Reject(why.to_string())
    }

    /// A temporary failure.
    pub fn tempfail(why: impl fmt::Display) -> Outcome {
        Outcome::TempFail(why.to_string())
    }

    /// Its status word.
    pub fn status(&self) -> Status {
        match self {
            Outcome::Ok => Status::Ok,
            Outcome::NotFound => Status::NotFound,
            Outcome::Reject(_) => Status::Reject,
            Outcome::TempFail(_) => Status::TempFail,
        }
    }

    /// The reason of a refusal or a failure.
    pub fn reason(&self) -> Option<&str> {
        match self {
            Outcome::Reject(r) | Outcome::TempFail(r) => Some(r),
            Outcome::Ok | Outcome::NotFound => None,
        }
    }

    /// The reply to request `id` (`None` on the one-request sockets):
    /// `id=`, `status=`, and `reason=` when there is one.
    pub fn reply(&self, id: Option<&str>) -> Attrs {
        let mut a = Attrs::new();
        if let Some(id) = id {
            a.push_str(ID, id);
        }
        a.push_str(STATUS, self.status().as_str());
        match self.reason() {
            Some(r) if !r.is_empty() => a.with(REASON, r),
            _ => a,
        }
    }

    /// What a reply says; `None` when it has no status this version knows.
    /// A refusal or failure without a reason has an empty one.
    pub fn of(reply: &Attrs) -> Option<Outcome> {
        let reason = || reply.get(REASON).unwrap_or_default().to_string();
        Some(match Status::parse(reply.get(STATUS)?)? {
            Status::Ok => Outcome::Ok,
            Status::NotFound => Outcome::NotFound,
            Status::Reject => Outcome::Reject(reason()),
            Status::TempFail => Outcome::TempFail(reason()),
        })
    }

    /// The reason a reply gives, if any (not empty).
    pub fn reason_in(reply: &Attrs) -> Option<&str> {
        reply.get(REASON).filter(|r| !r.is_empty())
    }

    /// Whether `reply` says `status=notfound`.
    pub fn is_not_found(reply: &Attrs) -> bool {
        matches!(Outcome::of(reply), Some(Outcome::NotFound))
    }

    /// Whether `reply` says `status=ok`.
    pub fn is_ok(reply: &Attrs) -> bool {
        matches!(Outcome::of(reply), Some(Outcome::Ok))
    }
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.status().as_str())?;
        match self.reason() {
            Some(r) if !r.is_empty() => write!(f, ": {r}"),
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_outcome_round_trips_with_and_without_an_id() {
        for o in [
            Outcome::Ok,
            Outcome::NotFound,
            Outcome::reject("too many connections from 192.0.2.1 (50)"),
            Outcome::tempfail("router unavailable"),
            Outcome::reject(""),
        ] {
            for id in [None, Some("7")] {
                let a = o.reply(id);
                assert_eq!(a.get("id"), id);
                assert_eq!(Outcome::of(&a), Some(o.clone()), "{a:?}");
            }
        }
        assert_eq!(Outcome::of(&Attrs::new().with("status", "maybe")), None);
        assert_eq!(Outcome::of(&Attrs::new()), None);
        assert!(Outcome::is_ok(&Outcome::Ok.reply(Some("1"))));
    }
}
