//! Leases on blobs and containers (Lease Blob, Lease Container): the state machine
//! of Azure's "Lease Blob" outcome table, and the check every write (and, when
//! a lease id is sent, every read) of a leased resource passes.
//!
//! A lease is `available`, `leased` (for 15–60 s or for ever), `expired`,
//! `breaking` (for its break period) or `broken`. Writes to a leased or breaking
//! resource need its lease id.

use axum::http::{HeaderMap, StatusCode};
use time::{Duration, OffsetDateTime};

use crate::error::StorageError;
use crate::guard::header;

/// What `gate.db` keeps of a lease.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Lease {
    pub(crate) id: String,
    /// `None`: infinite.
    pub(crate) duration: Option<Duration>,
    /// When a fixed-duration lease runs out.
    pub(crate) expires: Option<OffsetDateTime>,
    /// Set once broken: when the break period ends.
    pub(crate) broken_at: Option<OffsetDateTime>,
}

/// The state Azure reports (`x-ms-lease-state`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum State {
    Available,
    Leased,
    Expired,
    Breaking,
    Broken,
}

impl State {
    pub(crate) fn of(lease: Option<&Lease>, now: OffsetDateTime) -> State {
        let Some(l) = lease else {
            return State::Available;
        };
        match l.broken_at {
            Some(at) if at > now => State::Breaking,
            Some(_) => State::Broken,
            None if l.expires.is_some_and(|e| e <= now) => State::Expired,
            None => State::Leased,
        }
    }

    pub(crate) fn as_str(self) -> &'static str {
        match self {
            State::Available => "available",
            State::Leased => "leased",
            State::Expired => "expired",
            State::Breaking => "breaking",
            State::Broken => "broken",
        }
    }

    /// `x-ms-lease-status`.
    pub(crate) fn status(self) -> &'static str {
        match self {
            State::Leased | State::Breaking => "locked",
            _ => "unlocked",
        }
    }

    fn holds(self) -> bool {
        matches!(self, State::Leased | State::Breaking)
    }
}

/// Whether a lease is on a blob or a container, for the error codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum On {
    Blob,
    Container,
}

/// Checks the `x-ms-lease-id` of an operation on a possibly leased resource. A
/// write to a held lease needs its id; any request that sends an id needs it to
/// match a held lease.
pub(crate) fn check(
    lease: Option<&Lease>,
    headers: &HeaderMap,
    write: bool,
    on: On,
    now: OffsetDateTime,
) -> Result<(), StorageError> {
    let state = State::of(lease, now);
    let given = header(headers, "x-ms-lease-id");
    let (mismatch, not_present) = match on {
        On::Blob => (
            "LeaseIdMismatchWithBlobOperation",
            "LeaseNotPresentWithBlobOperation",
        ),
        On::Container => (
            "LeaseIdMismatchWithContainerOperation",
            "LeaseNotPresentWithContainerOperation",
        ),
    };
    match (given, lease.filter(|_| state.holds())) {
        (None, Some(_)) if write => Err(precondition(
            "LeaseIdMissing",
            "There is currently a lease on the resource and no lease ID was specified in the request.",
        )),
        (None, _) => Ok(()),
        (Some(id), Some(l)) if same_id(id, &l.id) => Ok(()),
        (Some(_), Some(_)) => Err(precondition(
            mismatch,
            "The lease ID specified did not match the lease ID for the resource.",
        )),
        (Some(_), None) => Err(precondition(
            not_present,
            "There is currently no lease on the resource.",
        )),
    }
}

fn precondition(code: &'static str, message: &str) -> StorageError {
    StorageError::new(StatusCode::PRECONDITION_FAILED, code, message)
}

fn conflict(code: &'static str, message: &str) -> StorageError {
    StorageError::new(StatusCode::CONFLICT, code, message)
}

/// Lease ids are GUIDs; Azure compares them without regard to case.
fn same_id(a: &str, b: &str) -> bool {
    a.eq_ignore_ascii_case(b)
}

