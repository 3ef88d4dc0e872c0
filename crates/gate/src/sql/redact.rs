//! Statement text for the audit log with every literal replaced by `?`: string
//! constants (`'..'`, `E'..'`, `B'..'`, `X'..'`, `N'..'`, `U&'..'`), dollar-quoted
//! strings, and numbers. Comments are dropped (they can carry anything); quoted
//! identifiers, keywords and `$n` parameters stay, so the statement's shape is
//! readable. Unterminated literals are redacted to the end.

/// Longest statement text kept in a record; the rest is cut, with its length noted.
pub(crate) const MAX_STATEMENT_CHARS: usize = 4096;

/// A statement as the audit sees it: the text to record (redacted unless `full`)
/// and whether it only reads.
pub(crate) fn inspect(sql: &str, full: bool) -> (String, bool) {
    let redacted = redact_all(sql);
    let reads = reads_only(&redacted);
    let text = if full { sql.to_owned() } else { redacted };
    (truncate(text), reads)
}

/// Keywords that start a statement which only reads.
const READ_STATEMENTS: [&str; 5] = ["SELECT", "WITH", "VALUES", "TABLE", "SHOW"];
/// Keywords that make a reading statement write: a data-modifying CTE, `SELECT
/// INTO` (creates a table), row locks (`FOR UPDATE`).
const WRITING_WORDS: [&str; 5] = ["INSERT", "UPDATE", "DELETE", "MERGE", "INTO"];

/// Whether every statement in `redacted` (comments gone, literals `?`) starts
/// with a reading keyword and none names a writing one. Conservative: a quoted
/// identifier spelled like a keyword counts. A function a SELECT calls may still
/// write (`nextval`); the gate does not look inside functions.
fn reads_only(redacted: &str) -> bool {
    let mut any = false;
    for statement in redacted.split(';') {
        let mut words = statement
            .split(|c: char| !is_ident(c))
            .filter(|w| !w.is_empty());
        let Some(first) = words.next() else { continue };
        let is = |w: &str, set: &[&str]| set.iter().any(|k| w.eq_ignore_ascii_case(k));
        if !is(first, &READ_STATEMENTS) || words.any(|w| is(w, &WRITING_WORDS)) {
            return false;
        }
        any = true;
    }
    any
}

fn truncate(text: String) -> String {
    match text.char_indices().nth(MAX_STATEMENT_CHARS) {
        Some((cut, _)) => format!("{}… ({} bytes in all)", &text[..cut], text.len()),
        None => text,
    }
}

fn is_ident(c: char) -> bool {
    c.is_alphanumeric() || c == '_' || c == '$'
}

fn redact_all(sql: &str) -> String {
    let chars: Vec<char> = sql.chars().collect();
    let mut out = String::with_capacity(sql.len());
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let next = chars.get(i + 1).copied();
        let prev_ident = i > 0 && is_ident(chars[i - 1]);
        match c {
            '-' if next == Some('-') => {
                while i < chars.len() && chars[i] != '\n' {
                    i += 1;
                }
                out.push(' ');
            }
            '/' if next == Some('*') => {
                // Block comments nest in PostgreSQL.
                let mut depth = 0;
                while i < chars.len() {
                    if chars[i] == '/' && chars.get(i + 1) == Some(&'*') {
                        depth += 1;
                        i += 2;
                    } else if chars[i] == '*' && chars.get(i + 1) == Some(&'/') {
                        depth -= 1;
                        i += 2;
                        if depth == 0 {
                            break;
                        }
                    } else {
                        i += 1;
                    }
                }
                out.push(' ');
            }
            '\'' => {
                // A one-letter prefix (E, B, X, N) or U& belongs to the literal.
                let escapes = strip_prefix(&mut out);
                i = skip_quoted(&chars, i + 1, escapes);
                out.push('?');
            }
            '"' => {
                let end = skip_identifier(&chars, i + 1);
                out.extend(&chars[i..end]);
                i = end;
            }
            '$' if !prev_ident => match dollar_tag(&chars, i) {
                Some(tag_len) => {
                    i = skip_dollar(&chars, i, tag_len);
                    out.push('?');
                }
                None => {
                    // `$1`: a parameter, not a literal.
                    out.push('$');
                    i += 1;
                    while i < chars.len() && chars[i].is_ascii_digit() {
                        out.push(chars[i]);
                        i += 1;
                    }
                }
            },
            d if (d.is_ascii_digit() || (d == '.' && next.is_some_and(|n| n.is_ascii_digit())))
                && !prev_ident =>
            {
                while i < chars.len() {
                    let ch = chars[i];
                    let exponent_sign =
                        (ch == '+' || ch == '-') && i > 0 && matches!(chars[i - 1], 'e' | 'E');
                    if ch.is_ascii_alphanumeric() || ch == '.' || ch == '_' || exponent_sign {
                        i += 1;
                    } else {
                        break;
                    }
                }
                out.push('?');
            }
            _ => {
                out.push(c);
                i += 1;
            }
        }
    }
    out
}

