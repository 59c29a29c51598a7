//! The Sigma condition language: `and`, `or`, `not`, parentheses, `1 of X*`, `all of X*`,
//! `1 of them`, `all of them` (and `N of ...`, read as "at least N").
//!
//! Precedence, least to most binding: `or`, `and`, `not`, `x of`, parentheses.

/// A parsed condition over search identifiers, by index into the rule's selections.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Cond {
    Sel(usize),
    Not(Box<Cond>),
    And(Vec<Cond>),
    Or(Vec<Cond>),
    /// At least `n` of the selections.
    AtLeast(usize, Vec<usize>),
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Token {
    LParen,
    RParen,
    And,
    Or,
    Not,
    Of,
    All,
    Them,
    Num(usize),
    Ident(String),
    Pipe,
}

fn tokenize(s: &str) -> Result<Vec<Token>, String> {
    let mut out = Vec::new();
    let mut chars = s.char_indices().peekable();
    while let Some(&(i, c)) = chars.peek() {
        if c.is_whitespace() {
            chars.next();
            continue;
        }
        match c {
            '(' => {
                chars.next();
                out.push(Token::LParen);
            }
            ')' => {
                chars.next();
                out.push(Token::RParen);
            }
            '|' => {
                // Sigma v1 aggregation: the rest is not a detection condition.
                out.push(Token::Pipe);
                break;
            }
            _ if c.is_alphanumeric() || matches!(c, '_' | '*' | '-' | '.') => {
                let mut end = i;
                while let Some(&(j, d)) = chars.peek() {
                    if d.is_alphanumeric() || matches!(d, '_' | '*' | '-' | '.') {
                        end = j + d.len_utf8();
                        chars.next();
                    } else {
                        break;
                    }
                }
                let word = s.get(i..end).unwrap_or_default();
                out.push(match word.to_ascii_lowercase().as_str() {
                    "and" => Token::And,
                    "or" => Token::Or,
                    "not" => Token::Not,
                    "of" => Token::Of,
                    "all" => Token::All,
                    "them" => Token::Them,
                    _ => match word.parse::<usize>() {
                        Ok(n) => Token::Num(n),
                        Err(_) => Token::Ident(word.to_string()),
                    },
                });
            }
            _ => return Err(format!("unexpected character {c:?} in condition")),
        }
    }
    Ok(out)
}

/// Parses conditions against a rule's search identifiers.
pub(crate) struct CondParser<'a> {
    names: &'a [String],
    toks: Vec<Token>,
    pos: usize,
}

/// `*` wildcard match for `1 of selection*`.
fn glob_match(pat: &str, name: &str) -> bool {
    let p = pat.as_bytes();
    let n = name.as_bytes();
    let (mut pi, mut ni) = (0usize, 0usize);
    let (mut star, mut mark) = (None::<usize>, 0usize);
    while ni < n.len() {
        if pi < p.len() && p.get(pi) != Some(&b'*') && p.get(pi) == n.get(ni) {
            pi += 1;
            ni += 1;
        } else if p.get(pi) == Some(&b'*') {
            star = Some(pi);
            mark = ni;
            pi += 1;
        } else if let Some(s) = star {
            pi = s + 1;
            mark += 1;
            ni = mark;
        } else {
            return false;
        }
    }
    while p.get(pi) == Some(&b'*') {
        pi += 1;
    }
    pi == p.len()
}

impl<'a> CondParser<'a> {
    /// Parse `text`; `names` are the search identifiers in definition order.
    pub(crate) fn parse(text: &str, names: &'a [String]) -> Result<Cond, String> {
        let toks = tokenize(text)?;
        if toks.is_empty() {
            return Err("the condition is empty".to_string());
        }
        let mut p = CondParser {
            names,
            toks,
            pos: 0,
        };
        let c = p.or()?;
        match p.toks.get(p.pos) {
            None => Ok(c),
            Some(Token::Pipe) => Err(
                "aggregation expressions (`| count() ...`) are Sigma v1 and not supported; write a correlation rule"
                    .to_string(),
            ),
            Some(t) => Err(format!("unexpected {t:?} in condition")),
        }
    }

    fn peek(&self) -> Option<&Token> {
        self.toks.get(self.pos)
    }

    fn or(&mut self) -> Result<Cond, String> {
        let mut items = vec![self.and()?];
        while self.peek() == Some(&Token::Or) {
            self.pos += 1;
            items.push(self.and()?);
        }
        Ok(if items.len() == 1 {
            items.remove(0)
        } else {
            Cond::Or(items)
        })
    }

