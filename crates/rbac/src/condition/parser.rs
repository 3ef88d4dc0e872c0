//! Recursive-descent parser: `OR` binds loosest, then `AND`, then `NOT`/`!`.
//!
//! ```text
//! expr    := and ( (OR | '||') and )*
//! and     := unary ( (AND | '&&') unary )*
//! unary   := (NOT | '!') unary | primary
//! primary := '(' expr ')'
//!          | ActionMatches '{' strings '}'
//!          | SubOperationMatches '{' strings '}'
//!          | attribute [ quantifier ':' ] operator ( string | '{' strings '}' )
//! ```

use super::lexer::{Tok, Token};
use super::{Attribute, ConditionError, Expr, Quantifier, StringOp};
use crate::action::ActionPattern;

/// How deeply parentheses and `NOT`s may nest. Azure documents no nesting limit,
/// only the 8 KB length; real conditions nest four or five levels. The limit keeps
/// the recursion (parser, evaluation, drop) far inside any thread's stack.
pub(crate) const MAX_NESTING: usize = 32;

pub(super) struct Parser<'a> {
    src: &'a str,
    tokens: Vec<Token>,
    pos: usize,
    /// Open parentheses and `NOT`s around the current position.
    depth: usize,
}

impl<'a> Parser<'a> {
    pub(super) fn new(src: &'a str, tokens: Vec<Token>) -> Self {
        Self {
            src,
            tokens,
            pos: 0,
            depth: 0,
        }
    }

    pub(super) fn parse(mut self) -> Result<Expr, ConditionError> {
        if self.tokens.is_empty() {
            return Err(ConditionError::at(
                self.src,
                0,
                "the condition is empty".into(),
            ));
        }
        let expr = self.or()?;
        if let Some(t) = self.tokens.get(self.pos) {
            return Err(self.error_at(
                t.at,
                format!(
                    "expected AND, OR or the end of the condition, found {}",
                    t.tok.describe()
                ),
            ));
        }
        Ok(expr)
    }

    fn error_at(&self, at: usize, message: String) -> ConditionError {
        ConditionError::at(self.src, at, message)
    }

    fn peek(&self) -> Option<&Tok> {
        self.tokens.get(self.pos).map(|t| &t.tok)
    }

    fn here(&self) -> usize {
        self.tokens
            .get(self.pos)
            .map(|t| t.at)
            .unwrap_or(self.src.len())
    }

    fn found(&self) -> String {
        self.peek()
            .map(Tok::describe)
            .unwrap_or_else(|| "the end of the condition".into())
    }

    fn is_word(&self, word: &str) -> bool {
        matches!(self.peek(), Some(Tok::Word(w)) if w.eq_ignore_ascii_case(word))
    }

    fn expect(&mut self, tok: Tok, what: &str) -> Result<usize, ConditionError> {
        if self.peek() == Some(&tok) {
            let at = self.here();
            self.pos += 1;
            Ok(at)
        } else {
            Err(self.error_at(
                self.here(),
                format!("expected {what}, found {}", self.found()),
            ))
        }
    }

    fn or(&mut self) -> Result<Expr, ConditionError> {
        let mut left = self.and()?;
        while self.peek() == Some(&Tok::OrOr) || self.is_word("OR") {
            self.pos += 1;
            let right = self.and()?;
            left = Expr::Or(Box::new(left), Box::new(right));
        }
        Ok(left)
    }

    fn and(&mut self) -> Result<Expr, ConditionError> {
        let mut left = self.unary()?;
        while self.peek() == Some(&Tok::AndAnd) || self.is_word("AND") {
            self.pos += 1;
            let right = self.unary()?;
            left = Expr::And(Box::new(left), Box::new(right));
        }
        Ok(left)
    }

    fn unary(&mut self) -> Result<Expr, ConditionError> {
        if self.peek() == Some(&Tok::Bang) || self.is_word("NOT") {
            let at = self.here();
            self.pos += 1;
            self.descend(at)?;
            let inner = self.unary()?;
            self.depth -= 1;
            return Ok(Expr::Not(Box::new(inner)));
        }
        self.primary()
    }

    /// Enters one more level of nesting, refused past [`MAX_NESTING`] before any
    /// recursion happens.
    fn descend(&mut self, at: usize) -> Result<(), ConditionError> {
        self.depth += 1;
        if self.depth > MAX_NESTING {
            return Err(self.error_at(
                at,
                format!(
                    "the condition nests parentheses and NOTs more than {MAX_NESTING} levels deep; simplify it"
                ),
            ));
        }
        Ok(())
    }