/// Removes a string prefix (`E`, `B`, `X`, `N`, `U&`) just written to `out`, when
/// it stands alone; says whether backslash escapes apply (`E'..'`).
fn strip_prefix(out: &mut String) -> bool {
    let standalone = |s: &str| !s.chars().next_back().is_some_and(is_ident);
    if let Some(head) = out.strip_suffix("U&").or_else(|| out.strip_suffix("u&"))
        && standalone(head)
    {
        let len = head.len();
        out.truncate(len);
        return false;
    }
    if let Some(last) = out.chars().next_back()
        && matches!(last.to_ascii_uppercase(), 'E' | 'B' | 'X' | 'N')
        && standalone(&out[..out.len() - 1])
    {
        out.pop();
        return last.eq_ignore_ascii_case(&'e');
    }
    false
}

/// The index after the closing quote of a string starting at `i` (`''` is a quote
/// inside; with `escapes`, so is `\'`).
fn skip_quoted(chars: &[char], mut i: usize, escapes: bool) -> usize {
    while i < chars.len() {
        match chars[i] {
            '\\' if escapes => i += 2,
            '\'' if chars.get(i + 1) == Some(&'\'') => i += 2,
            '\'' => return i + 1,
            _ => i += 1,
        }
    }
    chars.len()
}

fn skip_identifier(chars: &[char], mut i: usize) -> usize {
    while i < chars.len() {
        if chars[i] == '"' {
            if chars.get(i + 1) == Some(&'"') {
                i += 2;
                continue;
            }
            return i + 1;
        }
        i += 1;
    }
    chars.len()
}

/// The length of a dollar-quote tag (`$$`, `$body$`) starting at `i`.
fn dollar_tag(chars: &[char], i: usize) -> Option<usize> {
    let mut j = i + 1;
    if chars.get(j).is_some_and(|c| c.is_ascii_digit()) {
        return None;
    }
    while j < chars.len() && (chars[j].is_alphanumeric() || chars[j] == '_') {
        j += 1;
    }
    (chars.get(j) == Some(&'$')).then_some(j + 1 - i)
}

fn skip_dollar(chars: &[char], i: usize, tag_len: usize) -> usize {
    let tag = &chars[i..i + tag_len];
    let mut j = i + tag_len;
    while j + tag_len <= chars.len() {
        if &chars[j..j + tag_len] == tag {
            return j + tag_len;
        }
        j += 1;
    }
    chars.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn literals_and_comments_are_redacted_and_the_shape_stays() {
        let cases = [
            (
                "SELECT * FROM labels WHERE name = 'hunter2' AND id = 42",
                "SELECT * FROM labels WHERE name = ? AND id = ?",
            ),
            ("select 'it''s', E'a\\'b', 3.5e-3, .5", "select ?, ?, ?, ?"),
            (
                "INSERT INTO \"Weird\"\"Table\" VALUES ($1, $2) -- secret note\n",
                "INSERT INTO \"Weird\"\"Table\" VALUES ($1, $2)  \n",
            ),
            (
                "SELECT $$dollar secret$$, $tag$ x $$ y $tag$ /* c /* nested */ secret */",
                "SELECT ?, ?  ",
            ),
            (
                "SELECT x'1F', B'101', N'n', U&'d\\0061t', t2.c1 FROM t2",
                "SELECT ?, ?, ?, ?, t2.c1 FROM t2",
            ),
            ("SELECT e FROM t WHERE e='x'", "SELECT e FROM t WHERE e=?"),
            ("SELECT 'unterminated secret", "SELECT ?"),
        ];
        for (sql, want) in cases {
            assert_eq!(inspect(sql, false).0, want, "{sql}");
        }
    }

    #[test]
    fn only_statements_that_cannot_write_count_as_reads() {
        let reads = [
            "SELECT abalance FROM pgbench_accounts WHERE aid = $1",
            "  select 1; SELECT 2;",
            "WITH x AS (SELECT 1) SELECT * FROM x",
            "VALUES (1), (2)",
            "TABLE labels",
            "SHOW server_version",
            "/* DELETE */ SELECT 'UPDATE it' -- INSERT",
        ];
        for sql in reads {
            assert!(inspect(sql, false).1, "{sql}");
        }
        let writes = [
            "INSERT INTO t VALUES (1)",
            "SELECT 1; DELETE FROM t",
            "WITH gone AS (DELETE FROM t RETURNING *) SELECT * FROM gone",
            "SELECT * INTO copy_of_t FROM t",
            "SELECT * FROM t FOR UPDATE",
            "update t set x = 1",
            "EXPLAIN ANALYZE DELETE FROM t",
            "BEGIN",
            "",
            ";",
        ];
        for sql in writes {
            assert!(!inspect(sql, false).1, "{sql}");
        }
        // The full-text option records the text as sent, and classifies the same.
        assert_eq!(inspect("SELECT 'x'", true), ("SELECT 'x'".to_owned(), true));
    }

    #[test]
    fn long_statements_are_cut_with_their_length_noted() {
        let sql = format!("SELECT {}", "a,".repeat(5000));
        let kept = inspect(&sql, true).0;
        assert!(kept.ends_with(&format!("({} bytes in all)", sql.len())));
        assert!(kept.chars().count() < MAX_STATEMENT_CHARS + 40);
    }
}
