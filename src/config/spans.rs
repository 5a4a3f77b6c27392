//! Where things are in the config text.
//!
//! The typed [`Config`](super::Config) keeps plain values. Validation names
//! an offending value by [`KeyPath`] (`port[1].gateway`); only when an error
//! is reported is the path looked up in the `toml_edit` document parsed from
//! the same text, which keeps the byte span of every key, table and value.
//! The reverse, the key a serde error's span falls in, is found the same way.

use std::fmt;
use std::ops::Range;

use toml_edit::{Item, Table, TableLike, Value};

/// One step of a [`KeyPath`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Seg {
    /// A key of a table.
    Key(String),
    /// An element of an array (including an array of tables, `[[port]]`),
    /// counted from 0.
    Index(usize),
}

/// The path of a value in the document, such as `dataplane.workers[1]` or
/// `port[0].addresses[2]`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct KeyPath(pub Vec<Seg>);

impl KeyPath {
    /// The path of a top-level key.
    pub fn root(key: &str) -> KeyPath {
        KeyPath(vec![Seg::Key(key.to_string())])
    }

    /// This path extended by a key.
    pub fn key(mut self, key: &str) -> KeyPath {
        self.0.push(Seg::Key(key.to_string()));
        self
    }

    /// This path extended by an array index.
    pub fn index(mut self, index: usize) -> KeyPath {
        self.0.push(Seg::Index(index));
        self
    }
}

impl fmt::Display for KeyPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, seg) in self.0.iter().enumerate() {
            match seg {
                Seg::Key(k) => {
                    if i > 0 {
                        f.write_str(".")?;
                    }
                    let bare = !k.is_empty()
                        && k.bytes()
                            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
                    if bare {
                        f.write_str(k)?;
                    } else {
                        write!(f, "{k:?}")?;
                    }
                }
                Seg::Index(n) => write!(f, "[{n}]")?,
            }
        }
        Ok(())
    }
}

/// Line and column of a byte offset, both counted from 1; the column counts
/// characters, as editors do.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Position {
    /// 1-based line.
    pub line: usize,
    /// 1-based column, in characters.
    pub column: usize,
}

impl Position {
    /// The position of byte `offset` of `text` (clamped to the text's end).
    pub fn of(text: &str, offset: usize) -> Position {
        let mut offset = offset.min(text.len());
        while !text.is_char_boundary(offset) {
            offset -= 1;
        }
        let before = &text[..offset];
        let line_start = before.rfind('\n').map_or(0, |i| i + 1);
        Position {
            line: before.matches('\n').count() + 1,
            column: before[line_start..].chars().count() + 1,
        }
    }
}

impl fmt::Display for Position {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.line, self.column)
    }
}

/// A table, item or value of the document: toml_edit keeps array-of-tables
/// elements as [`Table`]s and array elements as [`Value`]s.
#[derive(Clone, Copy)]
enum Node<'a> {
    Item(&'a Item),
    Table(&'a Table),
    Value(&'a Value),
}

/// A child of a [`Node`]: its step, the span of its key (none for array
/// elements), and itself.
type Child<'a> = (Seg, Option<Range<usize>>, Node<'a>);

impl<'a> Node<'a> {
    fn span(self) -> Option<Range<usize>> {
        match self {
            Node::Item(i) => i.span(),
            Node::Table(t) => t.span(),
            Node::Value(v) => v.span(),
        }
    }

    fn table(self) -> Option<&'a dyn TableLike> {
        match self {
            Node::Item(i) => i.as_table_like(),
            Node::Table(t) => Some(t),
            Node::Value(v) => v.as_inline_table().map(|t| t as &dyn TableLike),
        }
    }

    /// Each key of a table, or each element of an array (of tables).
    fn children(self) -> Vec<Child<'a>> {
        if let Some(t) = self.table() {
            let key = |k: &str| t.key(k).and_then(|k| k.span());
            return t
                .iter()
                .map(|(k, v)| (Seg::Key(k.into()), key(k), Node::Item(v)))
                .collect();
        }
        let elements: Vec<Node<'a>> = match self {
            Node::Item(Item::ArrayOfTables(a)) => a.iter().map(Node::Table).collect(),
            Node::Item(Item::Value(v)) | Node::Value(v) => v
                .as_array()
                .map_or_else(Vec::new, |a| a.iter().map(Node::Value).collect()),
            _ => Vec::new(),
        };
        elements
            .into_iter()
            .enumerate()
            .map(|(i, n)| (Seg::Index(i), None, n))
            .collect()
    }
}

/// The span of the value at `path` in `doc` (or of its key, when the value
/// has none, as implicit tables do), if the document spells that path out;
/// the start of the text for the empty path.
pub fn locate(doc: &Table, path: &KeyPath) -> Option<Range<usize>> {
    let (mut node, mut key_span) = (Node::Table(doc), Some(0..0));
    for seg in &path.0 {
        (_, key_span, node) = node.children().into_iter().find(|(s, _, _)| s == seg)?;
    }
    match path.0.is_empty() {
        true => key_span,
        false => node.span().or(key_span),
    }
}

