//! A small YAML tree that remembers the line of every node, built from yaml-rust2's event
//! parser, so that every rule error can name `file:line`.

use yaml_rust2::parser::{Event as YEvent, MarkedEventReceiver, Parser};
use yaml_rust2::scanner::{Marker, TScalarStyle};

/// One YAML node and the (1-based) line it starts on.
#[derive(Debug, Clone)]
pub(crate) struct Node {
    pub line: usize,
    pub kind: Kind,
}

/// The resolved value of a node (YAML 1.2 core schema for plain scalars).
#[derive(Debug, Clone)]
pub(crate) enum Kind {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    Seq(Vec<Node>),
    /// Keys are kept as their text, with the key's line.
    Map(Vec<(String, usize, Node)>),
}

impl Node {
    pub fn get(&self, key: &str) -> Option<&Node> {
        match &self.kind {
            Kind::Map(entries) => entries.iter().find(|(k, _, _)| k == key).map(|(_, _, v)| v),
            _ => None,
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        match &self.kind {
            Kind::Str(s) => Some(s),
            _ => None,
        }
    }

    /// A scalar's text form (strings as they are, numbers and booleans printed).
    pub fn scalar_text(&self) -> Option<String> {
        match &self.kind {
            Kind::Str(s) => Some(s.clone()),
            Kind::Int(i) => Some(i.to_string()),
            Kind::Float(f) => Some(f.to_string()),
            Kind::Bool(b) => Some(b.to_string()),
            _ => None,
        }
    }

    pub fn type_name(&self) -> &'static str {
        match &self.kind {
            Kind::Null => "null",
            Kind::Bool(_) => "boolean",
            Kind::Int(_) => "integer",
            Kind::Float(_) => "number",
            Kind::Str(_) => "string",
            Kind::Seq(_) => "list",
            Kind::Map(_) => "map",
        }
    }
}

/// A YAML syntax error with its line.
#[derive(Debug, Clone)]
pub(crate) struct SyntaxError {
    pub line: usize,
    pub message: String,
}

/// Parse every document of a YAML stream.
pub(crate) fn parse_documents(text: &str) -> Result<Vec<Node>, SyntaxError> {
    let mut builder = Builder::default();
    let mut parser = Parser::new_from_str(text);
    parser.load(&mut builder, true).map_err(|e| SyntaxError {
        line: e.marker().line(),
        message: e.info().to_string(),
    })?;
    if let Some(message) = builder.error {
        return Err(SyntaxError {
            line: builder.error_line,
            message,
        });
    }
    Ok(builder.docs)
}

enum Frame {
    Seq(usize, usize, Vec<Node>),
    Map(
        usize,
        usize,
        Vec<(String, usize, Node)>,
        Option<(String, usize)>,
    ),
}

#[derive(Default)]
struct Builder {
    stack: Vec<Frame>,
    docs: Vec<Node>,
    anchors: Vec<(usize, Node)>,
    error: Option<String>,
    error_line: usize,
}

impl Builder {
    fn fail(&mut self, line: usize, message: String) {
        if self.error.is_none() {
            self.error = Some(message);
            self.error_line = line;
        }
    }

    fn push_value(&mut self, node: Node, anchor: usize) {
        if anchor > 0 {
            self.anchors.push((anchor, node.clone()));
        }
        let line = node.line;
        match self.stack.last_mut() {
            None => self.docs.push(node),
            Some(Frame::Seq(_, _, items)) => items.push(node),
            Some(Frame::Map(_, _, entries, pending)) => match pending.take() {
                None => match key_text(&node) {
                    Some(k) => *pending = Some((k, line)),
                    None => self.fail(line, "a map key must be a scalar".to_string()),
                },
                Some((key, key_line)) => entries.push((key, key_line, node)),
            },
        }
    }
}

fn key_text(node: &Node) -> Option<String> {
    match &node.kind {
        Kind::Null => Some(String::new()),
        _ => node.scalar_text(),
    }
}