/// What a lease action did: the lease to store (`None`: none), the status to
/// answer with, and the lease id or remaining break time to report.
#[derive(Debug)]
pub(crate) struct Outcome {
    pub(crate) lease: Option<Lease>,
    pub(crate) status: StatusCode,
    pub(crate) lease_id: Option<String>,
    pub(crate) lease_time: Option<i64>,
}

/// Applies `x-ms-lease-action` with its headers to the current lease.
pub(crate) fn act(
    current: Option<&Lease>,
    headers: &HeaderMap,
    now: OffsetDateTime,
) -> Result<Outcome, StorageError> {
    let state = State::of(current, now);
    let action = header(headers, "x-ms-lease-action")
        .ok_or_else(|| StorageError::missing_header("x-ms-lease-action"))?;
    let lease_id = || {
        header(headers, "x-ms-lease-id")
            .ok_or_else(|| StorageError::missing_header("x-ms-lease-id"))
    };
    let not_present = || {
        conflict(
            "LeaseNotPresentWithLeaseOperation",
            "There is currently no lease on the resource.",
        )
    };
    let mismatch = || {
        conflict(
            "LeaseIdMismatchWithLeaseOperation",
            "The lease ID specified did not match the lease ID for the resource.",
        )
    };
    let matches = |id: &str| current.is_some_and(|l| same_id(id, &l.id));
    match action.to_ascii_lowercase().as_str() {
        "acquire" => {
            let duration = parse_duration(headers)?;
            let proposed = match header(headers, "x-ms-proposed-lease-id") {
                Some(p) => guid(p, "x-ms-proposed-lease-id")?,
                None => uuid::Uuid::new_v4().to_string(),
            };
            match state {
                State::Breaking => {
                    return Err(conflict(
                        "LeaseIsBreakingAndCannotBeAcquired",
                        "There is already a lease present and it is being broken.",
                    ));
                }
                State::Leased if !matches(&proposed) => {
                    return Err(conflict(
                        "LeaseAlreadyPresent",
                        "There is already a lease present.",
                    ));
                }
                _ => {}
            }
            let lease = Lease {
                id: proposed.clone(),
                duration,
                expires: duration.map(|d| now + d),
                broken_at: None,
            };
            Ok(Outcome {
                lease: Some(lease),
                status: StatusCode::CREATED,
                lease_id: Some(proposed),
                lease_time: None,
            })
        }
        "renew" => {
            let id = lease_id()?;
            let l = current.ok_or_else(not_present)?;
            if !matches(id) {
                return Err(mismatch());
            }
            if matches!(state, State::Breaking | State::Broken) {
                return Err(conflict(
                    "LeaseIsBrokenAndCannotBeRenewed",
                    "The lease ID matched, but the lease has been broken explicitly and cannot be renewed.",
                ));
            }
            let lease = Lease {
                expires: l.duration.map(|d| now + d),
                ..l.clone()
            };
            Ok(Outcome {
                lease_id: Some(lease.id.clone()),
                lease: Some(lease),
                status: StatusCode::OK,
                lease_time: None,
            })
        }
        "change" => {
            let id = lease_id()?;
            let proposed = guid(
                header(headers, "x-ms-proposed-lease-id")
                    .ok_or_else(|| StorageError::missing_header("x-ms-proposed-lease-id"))?,
                "x-ms-proposed-lease-id",
            )?;
            match state {
                State::Leased => {}
                State::Breaking => {
                    return Err(conflict(
                        "LeaseIsBreakingAndCannotBeChanged",
                        "The lease ID matched, but the lease is currently in breaking state and cannot be changed.",
                    ));
                }
                _ => return Err(not_present()),
            }
            let l = current.ok_or_else(not_present)?;
            if !same_id(id, &l.id) && !same_id(&proposed, &l.id) {
                return Err(mismatch());
            }
            Ok(Outcome {
                lease: Some(Lease {
                    id: proposed.clone(),
                    ..l.clone()
                }),
                status: StatusCode::OK,
                lease_id: Some(proposed),
                lease_time: None,
            })
        }
        "release" => {
            let id = lease_id()?;
            if current.is_none() || state == State::Available {
                return Err(not_present());
            }
            if !matches(id) {
                return Err(mismatch());
            }
            Ok(Outcome {
                lease: None,
                status: StatusCode::OK,
                lease_id: None,
                lease_time: None,
            })
        }
        "break" => {
            let period = match header(headers, "x-ms-lease-break-period") {
                None => None,
                Some(v) => match v.parse::<i64>() {
                    Ok(s) if (0..=60).contains(&s) => Some(Duration::seconds(s)),
                    _ => {
                        return Err(StorageError::invalid_header_value(
                            "x-ms-lease-break-period",
                            v,
                        ));
                    }
                },
            };
            let l = match state {
                State::Available | State::Expired => return Err(not_present()),
                _ => current.ok_or_else(not_present)?,
            };
            // A break ends at the earlier of the period asked for and what the
            // lease has left; an infinite lease without a period breaks at once.
            let remaining = match (l.broken_at, l.expires) {
                (Some(at), _) => at - now,
                (None, Some(e)) => e - now,
                (None, None) => Duration::ZERO,
            }
            .max(Duration::ZERO);
            let wait = period.map_or(remaining, |p| p.min(remaining));
            let broken_at = now + wait;
            Ok(Outcome {
                lease: Some(Lease {
                    broken_at: Some(broken_at),
                    ..l.clone()
                }),
                status: StatusCode::ACCEPTED,
                lease_id: None,
                lease_time: Some(wait.whole_seconds()),
            })
        }
        other => Err(StorageError::invalid_header_value(
            "x-ms-lease-action",
            other,
        )),
    }
}

