//! The YAML of an environment file as a tree that keeps every node's file and position.
//!
//! envctl reads a file in two passes: the YAML parser builds this tree (syntax errors,
//! duplicate keys and the parser's limits stop it there), then [`super::raw`] walks the tree
//! leniently, so an unknown key or a value of the wrong type is one problem among all the
//! others of the file, not the end of the reading. Several `-f` files are merged on this
//! tree, each node still pointing at the file it came from.

use std::fmt;

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_saphyr::Spanned;

use super::diagnostic::Position;

/// One YAML node and where it is written.
#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    pub kind: NodeKind,
    pub at: Option<Position>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum NodeKind {
    Null,
    Scalar(Scalar),
    Seq(Vec<Node>),
    /// Entries in file order; the parser has rejected duplicate keys.
    Map(Vec<(Key, Node)>),
}

/// A scalar as written (`text`) and as YAML types it.
#[derive(Debug, Clone, PartialEq)]
pub struct Scalar {
    pub text: String,
    pub ty: ScalarType,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScalarType {
    Str,
    Bool(bool),
    Int(i64),
    Float,
}

/// A mapping key: its text and position.
#[derive(Debug, Clone, PartialEq)]
pub struct Key {
    pub name: String,
    pub at: Option<Position>,
}

impl Node {
    /// What a message calls this node's type: `a string`, `a list`...
    pub fn type_name(&self) -> &'static str {
        match &self.kind {
            NodeKind::Null => "nothing",
            NodeKind::Scalar(s) => match s.ty {
                ScalarType::Str => "a string",
                ScalarType::Bool(_) => "a boolean",
                ScalarType::Int(_) => "a number",
                ScalarType::Float => "a number",
            },
            NodeKind::Seq(_) => "a list",
            NodeKind::Map(_) => "a map",
        }
    }

    pub fn get(&self, key: &str) -> Option<&Node> {
        match &self.kind {
            NodeKind::Map(entries) => entries.iter().find(|(k, _)| k.name == key).map(|e| &e.1),
            _ => None,
        }
    }
}

/// The node types as the parser delivers them, before positions are resolved.
enum Parsed {
    Null,
    Str(String),
    Bool(bool),
    Int(i64),
    /// Integers beyond i64 and floats: kept as written.
    Number,
    Seq(Vec<Spanned<Parsed>>),
    Map(Vec<(Spanned<Parsed>, Spanned<Parsed>)>),
}

impl<'de> Deserialize<'de> for Parsed {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(ParsedVisitor)
    }
}

struct ParsedVisitor;

