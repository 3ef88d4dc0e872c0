//! Globs the way TensorFlow matches them (`fnmatch` with `FNM_PATHNAME`: `*` and `?`
//! never cross a `/`), and the literal prefix that turns a glob into one List Blobs
//! query instead of TensorFlow's default directory-by-directory walk.

/// The part of `pattern` before its first wildcard (`*`, `?`, `[`, `\`): every match
/// starts with it, so it is the `prefix` of the listing.
pub fn literal_prefix(pattern: &str) -> &str {
    let end = pattern.find(['*', '?', '[', '\\']).unwrap_or(pattern.len());
    &pattern[..end]
}

/// Whether `pattern` has any wildcard.
pub fn is_glob(pattern: &str) -> bool {
    literal_prefix(pattern).len() != pattern.len()
}

/// `fnmatch(pattern, name, FNM_PATHNAME)`: `*` matches any run of characters except
/// `/`, `?` one character except `/`, `[...]`/`[!...]` a class, `\` escapes.
pub fn matches(pattern: &str, name: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let n: Vec<char> = name.chars().collect();
    match_from(&p, &n)
}

fn match_from(p: &[char], n: &[char]) -> bool {
    let (mut pi, mut ni) = (0, 0);
    // Backtracking point of the last `*`: (pattern index after it, name index).
    let mut star: Option<(usize, usize)> = None;
    while ni < n.len() {
        let step = if pi < p.len() {
            match p[pi] {
                '*' => {
                    star = Some((pi + 1, ni));
                    pi += 1;
                    continue;
                }
                '?' if n[ni] != '/' => Some(pi + 1),
                '[' => match class(&p[pi..], n[ni]) {
                    Some((true, len)) => Some(pi + len),
                    Some((false, _)) => None,
                    None if n[ni] == '[' => Some(pi + 1),
                    None => None,
                },
                '\\' if pi + 1 < p.len() && p[pi + 1] == n[ni] => Some(pi + 2),
                c if c != '?' && c != '\\' && c == n[ni] => Some(pi + 1),
                _ => None,
            }
        } else {
            None
        };
        match step {
            Some(next) => {
                pi = next;
                ni += 1;
            }
            // Let the last `*` swallow one more character, unless that is a `/`.
            None => match star {
                Some((sp, sn)) if n[sn] != '/' => {
                    star = Some((sp, sn + 1));
                    pi = sp;
                    ni = sn + 1;
                }
                _ => return false,
            },
        }
    }
    p[pi..].iter().all(|&c| c == '*')
}

/// Matches `c` against the class at the start of `p` (`[...]`). Returns whether it
/// matched and the class's length, or `None` if the class is not closed.
fn class(p: &[char], c: char) -> Option<(bool, usize)> {
    let mut i = 1;
    let negate = matches!(p.get(i), Some('!') | Some('^'));
    if negate {
        i += 1;
    }
    let mut hit = false;
    let mut first = true;
    while i < p.len() {
        if p[i] == ']' && !first {
            return Some((hit != negate && c != '/', i + 1));
        }
        first = false;
        if i + 2 < p.len() && p[i + 1] == '-' && p[i + 2] != ']' {
            hit |= p[i] <= c && c <= p[i + 2];
            i += 3;
        } else {
            hit |= p[i] == c;
            i += 1;
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn literal_prefix_stops_at_the_first_wildcard() {
        assert_eq!(literal_prefix("train/shard-*.tfrecord"), "train/shard-");
        assert_eq!(literal_prefix("train/x?"), "train/x");
        assert_eq!(literal_prefix("a/[0-9]/b"), "a/");
        assert_eq!(literal_prefix("plain/name"), "plain/name");
        assert!(is_glob("a*"));
        assert!(!is_glob("a/b"));
    }

    #[test]
    fn star_and_question_mark_stay_inside_one_segment() {
        assert!(matches(
            "train/shard-*.tfrecord",
            "train/shard-00001.tfrecord"
        ));
        assert!(!matches("train/*.tfrecord", "train/sub/x.tfrecord"));
        assert!(matches("train/*/x", "train/sub/x"));
        assert!(matches("a?c", "abc"));
        assert!(!matches("a?c", "a/c"));
        assert!(matches("*", "anything"));
        assert!(!matches("*", "dir/file"));
        assert!(matches("a*b*c", "aXXbYYc"));
        assert!(!matches("a*b*c", "aXXbYY"));
    }

    #[test]
    fn classes_and_escapes() {
        assert!(matches("shard-[0-2]", "shard-1"));
        assert!(!matches("shard-[0-2]", "shard-7"));
        assert!(matches("shard-[!0-2]", "shard-7"));
        assert!(matches(r"a\*b", "a*b"));
        assert!(!matches(r"a\*b", "aXb"));
    }
}