    fn and(&mut self) -> Result<Cond, String> {
        let mut items = vec![self.not()?];
        while self.peek() == Some(&Token::And) {
            self.pos += 1;
            items.push(self.not()?);
        }
        Ok(if items.len() == 1 {
            items.remove(0)
        } else {
            Cond::And(items)
        })
    }

    fn not(&mut self) -> Result<Cond, String> {
        if self.peek() == Some(&Token::Not) {
            self.pos += 1;
            return Ok(Cond::Not(Box::new(self.not()?)));
        }
        self.atom()
    }

    fn atom(&mut self) -> Result<Cond, String> {
        let tok = self.peek().cloned();
        self.pos += 1;
        match tok {
            Some(Token::LParen) => {
                let c = self.or()?;
                if self.peek() != Some(&Token::RParen) {
                    return Err("missing `)` in condition".to_string());
                }
                self.pos += 1;
                Ok(c)
            }
            Some(Token::Num(n)) => self.of(Some(n)),
            Some(Token::All) => self.of(None),
            Some(Token::Ident(name)) => {
                if name.contains('*') {
                    return Err(format!(
                        "wildcard identifier `{name}` must be used with `1 of` or `all of`"
                    ));
                }
                match self.names.iter().position(|n| *n == name) {
                    Some(i) => Ok(Cond::Sel(i)),
                    None => Err(format!(
                        "condition names `{name}`, which is not a search identifier of this rule"
                    )),
                }
            }
            Some(t) => Err(format!("unexpected {t:?} in condition")),
            None => Err("the condition ends too early".to_string()),
        }
    }

    /// `N of X` / `all of X` (N = None means all).
    fn of(&mut self, n: Option<usize>) -> Result<Cond, String> {
        if self.peek() != Some(&Token::Of) {
            return Err("expected `of` after a quantifier".to_string());
        }
        self.pos += 1;
        let target = self.peek().cloned();
        self.pos += 1;
        let sels: Vec<usize> = match target {
            Some(Token::Them) => self
                .names
                .iter()
                .enumerate()
                .filter(|(_, n)| !n.starts_with('_'))
                .map(|(i, _)| i)
                .collect(),
            Some(Token::Ident(pat)) => self
                .names
                .iter()
                .enumerate()
                .filter(|(_, n)| glob_match(&pat, n))
                .map(|(i, _)| i)
                .collect(),
            _ => return Err("expected `them` or an identifier pattern after `of`".to_string()),
        };
        if sels.is_empty() {
            return Err("`of` pattern matches no search identifier".to_string());
        }
        match n {
            None => Ok(Cond::And(sels.into_iter().map(Cond::Sel).collect())),
            Some(0) => Err("`0 of` is not meaningful".to_string()),
            Some(1) => Ok(Cond::Or(sels.into_iter().map(Cond::Sel).collect())),
            Some(k) => Ok(Cond::AtLeast(k, sels)),
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn names() -> Vec<String> {
        ["selection", "sel_a", "sel_b", "filter_x", "_hidden"]
            .iter()
            .map(|s| s.to_string())
            .collect()
    }

    #[test]
    fn precedence_and_quantifiers() {
        let n = names();
        let c = CondParser::parse("selection or sel_a and not filter_x", &n).unwrap();
        assert_eq!(
            c,
            Cond::Or(vec![
                Cond::Sel(0),
                Cond::And(vec![Cond::Sel(1), Cond::Not(Box::new(Cond::Sel(3)))])
            ])
        );
        let c = CondParser::parse("all of sel_* and not 1 of filter*", &n).unwrap();
        assert_eq!(
            c,
            Cond::And(vec![
                Cond::And(vec![Cond::Sel(1), Cond::Sel(2)]),
                Cond::Not(Box::new(Cond::Or(vec![Cond::Sel(3)])))
            ])
        );
        let c = CondParser::parse("1 of them", &n).unwrap();
        assert_eq!(c, Cond::Or((0..4).map(Cond::Sel).collect()));
        assert!(CondParser::parse("selection | count() > 5", &n).is_err());
        assert!(CondParser::parse("nope", &n).is_err());
        assert!(CondParser::parse("(selection", &n).is_err());
        assert!(glob_match("sel*", "selection"));
        assert!(glob_match("*_a", "sel_a"));
        assert!(!glob_match("sel_*", "selection"));
    }
}
