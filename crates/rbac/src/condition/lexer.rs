//! Tokens of Azure's role assignment condition language.

use super::ConditionError;

#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Tok {
    LParen,
    RParen,
    LBrace,
    RBrace,
    Comma,
    Colon,
    /// `!`
    Bang,
    /// `&&`
    AndAnd,
    /// `||`
    OrOr,
    /// A bare word: `AND`, `ActionMatches`, `StringLike`, `ForAnyOfAnyValues`, ...
    Word(String),
    /// `@Source[name]`
    Attribute {
        source: String,
        name: String,
    },
    /// `'text'`
    Str(String),
}

impl Tok {
    /// How the token reads in an error message.
    pub(super) fn describe(&self) -> String {
        match self {
            Tok::LParen => "'('".into(),
            Tok::RParen => "')'".into(),
            Tok::LBrace => "'{'".into(),
            Tok::RBrace => "'}'".into(),
            Tok::Comma => "','".into(),
            Tok::Colon => "':'".into(),
            Tok::Bang => "'!'".into(),
            Tok::AndAnd => "'&&'".into(),
            Tok::OrOr => "'||'".into(),
            Tok::Word(w) => format!("'{w}'"),
            Tok::Attribute { source, name } => format!("'@{source}[{name}]'"),
            Tok::Str(s) => format!("the string '{s}'"),
        }
    }
}

#[derive(Debug, Clone)]
pub(super) struct Token {
    pub(super) tok: Tok,
    /// Byte offset of the token's first character.
    pub(super) at: usize,
}

pub(super) fn lex(src: &str) -> Result<Vec<Token>, ConditionError> {
    let bytes = src.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        let c = bytes[i];
        let start = i;
        let simple = match c {
            b'(' => Some(Tok::LParen),
            b')' => Some(Tok::RParen),
            b'{' => Some(Tok::LBrace),
            b'}' => Some(Tok::RBrace),
            b',' => Some(Tok::Comma),
            b':' => Some(Tok::Colon),
            b'!' => Some(Tok::Bang),
            _ => None,
        };
        if let Some(tok) = simple {
            out.push(Token { tok, at: start });
            i += 1;
            continue;
        }
        match c {
            c if c.is_ascii_whitespace() => i += 1,
            b'&' | b'|' => {
                if bytes.get(i + 1) != Some(&c) {
                    let op = if c == b'&' { "&&" } else { "||" };
                    return Err(ConditionError::at(
                        src,
                        start,
                        format!("a lone '{}' is not an operator; write '{op}'", c as char),
                    ));
                }
                out.push(Token {
                    tok: if c == b'&' { Tok::AndAnd } else { Tok::OrOr },
                    at: start,
                });
                i += 2;
            }
            b'\'' => {
                let Some(len) = src[i + 1..].find('\'') else {
                    return Err(ConditionError::at(
                        src,
                        start,
                        "this string is never closed; end it with a single quote (')".into(),
                    ));
                };
                out.push(Token {
                    tok: Tok::Str(src[i + 1..i + 1 + len].to_owned()),
                    at: start,
                });
                i += len + 2;
            }
            b'@' => {
                let word_len = src[i + 1..]
                    .find(|ch: char| !ch.is_ascii_alphanumeric())
                    .unwrap_or(src.len() - i - 1);
                let source = &src[i + 1..i + 1 + word_len];
                let after = i + 1 + word_len;
                if source.is_empty() || bytes.get(after) != Some(&b'[') {
                    return Err(ConditionError::at(
                        src,
                        start,
                        "an attribute is written '@Resource[<attribute name>]' or '@Request[<attribute name>]'"
                            .into(),
                    ));
                }
                let Some(len) = src[after + 1..].find(']') else {
                    return Err(ConditionError::at(
                        src,
                        after,
                        "this attribute name is never closed; end it with ']'".into(),
                    ));
                };
                out.push(Token {
                    tok: Tok::Attribute {
                        source: source.to_owned(),
                        name: src[after + 1..after + 1 + len].trim().to_owned(),
                    },
                    at: start,
                });
                i = after + len + 2;
            }
            c if c.is_ascii_alphabetic() => {
                let len = src[i..]
                    .find(|ch: char| !(ch.is_ascii_alphanumeric() || ch == '_' || ch == '.'))
                    .unwrap_or(src.len() - i);
                out.push(Token {
                    tok: Tok::Word(src[i..i + len].to_owned()),
                    at: start,
                });
                i += len;
            }
            _ => {
                let ch = src[i..].chars().next().unwrap_or('?');
                let hint = if ch == '"' {
                    "; strings are single-quoted ('text')"
                } else {
                    "; values are single-quoted strings ('text')"
                };
                return Err(ConditionError::at(
                    src,
                    start,
                    format!("unexpected character '{ch}'{hint}"),
                ));
            }
        }
    }
    Ok(out)
}
