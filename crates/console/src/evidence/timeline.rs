//! Events per time bucket: what the charts draw. The bucket is the smallest of
//! 1 s, 2 s, 5 s, … 1 day that keeps the chart at 60 bars or fewer.

use std::collections::BTreeMap;

use entraflow_audit::{EventType, Timestamp};
use serde::Serialize;

use super::Item;
use super::index::is_denial;
use super::run::{RunPrincipal, TokenView};

const BUCKETS: [i64; 17] = [
    1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 21_600, 43_200, 86_400,
];
const MAX_BARS: i64 = 60;

/// One line or bar series.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Series {
    /// Legend text.
    pub(crate) label: String,
    /// `read`, `write`, `deny`, `sql`, `token`, or `principal`: picks the colour.
    pub(crate) kind: &'static str,
    pub(crate) data: Vec<u64>,
}

/// Counts (and bytes) per bucket.
#[derive(Debug, Clone, Default, Serialize)]
pub(crate) struct Timeline {
    /// Bucket start times, as the x axis shows them (UTC).
    pub(crate) labels: Vec<String>,
    /// The bucket width in seconds.
    pub(crate) bucket_seconds: i64,
    /// What the x axis says it is.
    pub(crate) x_title: String,
    /// Requests per bucket, by kind.
    pub(crate) counts: Vec<Series>,
    /// Bytes per bucket, read and written.
    pub(crate) bytes: Vec<Series>,
}

impl Timeline {
    /// Whether there is anything to draw.
    pub(crate) fn is_empty(&self) -> bool {
        self.counts
            .iter()
            .chain(&self.bytes)
            .all(|s| s.data.iter().all(|v| *v == 0))
    }

    /// The chart's data as JSON, for a `<script type="application/json">`.
    pub(crate) fn to_json(&self) -> String {
        script_json(self)
    }

    /// Reads, writes, SQL statements, denials and token exchanges of `items`.
    pub(crate) fn of_accesses(items: &[Item]) -> Timeline {
        let times: Vec<Timestamp> = items.iter().map(|i| i.record.event.time).collect();
        let Some(mut t) = Frame::new(&times) else {
            return Timeline::default();
        };
        let kinds = [
            ("read", "reads (allowed)"),
            ("write", "writes and deletes (allowed)"),
            ("sql", "SQL statements (allowed)"),
            ("deny", "denied"),
            ("token", "tokens issued"),
        ];
        let mut counts: BTreeMap<&str, Vec<u64>> =
            kinds.iter().map(|(k, _)| (*k, vec![0; t.n])).collect();
        let mut read_bytes = vec![0; t.n];
        let mut write_bytes = vec![0; t.n];
        for item in items {
            let e = &item.record.event;
            let b = t.bucket(e.time);
            let kind = if is_denial(item) {
                "deny"
            } else if e.event_type.is_data_write() {
                write_bytes[b] += e.bytes.unwrap_or(0);
                "write"
            } else if matches!(
                e.event_type,
                EventType::BlobRead | EventType::BlobList | EventType::ContainerList
            ) {
                read_bytes[b] += e.bytes.unwrap_or(0);
                "read"
            } else if e.event_type.as_str() == "sql.statement" {
                "sql"
            } else if e.event_type == EventType::TokenIssued {
                "token"
            } else {
                continue;
            };
            counts.get_mut(kind).expect("a known kind")[b] += 1;
        }
        t.timeline.counts = kinds
            .iter()
            .map(|(k, label)| Series {
                label: (*label).to_owned(),
                kind: k,
                data: counts.remove(k).unwrap_or_default(),
            })
            .filter(|s| {
                s.data.iter().any(|v| *v > 0) || matches!(s.kind, "read" | "write" | "deny")
            })
            .collect();
        t.timeline.bytes = vec![
            Series {
                label: "bytes read".into(),
                kind: "read",
                data: read_bytes,
            },
            Series {
                label: "bytes written".into(),
                kind: "write",
                data: write_bytes,
            },
        ];
        t.timeline
    }