fn resolve_plain(text: &str) -> Kind {
    match text {
        "" | "~" | "null" | "Null" | "NULL" => return Kind::Null,
        "true" | "True" | "TRUE" => return Kind::Bool(true),
        "false" | "False" | "FALSE" => return Kind::Bool(false),
        _ => {}
    }
    let (neg, digits) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text.strip_prefix('+').unwrap_or(text)),
    };
    let int = if let Some(hex) = digits.strip_prefix("0x") {
        i64::from_str_radix(hex, 16).ok()
    } else if let Some(oct) = digits.strip_prefix("0o") {
        i64::from_str_radix(oct, 8).ok()
    } else if !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()) {
        digits.parse::<i64>().ok()
    } else {
        None
    };
    if let Some(i) = int {
        return Kind::Int(if neg { -i } else { i });
    }
    let looks_float = !digits.is_empty()
        && digits
            .bytes()
            .all(|b| b.is_ascii_digit() || matches!(b, b'.' | b'e' | b'E' | b'-' | b'+'))
        && digits.bytes().any(|b| b.is_ascii_digit());
    if looks_float {
        if let Ok(f) = text.parse::<f64>() {
            return Kind::Float(f);
        }
    }
    Kind::Str(text.to_string())
}

impl MarkedEventReceiver for Builder {
    fn on_event(&mut self, ev: YEvent, mark: Marker) {
        let line = mark.line();
        match ev {
            YEvent::Scalar(text, style, anchor, tag) => {
                let is_str_tag = tag.as_ref().is_some_and(|t| t.suffix == "str");
                let kind = if style == TScalarStyle::Plain && !is_str_tag {
                    resolve_plain(&text)
                } else {
                    Kind::Str(text)
                };
                self.push_value(Node { line, kind }, anchor);
            }
            YEvent::SequenceStart(anchor, _) => {
                self.stack.push(Frame::Seq(line, anchor, Vec::new()))
            }
            YEvent::MappingStart(anchor, _) => {
                self.stack.push(Frame::Map(line, anchor, Vec::new(), None))
            }
            YEvent::SequenceEnd | YEvent::MappingEnd => match self.stack.pop() {
                Some(Frame::Seq(l, anchor, items)) => self.push_value(
                    Node {
                        line: l,
                        kind: Kind::Seq(items),
                    },
                    anchor,
                ),
                Some(Frame::Map(l, anchor, entries, _)) => self.push_value(
                    Node {
                        line: l,
                        kind: Kind::Map(entries),
                    },
                    anchor,
                ),
                None => self.fail(line, "unbalanced YAML collection".to_string()),
            },
            YEvent::Alias(id) => {
                match self.anchors.iter().rev().find(|(a, _)| *a == id) {
                    Some((_, node)) => {
                        let node = node.clone();
                        self.push_value(node, 0);
                    }
                    None => self.fail(line, "alias to an unknown anchor".to_string()),
                };
            }
            YEvent::Nothing
            | YEvent::StreamStart
            | YEvent::StreamEnd
            | YEvent::DocumentStart
            | YEvent::DocumentEnd => {}
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn lines_and_types() {
        let docs = parse_documents("a: 1\nb:\n  - 'x'\n  - true\n  - null\n---\nc: ~\n").unwrap();
        assert_eq!(docs.len(), 2);
        let b = docs[0].get("b").unwrap();
        assert_eq!(b.line, 3);
        let Kind::Seq(items) = &b.kind else { panic!() };
        assert!(matches!(items[0].kind, Kind::Str(ref s) if s == "x"));
        assert_eq!(items[0].line, 3);
        assert!(matches!(items[1].kind, Kind::Bool(true)));
        assert!(matches!(items[2].kind, Kind::Null));
        assert!(matches!(docs[0].get("a").unwrap().kind, Kind::Int(1)));
        assert!(matches!(docs[1].get("c").unwrap().kind, Kind::Null));
        let err = parse_documents("a: [1,\nb: 2\n  c").unwrap_err();
        assert!(err.line >= 2, "{err:?}");
    }
}