impl<'de> Visitor<'de> for ParsedVisitor {
    type Value = Parsed;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a YAML value")
    }
    fn visit_unit<E>(self) -> Result<Parsed, E> {
        Ok(Parsed::Null)
    }
    fn visit_none<E>(self) -> Result<Parsed, E> {
        Ok(Parsed::Null)
    }
    fn visit_bool<E>(self, v: bool) -> Result<Parsed, E> {
        Ok(Parsed::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Parsed, E> {
        Ok(Parsed::Int(v))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Parsed, E> {
        Ok(i64::try_from(v).map_or(Parsed::Number, Parsed::Int))
    }
    fn visit_i128<E>(self, _: i128) -> Result<Parsed, E> {
        Ok(Parsed::Number)
    }
    fn visit_u128<E>(self, _: u128) -> Result<Parsed, E> {
        Ok(Parsed::Number)
    }
    fn visit_f64<E>(self, _: f64) -> Result<Parsed, E> {
        Ok(Parsed::Number)
    }
    fn visit_str<E>(self, v: &str) -> Result<Parsed, E> {
        Ok(Parsed::Str(v.to_string()))
    }
    fn visit_string<E>(self, v: String) -> Result<Parsed, E> {
        Ok(Parsed::Str(v))
    }
    fn visit_bytes<E: de::Error>(self, _: &[u8]) -> Result<Parsed, E> {
        Err(E::custom("binary values are not supported"))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Parsed, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element()? {
            items.push(item);
        }
        Ok(Parsed::Seq(items))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Parsed, A::Error> {
        let mut entries = Vec::new();
        while let Some(entry) = map.next_entry()? {
            entries.push(entry);
        }
        Ok(Parsed::Map(entries))
    }
}

/// Parses one file's YAML into a tree whose positions name file `file`.
pub fn parse(source: &str, file: usize) -> Result<Node, serde_saphyr::Error> {
    let options = serde_saphyr::options! { with_snippet: false };
    let parsed: Spanned<Parsed> = serde_saphyr::from_str_with_options(source, options)?;
    Ok(resolve(parsed, source, file))
}

fn position(location: serde_saphyr::Location, file: usize) -> Option<Position> {
    Position::from_location(location).map(|p| Position { file, ..p })
}

/// The source text of a plain scalar, as written (`1.10` stays `1.10`, not `1.1`).
fn written(location: serde_saphyr::Location, source: &str) -> Option<String> {
    let span = location.span();
    let start = usize::try_from(span.byte_offset()?).ok()?;
    let len = usize::try_from(span.byte_len()?).ok()?;
    source
        .get(start..start.checked_add(len)?)
        .map(|t| t.trim().to_string())
        .filter(|t| !t.is_empty())
}

fn resolve(parsed: Spanned<Parsed>, source: &str, file: usize) -> Node {
    let at = position(parsed.referenced, file);
    let text = |fallback: String| written(parsed.defined, source).unwrap_or(fallback);
    let kind = match parsed.value {
        Parsed::Null => NodeKind::Null,
        Parsed::Str(s) => NodeKind::Scalar(Scalar {
            text: s,
            ty: ScalarType::Str,
        }),
        Parsed::Bool(b) => NodeKind::Scalar(Scalar {
            text: text(b.to_string()),
            ty: ScalarType::Bool(b),
        }),
        Parsed::Int(i) => NodeKind::Scalar(Scalar {
            text: text(i.to_string()),
            ty: ScalarType::Int(i),
        }),
        Parsed::Number => NodeKind::Scalar(Scalar {
            text: text(String::new()),
            ty: ScalarType::Float,
        }),
        Parsed::Seq(items) => NodeKind::Seq(
            items
                .into_iter()
                .map(|i| resolve(i, source, file))
                .collect(),
        ),
        Parsed::Map(entries) => NodeKind::Map(
            entries
                .into_iter()
                .map(|(k, v)| {
                    let key_at = position(k.referenced, file);
                    let key = resolve(k, source, file);
                    let name = match key.kind {
                        NodeKind::Scalar(s) => s.text,
                        NodeKind::Null => String::new(),
                        _ => "?".to_string(),
                    };
                    (Key { name, at: key_at }, resolve(v, source, file))
                })
                .collect(),
        ),
    };
    Node { kind, at }
}

/// Merges `over` into `base` the way docker-compose merges override files: maps merge key by
/// key, recursively; the later file wins for scalars; lists are appended, except the keys
/// named by `list_rule` at that path.
pub fn merge(base: Node, over: Node, path: &mut Vec<String>) -> Node {
    match (base.kind, over.kind) {
        (NodeKind::Map(mut entries), NodeKind::Map(more)) => {
            for (key, value) in more {
                match entries.iter().position(|(k, _)| k.name == key.name) {
                    Some(i) => {
                        let (old_key, old) = entries.remove(i);
                        path.push(key.name.clone());
                        let merged = merge(old, value, path);
                        path.pop();
                        // The merged entry keeps the base key's place, so output stays in the
                        // shared file's order; its position is the newest writer's.
                        entries.insert(
                            i,
                            (
                                Key {
                                    at: key.at,
                                    ..old_key
                                },
                                merged,
                            ),
                        );
                    }
                    None => entries.push((key, value)),
                }
            }
            Node {
                kind: NodeKind::Map(entries),
                at: base.at,
            }
        }
        (NodeKind::Seq(items), NodeKind::Seq(more)) => match list_rule(path) {
            ListRule::Replace => Node {
                kind: NodeKind::Seq(more),
                at: over.at,
            },
            ListRule::Append => Node {
                kind: NodeKind::Seq(append_unique(items, more, |n| {
                    scalar_text(n).map(str::to_string)
                })),
                at: base.at,
            },
            ListRule::ByTarget => Node {
                kind: NodeKind::Seq(append_unique(items, more, mount_target)),
                at: base.at,
            },
        },
        (_, kind) => Node { kind, at: over.at },
    }
}

enum ListRule {
    /// Later file's list replaces the earlier one: a command is one value.
    Replace,
    /// Concatenated; an equal scalar entry is not added twice.
    Append,
    /// Volumes: an entry for the same container path replaces the earlier one.
    ByTarget,
}

/// Which lists compose replaces rather than appends: `command`, `entrypoint` and a readiness
/// `exec` are one value each; volumes merge by their container path.
fn list_rule(path: &[String]) -> ListRule {
    match path {
        [services, _, key] if services == "services" => match key.as_str() {
            "command" | "entrypoint" => ListRule::Replace,
            "volumes" => ListRule::ByTarget,
            _ => ListRule::Append,
        },
        [services, _, ready, exec]
            if services == "services" && ready == "ready" && exec == "exec" =>
        {
            ListRule::Replace
        }
        _ => ListRule::Append,
    }
}

fn scalar_text(node: &Node) -> Option<&str> {
    match &node.kind {
        NodeKind::Scalar(s) => Some(&s.text),
        _ => None,
    }
}

/// The container path of a volume entry, short (`data:/var/lib/x:ro`) or long (`target:`).
fn mount_target(node: &Node) -> Option<String> {
    match &node.kind {
        NodeKind::Scalar(s) => {
            let mut parts = s.text.split(':');
            let first = parts.next()?;
            Some(parts.next().unwrap_or(first).to_string())
        }
        NodeKind::Map(_) => node.get("target").and_then(scalar_text).map(str::to_string),
        _ => None,
    }
}

fn append_unique(
    mut items: Vec<Node>,
    more: Vec<Node>,
    identity: impl Fn(&Node) -> Option<String>,
) -> Vec<Node> {
    for item in more {
        let id = identity(&item);
        match id
            .as_ref()
            .and_then(|id| items.iter().position(|i| identity(i).as_ref() == Some(id)))
        {
            Some(i) => items[i] = item,
            None => items.push(item),
        }
    }
    items
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tree(source: &str, file: usize) -> Node {
        parse(source, file).expect("valid YAML")
    }

    fn text(node: &Node) -> &str {
        scalar_text(node).expect("a scalar")
    }

    #[test]
    fn keeps_scalars_as_written_and_typed() {
        let root = tree("a: 1.10\nb: \"8080\"\nc: 8080\nd: yes\ne:\n", 0);
        assert_eq!(text(root.get("a").unwrap()), "1.10");
        let b = root.get("b").unwrap();
        assert!(
            matches!(&b.kind, NodeKind::Scalar(Scalar { ty: ScalarType::Str, text }) if text == "8080")
        );
        let c = root.get("c").unwrap();
        assert!(matches!(
            &c.kind,
            NodeKind::Scalar(Scalar {
                ty: ScalarType::Int(8080),
                ..
            })
        ));
        assert_eq!(text(root.get("d").unwrap()), "yes");
        assert_eq!(root.get("e").unwrap().kind, NodeKind::Null);
    }

    #[test]
    fn positions_name_the_file_line_and_column() {
        let root = tree("services:\n  db:\n    image: x\n", 3);
        let image = root
            .get("services")
            .unwrap()
            .get("db")
            .unwrap()
            .get("image")
            .unwrap();
        assert_eq!(
            image.at,
            Some(Position {
                file: 3,
                line: 3,
                column: 12
            })
        );
    }

    #[test]
    fn duplicate_keys_stop_the_parser() {
        assert!(parse("a: 1\na: 2\n", 0).is_err());
    }

    fn merged(base: &str, over: &str) -> Node {
        merge(tree(base, 0), tree(over, 1), &mut Vec::new())
    }

    #[test]
    fn a_later_file_wins_for_scalars_and_merges_maps() {
        let root = merged(
            "services:\n  db:\n    image: oracle\n    tag: '1'\n    env: {A: a, B: b}\n",
            "services:\n  db:\n    tag: '2'\n    env: {B: c}\n",
        );
        let db = root.get("services").unwrap().get("db").unwrap();
        assert_eq!(text(db.get("image").unwrap()), "oracle");
        assert_eq!(text(db.get("tag").unwrap()), "2");
        assert_eq!(db.get("tag").unwrap().at.unwrap().file, 1);
        let env = db.get("env").unwrap();
        assert_eq!(text(env.get("A").unwrap()), "a");
        assert_eq!(text(env.get("B").unwrap()), "c");
    }

    #[test]
    fn lists_append_but_commands_replace_and_volumes_merge_by_target() {
        let root = merged(
            "services:\n  db:\n    ports: [1521]\n    command: [a, b]\n    \
             volumes: ['data:/d', './x:/x']\n",
            "services:\n  db:\n    ports: [1521, 5500]\n    command: [c]\n    \
             volumes: ['./y:/x:ro']\n",
        );
        let db = root.get("services").unwrap().get("db").unwrap();
        let list = |key: &str| match &db.get(key).unwrap().kind {
            NodeKind::Seq(items) => items
                .iter()
                .map(|n| text(n).to_string())
                .collect::<Vec<_>>(),
            _ => panic!("not a list"),
        };
        assert_eq!(list("ports"), ["1521", "5500"]);
        assert_eq!(list("command"), ["c"]);
        assert_eq!(list("volumes"), ["data:/d", "./y:/x:ro"]);
    }
}