    /// Tokens issued per principal.
    pub(crate) fn of_tokens(tokens: &[TokenView], principals: &[RunPrincipal]) -> Timeline {
        let issued: Vec<&TokenView> = tokens
            .iter()
            .filter(|t| t.event_type == "token.issued")
            .collect();
        let times: Vec<Timestamp> = issued.iter().map(|t| t.time).collect();
        let Some(mut t) = Frame::new(&times) else {
            return Timeline::default();
        };
        let mut per: BTreeMap<&str, Vec<u64>> = BTreeMap::new();
        for token in &issued {
            let b = t.bucket(token.time);
            per.entry(token.label.as_str())
                .or_insert_with(|| vec![0; t.n])[b] += 1;
        }
        t.timeline.counts = per
            .into_iter()
            .map(|(label, data)| Series {
                label: principals
                    .iter()
                    .find(|p| p.label == label)
                    .and_then(|p| p.name.clone())
                    .unwrap_or_else(|| label.to_owned()),
                kind: "principal",
                data,
            })
            .collect();
        t.timeline
    }
}

/// `value` as JSON for a `<script type="application/json">`: `<` escaped, so
/// no record text can close the script element.
pub(crate) fn script_json(value: &impl Serialize) -> String {
    serde_json::to_string(value)
        .unwrap_or_else(|_| "{}".into())
        .replace('<', "\\u003c")
}

/// The buckets over a set of times.
struct Frame {
    start: i64,
    width: i64,
    n: usize,
    timeline: Timeline,
}

impl Frame {
    fn new(times: &[Timestamp]) -> Option<Frame> {
        let secs = |t: &Timestamp| t.as_offset_date_time().unix_timestamp();
        let first = times.iter().map(secs).min()?;
        let last = times.iter().map(secs).max()?;
        let span = last - first + 1;
        let width = BUCKETS
            .iter()
            .copied()
            .find(|w| (span + w - 1) / w <= MAX_BARS)
            .unwrap_or((span + MAX_BARS - 1) / MAX_BARS);
        let start = first - first.rem_euclid(width);
        let n = ((last - start) / width + 1) as usize;
        let long = span > 86_400;
        let labels = (0..n)
            .map(|i| {
                let t = time::OffsetDateTime::from_unix_timestamp(start + i as i64 * width)
                    .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
                if long {
                    format!(
                        "{:02}-{:02} {:02}:{:02}",
                        u8::from(t.month()),
                        t.day(),
                        t.hour(),
                        t.minute()
                    )
                } else {
                    format!("{:02}:{:02}:{:02}", t.hour(), t.minute(), t.second())
                }
            })
            .collect();
        let unit = match width {
            w if w < 60 => format!("{w} s"),
            w if w < 3600 => format!("{} min", w / 60),
            w if w < 86_400 => format!("{} h", w / 3600),
            w => format!("{} d", w / 86_400),
        };
        Some(Frame {
            start,
            width,
            n,
            timeline: Timeline {
                labels,
                bucket_seconds: width,
                x_title: format!("time (UTC), {unit} per bar"),
                counts: Vec::new(),
                bytes: Vec::new(),
            },
        })
    }

    fn bucket(&self, t: Timestamp) -> usize {
        let s = t.as_offset_date_time().unix_timestamp();
        (((s - self.start) / self.width).max(0) as usize).min(self.n - 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_keep_the_chart_at_sixty_bars_or_fewer() {
        let t0: Timestamp = "2026-11-26T10:00:00Z".parse().unwrap();
        let t1: Timestamp = "2026-11-26T10:03:07Z".parse().unwrap();
        let f = Frame::new(&[t1, t0]).unwrap();
        assert_eq!(f.width, 5);
        assert!(f.n as i64 <= MAX_BARS);
        assert_eq!(f.timeline.labels[0], "10:00:00");
        assert_eq!(f.bucket(t1), f.n - 1);
        assert!(Frame::new(&[]).is_none());
    }
}
