//! Where things are in the config text.
//!
//! The typed [`Config`](super::Config) keeps plain values so that the rest of
//! Sluice need not unwrap spans. To point an error at a line, the text is
//! parsed a second time into a [`SpanIndex`]: the key/value tree of the
//! document with the byte span of every key and value. Validation names the
//! offending value by [`KeyPath`] (`port[1].gateway`); the index turns the
//! path into a span, and turns the span of a serde error back into the path
//! of the key it concerns.
//!
//! toml reports spans through serde's data model with the private protocol of
//! `serde_spanned` (a struct named `$__serde_spanned_private_Spanned`). We
//! speak that protocol here instead of using `toml::Spanned` because the
//! latter fails outright on keys and tables that have no span, such as the
//! implicit `a` and `b` in a dotted key `a.b.c = 1`. The unit tests below
//! catch any change of protocol.

use std::fmt;
use std::ops::Range;

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};

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

    fn parent(&self) -> KeyPath {
        let mut parent = self.clone();
        parent.0.pop();
        parent
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

/// What part of an entry a span fell in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Hit {
    /// The key itself (unknown keys are reported there).
    Key,
    /// A table's value (missing keys are reported on the table).
    Table,
    /// Any other value.
    Value,
}

/// The key/value tree of a document with spans; see the module docs.
#[derive(Debug, Default)]
pub struct SpanIndex {
    root: Option<SpNode>,
}

impl SpanIndex {
    /// Index `text`. A document that does not parse gives an empty index,
    /// which locates nothing: its syntax error has a span of its own.
    pub fn new(text: &str) -> SpanIndex {
        SpanIndex {
            root: toml::from_str::<SpNode>(text).ok(),
        }
    }

    /// The span of the value at `path` (or of its key, when the value has
    /// none), if the document spells that path out.
    pub fn locate(&self, path: &KeyPath) -> Option<Range<usize>> {
        let mut node = self.root.as_ref()?;
        let mut key_span = None;
        for seg in &path.0 {
            match (seg, &node.node) {
                (Seg::Key(k), Node::Table(entries)) => {
                    let e = entries.iter().find(|e| &e.key == k)?;
                    key_span = e.key_span.clone();
                    node = &e.value;
                }
                (Seg::Index(i), Node::Array(items)) => {
                    node = items.get(*i)?;
                    key_span = None;
                }
                _ => return None,
            }
        }
        node.span.clone().or(key_span)
    }

    /// The deepest key whose key or value contains byte `offset`, and which
    /// part of it did.
    pub fn describe(&self, offset: usize) -> Option<(KeyPath, Hit)> {
        let root = self.root.as_ref()?;
        let mut best = None;
        search(&root.node, offset, &mut KeyPath::default(), &mut best);
        best
    }

    /// A short "where" for a serde error at `offset`, to append to its
    /// message: ``for key `dataplane.burst` ``, or ``(in `port[1]`)`` for an
    /// unknown key or a missing one (whose spans are the key and the table).
    pub fn context(&self, offset: usize) -> Option<String> {
        let (path, hit) = self.describe(offset)?;
        match hit {
            Hit::Key => {
                let parent = path.parent();
                (!parent.0.is_empty()).then(|| format!("(in `{parent}`)"))
            }
            Hit::Table => Some(format!("(in `{path}`)")),
            Hit::Value => Some(format!("for key `{path}`")),
        }
    }
}

fn contains(span: &Option<Range<usize>>, offset: usize) -> bool {
    // An empty span (toml gives one at the end of input) still marks a place.
    span.as_ref()
        .is_some_and(|s| s.contains(&offset) || (s.is_empty() && s.start == offset))
}

fn search(node: &Node, offset: usize, path: &mut KeyPath, best: &mut Option<(KeyPath, Hit)>) {
    let consider = |path: &KeyPath, hit: Hit, best: &mut Option<(KeyPath, Hit)>| {
        if best
            .as_ref()
            .map_or(true, |(p, _)| path.0.len() >= p.0.len())
        {
            *best = Some((path.clone(), hit));
        }
    };
    match node {
        Node::Table(entries) => {
            for e in entries {
                path.0.push(Seg::Key(e.key.clone()));
                if contains(&e.key_span, offset) {
                    consider(path, Hit::Key, best);
                }
                if contains(&e.value.span, offset) {
                    consider(path, e.value.node.hit(), best);
                }
                search(&e.value.node, offset, path, best);
                path.0.pop();
            }
        }
        Node::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                path.0.push(Seg::Index(i));
                if contains(&item.span, offset) {
                    consider(path, item.node.hit(), best);
                }
                search(&item.node, offset, path, best);
                path.0.pop();
            }
        }
        Node::Scalar => {}
    }
}