/// `x-ms-lease-duration`: -1 (infinite) or 15 to 60 seconds.
fn parse_duration(headers: &HeaderMap) -> Result<Option<Duration>, StorageError> {
    let v = header(headers, "x-ms-lease-duration")
        .ok_or_else(|| StorageError::missing_header("x-ms-lease-duration"))?;
    match v.parse::<i64>() {
        Ok(-1) => Ok(None),
        Ok(s) if (15..=60).contains(&s) => Ok(Some(Duration::seconds(s))),
        _ => Err(StorageError::invalid_header_value("x-ms-lease-duration", v)
            .detail("Reason", "a lease lasts -1 (infinite) or 15 to 60 seconds")),
    }
}

fn guid(value: &str, name: &str) -> Result<String, StorageError> {
    uuid::Uuid::parse_str(value)
        .map(|u| u.to_string())
        .map_err(|_| StorageError::invalid_header_value(name, value))
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    const T0: OffsetDateTime = datetime!(2026-06-01 12:00 UTC);
    const A: &str = "11111111-1111-1111-1111-111111111111";
    const B: &str = "22222222-2222-2222-2222-222222222222";

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, v.parse().unwrap());
        }
        h
    }

    fn acquire(id: &str, secs: &str) -> Lease {
        act(
            None,
            &headers(&[
                ("x-ms-lease-action", "acquire"),
                ("x-ms-lease-duration", secs),
                ("x-ms-proposed-lease-id", id),
            ]),
            T0,
        )
        .unwrap()
        .lease
        .unwrap()
    }

    fn code(r: Result<Outcome, StorageError>) -> (u16, &'static str) {
        let e = r.unwrap_err();
        (e.status.as_u16(), e.code)
    }

    #[test]
    fn acquire_renew_change_release() {
        let lease = acquire(A, "15");
        assert_eq!(State::of(Some(&lease), T0), State::Leased);
        assert_eq!(
            State::of(Some(&lease), T0 + Duration::seconds(15)),
            State::Expired
        );
        let again = headers(&[
            ("x-ms-lease-action", "acquire"),
            ("x-ms-lease-duration", "-1"),
            ("x-ms-proposed-lease-id", B),
        ]);
        assert_eq!(
            code(act(Some(&lease), &again, T0)),
            (409, "LeaseAlreadyPresent")
        );
        // An expired lease can be taken by someone else.
        assert!(act(Some(&lease), &again, T0 + Duration::seconds(20)).is_ok());

        let renew = |id| headers(&[("x-ms-lease-action", "renew"), ("x-ms-lease-id", id)]);
        let renewed = act(Some(&lease), &renew(A), T0 + Duration::seconds(10)).unwrap();
        assert_eq!(
            renewed.lease.unwrap().expires,
            Some(T0 + Duration::seconds(25))
        );
        assert_eq!(
            code(act(Some(&lease), &renew(B), T0)),
            (409, "LeaseIdMismatchWithLeaseOperation")
        );
        assert_eq!(
            code(act(None, &renew(A), T0)),
            (409, "LeaseNotPresentWithLeaseOperation")
        );

        let change = headers(&[
            ("x-ms-lease-action", "change"),
            ("x-ms-lease-id", A),
            ("x-ms-proposed-lease-id", B),
        ]);
        let changed = act(Some(&lease), &change, T0).unwrap();
        assert_eq!(changed.lease_id.as_deref(), Some(B));

        let release = headers(&[("x-ms-lease-action", "release"), ("x-ms-lease-id", A)]);
        assert!(act(Some(&lease), &release, T0).unwrap().lease.is_none());
        assert_eq!(
            code(act(None, &release, T0)),
            (409, "LeaseNotPresentWithLeaseOperation")
        );
        assert_eq!(
            code(act(
                None,
                &headers(&[
                    ("x-ms-lease-action", "acquire"),
                    ("x-ms-lease-duration", "10")
                ]),
                T0
            )),
            (400, "InvalidHeaderValue")
        );
    }

    #[test]
    fn breaking_and_broken_leases() {
        let infinite = acquire(A, "-1");
        let brk = |period: Option<&str>| {
            let mut h = headers(&[("x-ms-lease-action", "break")]);
            if let Some(p) = period {
                h.insert("x-ms-lease-break-period", p.parse().unwrap());
            }
            h
        };
        let now = act(Some(&infinite), &brk(None), T0).unwrap();
        assert_eq!((now.status.as_u16(), now.lease_time), (202, Some(0)));
        assert_eq!(State::of(now.lease.as_ref(), T0), State::Broken);

        let fixed = acquire(A, "60");
        let breaking = act(Some(&fixed), &brk(Some("10")), T0)
            .unwrap()
            .lease
            .unwrap();
        assert_eq!(
            State::of(Some(&breaking), T0 + Duration::seconds(5)),
            State::Breaking
        );
        assert_eq!(
            State::of(Some(&breaking), T0 + Duration::seconds(10)),
            State::Broken
        );
        let renew = headers(&[("x-ms-lease-action", "renew"), ("x-ms-lease-id", A)]);
        assert_eq!(
            code(act(Some(&breaking), &renew, T0)),
            (409, "LeaseIsBrokenAndCannotBeRenewed")
        );
        let acquire_b = headers(&[
            ("x-ms-lease-action", "acquire"),
            ("x-ms-lease-duration", "-1"),
            ("x-ms-proposed-lease-id", B),
        ]);
        assert_eq!(
            code(act(Some(&breaking), &acquire_b, T0)),
            (409, "LeaseIsBreakingAndCannotBeAcquired")
        );
        assert!(act(Some(&breaking), &acquire_b, T0 + Duration::seconds(11)).is_ok());
    }

    #[test]
    fn operations_on_leased_resources() {
        let lease = acquire(A, "-1");
        let none = headers(&[]);
        let with = |id| headers(&[("x-ms-lease-id", id)]);
        let err = |r: Result<(), StorageError>| r.unwrap_err().code;
        assert_eq!(
            err(check(Some(&lease), &none, true, On::Blob, T0)),
            "LeaseIdMissing"
        );
        assert!(
            check(Some(&lease), &none, false, On::Blob, T0).is_ok(),
            "reads need no id"
        );
        assert!(check(Some(&lease), &with(A), true, On::Blob, T0).is_ok());
        assert_eq!(
            err(check(Some(&lease), &with(B), true, On::Blob, T0)),
            "LeaseIdMismatchWithBlobOperation"
        );
        assert_eq!(
            err(check(None, &with(A), false, On::Container, T0)),
            "LeaseNotPresentWithContainerOperation"
        );
        assert!(check(None, &none, true, On::Blob, T0).is_ok());
    }
}