/// A short "where" for a serde error at byte `offset`, to append to its
/// message: ``for key `dataplane.burst` `` when it is in a value, or
/// ``(in `port[1]`)`` for an unknown key or a missing one (whose spans are
/// the key and the table).
pub fn context(doc: &Table, offset: usize) -> Option<String> {
    let mut best = None;
    search(Node::Table(doc), offset, &mut KeyPath::default(), &mut best);
    let (mut path, hit) = best?;
    match hit {
        Hit::Key => {
            path.0.pop();
            (!path.0.is_empty()).then(|| format!("(in `{path}`)"))
        }
        Hit::Table => Some(format!("(in `{path}`)")),
        Hit::Value => Some(format!("for key `{path}`")),
    }
}

/// What part of an entry an offset fell in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Hit {
    Key,
    Table,
    Value,
}

/// The deepest key whose key or value contains `offset` (the later of two
/// equally deep), and which part of it did.
fn search(node: Node<'_>, offset: usize, path: &mut KeyPath, best: &mut Option<(KeyPath, Hit)>) {
    // An empty span (toml gives one at the end of input) still marks a place.
    let contains = |span: Option<Range<usize>>| {
        span.is_some_and(|s| s.contains(&offset) || (s.is_empty() && s.start == offset))
    };
    for (seg, key_span, child) in node.children() {
        path.0.push(seg);
        let value = match child.table() {
            Some(_) => Hit::Table,
            None => Hit::Value,
        };
        let hits = [
            (contains(key_span), Hit::Key),
            (contains(child.span()), value),
        ];
        for (_, hit) in hits.into_iter().filter(|(inside, _)| *inside) {
            if best.as_ref().is_none_or(|(p, _)| path.0.len() >= p.0.len()) {
                *best = Some((path.clone(), hit));
            }
        }
        search(child, offset, path, best);
        path.0.pop();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DOC: &str = "\
[eal]
args = [\"--no-huge\", \"-m\", \"512\"]

[dataplane]
burst = 32
a.b.c = 1

[[port]]
name = \"wan\"
addresses = [\"10.0.0.1/24\"]

[[port]]
name = \"lan\"
inline = { x = 1, y.z = [1, { w = 2 }] }
when = 1979-05-27T07:32:00Z
";

    fn doc() -> toml_edit::ImDocument<&'static str> {
        toml_edit::ImDocument::parse(DOC).unwrap()
    }

    fn text_at(path: KeyPath) -> Option<&'static str> {
        locate(doc().as_table(), &path).map(|s| &DOC[s])
    }

    #[test]
    fn locates_values() {
        assert_eq!(text_at(KeyPath::root("dataplane").key("burst")), Some("32"));
        assert_eq!(
            text_at(KeyPath::root("eal").key("args").index(2)),
            Some("\"512\"")
        );
        assert_eq!(
            text_at(KeyPath::root("port").index(1).key("name")),
            Some("\"lan\"")
        );
        assert_eq!(
            text_at(KeyPath::root("port").index(0).key("addresses").index(0)),
            Some("\"10.0.0.1/24\"")
        );
        assert_eq!(
            text_at(KeyPath::root("dataplane").key("a").key("b").key("c")),
            Some("1")
        );
        assert_eq!(
            text_at(
                KeyPath::root("port")
                    .index(1)
                    .key("inline")
                    .key("y")
                    .key("z")
                    .index(1)
                    .key("w")
            ),
            Some("2")
        );
        assert!(text_at(KeyPath::root("port").index(0))
            .unwrap()
            .starts_with("[[port]]"));
        assert_eq!(text_at(KeyPath::root("port").index(2)), None);
        assert_eq!(text_at(KeyPath::root("dataplane").key("mbufs")), None);
        assert_eq!(text_at(KeyPath::root("nothing")), None);
    }

    #[test]
    fn describes_offsets() {
        let doc = doc();
        let at = |needle: &str| context(doc.as_table(), DOC.find(needle).unwrap());
        assert_eq!(at("32").unwrap(), "for key `dataplane.burst`");
        assert_eq!(at("\"512\"").unwrap(), "for key `eal.args[2]`");
        assert_eq!(at("burst").unwrap(), "(in `dataplane`)");
        assert_eq!(at("\"lan\"").unwrap(), "for key `port[1].name`");
        assert_eq!(at("[[port]]\nname = \"lan\"").unwrap(), "(in `port[1]`)");
        assert_eq!(at("[eal]").unwrap(), "(in `eal`)");
        assert_eq!(at("w = 2").unwrap(), "(in `port[1].inline.y.z[1]`)");
    }

    #[test]
    fn positions() {
        let text = "a\nbc\n\u{e9}x\n";
        assert_eq!(Position::of(text, 0), Position { line: 1, column: 1 });
        assert_eq!(Position::of(text, 3), Position { line: 2, column: 2 });
        assert_eq!(Position::of(text, 5), Position { line: 3, column: 1 });
        // After the two-byte 'é', 'x' is the second character.
        assert_eq!(Position::of(text, 7), Position { line: 3, column: 2 });
        assert_eq!(Position::of(text, 6), Position { line: 3, column: 1 });
        assert_eq!(Position::of(text, 100), Position { line: 4, column: 1 });
    }
}