    fn primary(&mut self) -> Result<Expr, ConditionError> {
        let at = self.here();
        match self.peek().cloned() {
            Some(Tok::LParen) => {
                self.pos += 1;
                self.descend(at)?;
                let inner = self.or()?;
                self.depth -= 1;
                if self.peek() != Some(&Tok::RParen) {
                    let (line, column) = super::line_column(self.src, at);
                    return Err(self.error_at(
                        self.here(),
                        format!(
                            "expected ')' to close the '(' at line {line}, column {column}, found {}",
                            self.found()
                        ),
                    ));
                }
                self.pos += 1;
                Ok(inner)
            }
            Some(Tok::Word(w)) if w.eq_ignore_ascii_case("ActionMatches") => {
                self.pos += 1;
                let patterns = self.string_list("ActionMatches")?;
                Ok(Expr::ActionMatches(
                    patterns.iter().map(|p| ActionPattern::new(p)).collect(),
                ))
            }
            Some(Tok::Word(w)) if w.eq_ignore_ascii_case("SubOperationMatches") => {
                self.pos += 1;
                let ops = self.string_list("SubOperationMatches")?;
                Ok(Expr::SubOperationMatches(ops))
            }
            Some(Tok::Attribute { source, name }) => {
                self.pos += 1;
                let attribute = Attribute::resolve(&source, &name)
                    .map_err(|message| self.error_at(at, message))?;
                self.comparison(attribute)
            }
            _ => Err(self.error_at(
                at,
                format!(
                    "expected ActionMatches{{...}}, SubOperationMatches{{...}}, an attribute such as @Resource[...], NOT or '(', found {}",
                    self.found()
                ),
            )),
        }
    }

    /// `{ 'a', 'b' }` after a function name.
    fn string_list(&mut self, function: &str) -> Result<Vec<String>, ConditionError> {
        self.expect(Tok::LBrace, &format!("'{{' after {function}"))?;
        let items = self.strings_until_brace()?;
        if items.is_empty() {
            return Err(self.error_at(
                self.here(),
                format!("{function}{{}} needs at least one single-quoted string"),
            ));
        }
        Ok(items)
    }

    /// Strings separated by commas up to and including the closing `}`.
    fn strings_until_brace(&mut self) -> Result<Vec<String>, ConditionError> {
        let mut items = Vec::new();
        loop {
            match self.peek().cloned() {
                Some(Tok::Str(s)) => {
                    self.pos += 1;
                    items.push(s);
                    match self.peek() {
                        Some(Tok::Comma) => self.pos += 1,
                        Some(Tok::RBrace) => {
                            self.pos += 1;
                            return Ok(items);
                        }
                        _ => {
                            return Err(self.error_at(
                                self.here(),
                                format!("expected ',' or '}}' in the list, found {}", self.found()),
                            ));
                        }
                    }
                }
                Some(Tok::RBrace) if items.is_empty() => {
                    self.pos += 1;
                    return Ok(items);
                }
                _ => {
                    return Err(self.error_at(
                        self.here(),
                        format!(
                            "expected a single-quoted string in the list, found {}",
                            self.found()
                        ),
                    ));
                }
            }
        }
    }

    fn comparison(&mut self, attribute: Attribute) -> Result<Expr, ConditionError> {
        let mut quantifier = Quantifier::Single;
        let op_at = self.here();
        let Some(Tok::Word(mut word)) = self.peek().cloned() else {
            return Err(self.error_at(
                op_at,
                format!(
                    "expected an operator such as StringEquals, StringLike or StringStartsWith after the attribute, found {}",
                    self.found()
                ),
            ));
        };
        self.pos += 1;
        if let Some(q) = Quantifier::parse(&word) {
            self.expect(Tok::Colon, &format!("':' after {word}"))?;
            quantifier = q;
            word = match self.peek().cloned() {
                Some(Tok::Word(w)) => {
                    self.pos += 1;
                    w
                }
                _ => {
                    return Err(self.error_at(
                        self.here(),
                        format!(
                            "expected an operator after '{word}:', found {}",
                            self.found()
                        ),
                    ));
                }
            };
        }
        let (op, negated, ignore_case) = StringOp::parse(&word).ok_or_else(|| {
            self.error_at(
                op_at,
                format!(
                    "unknown operator '{word}'; use StringEquals, StringNotEquals, StringLike, StringNotLike, StringStartsWith, StringNotStartsWith or an IgnoreCase form"
                ),
            )
        })?;
        let value_at = self.here();
        let values = match self.peek().cloned() {
            Some(Tok::Str(s)) => {
                self.pos += 1;
                vec![s]
            }
            Some(Tok::LBrace) => {
                self.pos += 1;
                let items = self.strings_until_brace()?;
                if quantifier == Quantifier::Single {
                    return Err(self.error_at(
                        value_at,
                        format!(
                            "{word} compares with one string; to compare with a list write 'ForAnyOfAnyValues:{word} {{...}}'"
                        ),
                    ));
                }
                if items.is_empty() {
                    return Err(self.error_at(value_at, "the list is empty".into()));
                }
                items
            }
            _ => {
                return Err(self.error_at(
                    value_at,
                    format!(
                        "expected a single-quoted string after {word}, found {}",
                        self.found()
                    ),
                ));
            }
        };
        Ok(Expr::Compare {
            attribute,
            quantifier,
            op,
            negated,
            ignore_case,
            values,
        })
    }
}