// serde_spanned's protocol; see the module docs.
const SPANNED_NAME: &str = "$__serde_spanned_private_Spanned";
const SPANNED_START: &str = "$__serde_spanned_private_start";
const SPANNED_END: &str = "$__serde_spanned_private_end";
const SPANNED_VALUE: &str = "$__serde_spanned_private_value";
const SPANNED_FIELDS: &[&str] = &[SPANNED_START, SPANNED_END, SPANNED_VALUE];

#[derive(Debug)]
enum Node {
    Table(Vec<Entry>),
    Array(Vec<SpNode>),
    Scalar,
}

impl Node {
    fn hit(&self) -> Hit {
        match self {
            Node::Table(_) => Hit::Table,
            _ => Hit::Value,
        }
    }
}

#[derive(Debug)]
struct Entry {
    key: String,
    key_span: Option<Range<usize>>,
    value: SpNode,
}

/// A node with its span, when toml knows it.
#[derive(Debug)]
struct SpNode {
    span: Option<Range<usize>>,
    node: Node,
}

/// A key with its span, when toml knows it.
struct SpKey {
    span: Option<Range<usize>>,
    name: String,
}

struct NodeVisitor;

impl<'de> Visitor<'de> for NodeVisitor {
    type Value = Node;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any TOML value")
    }

    fn visit_bool<E>(self, _: bool) -> Result<Node, E> {
        Ok(Node::Scalar)
    }

    fn visit_i64<E>(self, _: i64) -> Result<Node, E> {
        Ok(Node::Scalar)
    }

    fn visit_u64<E>(self, _: u64) -> Result<Node, E> {
        Ok(Node::Scalar)
    }

    fn visit_f64<E>(self, _: f64) -> Result<Node, E> {
        Ok(Node::Scalar)
    }

    fn visit_str<E>(self, _: &str) -> Result<Node, E> {
        Ok(Node::Scalar)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Node, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element::<SpNode>()? {
            items.push(item);
        }
        Ok(Node::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Node, A::Error> {
        table_entries(None, map).map(Node::Table)
    }
}

/// The entries of a table, `first` being a key already taken from `map`.
fn table_entries<'de, A: MapAccess<'de>>(
    first: Option<SpKey>,
    mut map: A,
) -> Result<Vec<Entry>, A::Error> {
    let mut entries = Vec::new();
    let mut next = first;
    if next.is_none() {
        next = map.next_key::<SpKey>()?;
    }
    while let Some(key) = next {
        let value = map.next_value::<SpNode>()?;
        entries.push(Entry {
            key: key.name,
            key_span: key.span,
            value,
        });
        next = map.next_key::<SpKey>()?;
    }
    Ok(entries)
}

impl<'de> Deserialize<'de> for Node {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Node, D::Error> {
        d.deserialize_any(NodeVisitor)
    }
}

impl<'de> Deserialize<'de> for SpNode {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<SpNode, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = SpNode;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("any TOML value")
            }

            fn visit_bool<E>(self, _: bool) -> Result<SpNode, E> {
                Ok(SpNode {
                    span: None,
                    node: Node::Scalar,
                })
            }

            fn visit_i64<E>(self, _: i64) -> Result<SpNode, E> {
                Ok(SpNode {
                    span: None,
                    node: Node::Scalar,
                })
            }

            fn visit_u64<E>(self, _: u64) -> Result<SpNode, E> {
                Ok(SpNode {
                    span: None,
                    node: Node::Scalar,
                })
            }

            fn visit_f64<E>(self, _: f64) -> Result<SpNode, E> {
                Ok(SpNode {
                    span: None,
                    node: Node::Scalar,
                })
            }

            fn visit_str<E>(self, _: &str) -> Result<SpNode, E> {
                Ok(SpNode {
                    span: None,
                    node: Node::Scalar,
                })
            }

            fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<SpNode, A::Error> {
                NodeVisitor
                    .visit_seq(seq)
                    .map(|node| SpNode { span: None, node })
            }

            // Either the spanned protocol (first key is the start field) or,
            // for a table toml has no span for, the table itself.
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<SpNode, A::Error> {
                let Some(first) = map.next_key::<SpKey>()? else {
                    return Ok(SpNode {
                        span: None,
                        node: Node::Table(Vec::new()),
                    });
                };
                if first.span.is_some() || first.name != SPANNED_START {
                    let entries = table_entries(Some(first), map)?;
                    return Ok(SpNode {
                        span: None,
                        node: Node::Table(entries),
                    });
                }
                let start: usize = map.next_value()?;
                let mut end = None;
                let mut node = None;
                while let Some(key) = map.next_key::<String>()? {
                    match key.as_str() {
                        SPANNED_END => end = Some(map.next_value::<usize>()?),
                        SPANNED_VALUE => node = Some(map.next_value::<Node>()?),
                        other => return Err(de::Error::unknown_field(other, SPANNED_FIELDS)),
                    }
                }
                let end = end.ok_or_else(|| de::Error::missing_field(SPANNED_END))?;
                let node = node.ok_or_else(|| de::Error::missing_field(SPANNED_VALUE))?;
                Ok(SpNode {
                    span: Some(start..end),
                    node,
                })
            }
        }
        d.deserialize_struct(SPANNED_NAME, SPANNED_FIELDS, V)
    }
}

impl<'de> Deserialize<'de> for SpKey {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<SpKey, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = SpKey;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a key")
            }

            fn visit_str<E>(self, name: &str) -> Result<SpKey, E> {
                Ok(SpKey {
                    span: None,
                    name: name.to_string(),
                })
            }

            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<SpKey, A::Error> {
                let (mut start, mut end, mut name) = (None, None, None);
                while let Some(key) = map.next_key::<String>()? {
                    match key.as_str() {
                        SPANNED_START => start = Some(map.next_value::<usize>()?),
                        SPANNED_END => end = Some(map.next_value::<usize>()?),
                        SPANNED_VALUE => name = Some(map.next_value::<String>()?),
                        other => return Err(de::Error::unknown_field(other, SPANNED_FIELDS)),
                    }
                }
                match (start, end, name) {
                    (Some(s), Some(e), Some(name)) => Ok(SpKey {
                        span: Some(s..e),
                        name,
                    }),
                    _ => Err(de::Error::custom("incomplete spanned key")),
                }
            }
        }
        d.deserialize_struct(SPANNED_NAME, SPANNED_FIELDS, V)
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

    fn text_at(path: KeyPath) -> Option<&'static str> {
        SpanIndex::new(DOC).locate(&path).map(|s| &DOC[s])
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
        let idx = SpanIndex::new(DOC);
        let at = |needle: &str| DOC.find(needle).unwrap();
        let (path, hit) = idx.describe(at("32")).unwrap();
        assert_eq!(
            (path.to_string(), hit),
            ("dataplane.burst".to_string(), Hit::Value)
        );
        let (path, hit) = idx.describe(at("\"512\"")).unwrap();
        assert_eq!(
            (path.to_string(), hit),
            ("eal.args[2]".to_string(), Hit::Value)
        );
        let (path, hit) = idx.describe(at("burst")).unwrap();
        assert_eq!(
            (path.to_string(), hit),
            ("dataplane.burst".to_string(), Hit::Key)
        );
        assert_eq!(idx.context(at("burst")).unwrap(), "(in `dataplane`)");
        assert_eq!(
            idx.context(at("\"lan\"")).unwrap(),
            "for key `port[1].name`"
        );
        assert_eq!(
            idx.context(at("[[port]]\nname = \"lan\"")).unwrap(),
            "(in `port[1]`)"
        );
        assert_eq!(idx.context(at("[eal]")), Some("(in `eal`)".to_string()));
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

    #[test]
    fn unparsable_text_gives_empty_index() {
        let idx = SpanIndex::new("[eal\n");
        assert_eq!(idx.locate(&KeyPath::root("eal")), None);
        assert_eq!(idx.describe(0), None);
    }
}
