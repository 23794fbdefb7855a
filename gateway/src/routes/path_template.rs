//! `google.api.http` path templates: parsing and matching.
//!
//! Grammar (from the HttpRule documentation):
//! ```text
//! Template = "/" Segments [ Verb ] ;
//! Segments = Segment { "/" Segment } ;
//! Segment  = "*" | "**" | LITERAL | Variable ;
//! Variable = "{" FieldPath [ "=" Segments ] "}" ;
//! Verb     = ":" LITERAL ;
//! ```
//! `{name}` is short for `{name=*}`. `**` matches the rest of the path and
//! may only come last.

use std::borrow::Cow;

use percent_encoding::percent_decode_str;

#[derive(Debug, Clone, PartialEq, Eq)]
enum Segment {
    Literal(String),
    /// `*`: exactly one segment.
    One,
    /// `**`: zero or more segments, last only.
    Rest,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Variable {
    field_path: String,
    /// Index of the first segment the variable covers.
    start: usize,
    /// One past its last segment.
    end: usize,
}

#[derive(Debug, Clone)]
pub struct PathTemplate {
    source: String,
    segments: Vec<Segment>,
    variables: Vec<Variable>,
    verb: Option<String>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("path template {template:?}: {reason}")]
pub struct TemplateError {
    template: String,
    reason: &'static str,
}

/// A variable bound by a match: the request field path and its decoded value.
pub type Binding = (String, String);

impl PathTemplate {
    pub fn parse(template: &str) -> Result<Self, TemplateError> {
        let fail = |reason| TemplateError {
            template: template.to_owned(),
            reason,
        };
        let body = template.strip_prefix('/').ok_or_else(|| fail("must start with /"))?;
        let (body, verb) = split_verb(body);
        let mut parser = Parser {
            segments: Vec::new(),
            variables: Vec::new(),
        };
        parser.parse_segments(body, None).map_err(fail)?;
        let rest_at = parser.segments.iter().position(|s| *s == Segment::Rest);
        if rest_at.is_some_and(|i| i + 1 != parser.segments.len()) {
            return Err(fail("** may only be the last segment"));
        }
        Ok(Self {
            source: template.to_owned(),
            segments: parser.segments,
            variables: parser.variables,
            verb: verb.map(str::to_owned),
        })
    }

    pub fn as_str(&self) -> &str {
        &self.source
    }

    /// The literal path before the first variable or wildcard, used to find
    /// the upstream that serves this route.
    pub fn literal_prefix(&self) -> String {
        let mut prefix = String::new();
        for (i, segment) in self.segments.iter().enumerate() {
            let in_variable = self.variables.iter().any(|v| (v.start..v.end).contains(&i));
            match segment {
                Segment::Literal(lit) if !in_variable => {
                    prefix.push('/');
                    prefix.push_str(lit);
                }
                _ => break,
            }
        }
        prefix
    }

    /// How many literal segments the template has: more is more specific.
    pub fn specificity(&self) -> usize {
        self.segments
            .iter()
            .filter(|s| matches!(s, Segment::Literal(_)))
            .count()
    }

    /// Matches a request path (without query); on success returns the
    /// variables' bindings, percent-decoded.
    pub fn matches(&self, path: &str) -> Option<Vec<Binding>> {
        let body = path.strip_prefix('/')?;
        let body = match &self.verb {
            Some(verb) => body.strip_suffix(verb.as_str())?.strip_suffix(':')?,
            None => body,
        };
        let parts: Vec<&str> = if body.is_empty() {
            Vec::new()
        } else {
            body.split('/').collect()
        };
        let consumed = self.match_segments(&parts)?;
        let mut bindings = Vec::with_capacity(self.variables.len());
        for var in &self.variables {
            let end = map_end(var.end, &self.segments, consumed);
            let raw = parts[var.start..end].join("/");
            let value = percent_decode_str(&raw).decode_utf8().ok()?;
            if value.is_empty() {
                return None;
            }
            bindings.push((var.field_path.clone(), Cow::into_owned(value)));
        }
        Some(bindings)
    }

    /// Checks each segment; returns the number of path parts consumed.
    fn match_segments(&self, parts: &[&str]) -> Option<usize> {
        for (i, segment) in self.segments.iter().enumerate() {
            match segment {
                Segment::Rest => return Some(parts.len()),
                Segment::One => {
                    if parts.get(i).is_none_or(|p| p.is_empty()) {
                        return None;
                    }
                }
                Segment::Literal(lit) => {
                    if parts.get(i) != Some(&lit.as_str()) {
                        return None;
                    }
                }
            }
        }
        (parts.len() == self.segments.len()).then_some(parts.len())
    }
}

/// A variable ending at the template's end absorbs what `**` consumed.
fn map_end(end: usize, segments: &[Segment], consumed: usize) -> usize {
    if end == segments.len() && segments.last() == Some(&Segment::Rest) {
        consumed
    } else {
        end
    }
}

fn split_verb(body: &str) -> (&str, Option<&str>) {
    // A verb is a ':' after the last '/' and outside any variable.
    let last_slash = body.rfind('/').map_or(0, |i| i + 1);
    let last_close = body.rfind('}').map_or(0, |i| i + 1);
    let tail_start = last_slash.max(last_close);
    match body[tail_start..].find(':') {
        Some(i) => (&body[..tail_start + i], Some(&body[tail_start + i + 1..])),
        None => (body, None),
    }
}

struct Parser {
    segments: Vec<Segment>,
    variables: Vec<Variable>,
}

impl Parser {
    fn parse_segments(&mut self, text: &str, in_variable: Option<&str>) -> Result<(), &'static str> {
        if text.is_empty() {
            return Err("empty segment");
        }
        let mut rest = text;
        loop {
            let (segment, tail) = next_segment(rest)?;
            self.parse_segment(segment, in_variable)?;
            match tail {
                Some(tail) => rest = tail,
                None => return Ok(()),
            }
        }
    }

    fn parse_segment(&mut self, segment: &str, in_variable: Option<&str>) -> Result<(), &'static str> {
        let parsed = match segment {
            "" => return Err("empty segment"),
            "*" => Segment::One,
            "**" => Segment::Rest,
            s if s.starts_with('{') => return self.parse_variable(s, in_variable),
            s if s.contains(['{', '}', '*']) => return Err("misplaced {, } or *"),
            s => Segment::Literal(s.to_owned()),
        };
        self.segments.push(parsed);
        Ok(())
    }

    fn parse_variable(&mut self, segment: &str, in_variable: Option<&str>) -> Result<(), &'static str> {
        if in_variable.is_some() {
            return Err("variables cannot nest");
        }
        let inner = segment
            .strip_prefix('{')
            .and_then(|s| s.strip_suffix('}'))
            .ok_or("unclosed variable")?;
        let (field_path, pattern) = inner.split_once('=').unwrap_or((inner, "*"));
        if field_path.is_empty() || !field_path.split('.').all(is_ident) {
            return Err("variable names must be field paths");
        }
        let start = self.segments.len();
        self.parse_segments(pattern, Some(field_path))?;
        self.variables.push(Variable {
            field_path: field_path.to_owned(),
            start,
            end: self.segments.len(),
        });
        Ok(())
    }
}

/// Splits off the first segment, treating a `{…}` variable as one segment
/// even when its pattern contains '/'.
fn next_segment(text: &str) -> Result<(&str, Option<&str>), &'static str> {
    let end = if text.starts_with('{') {
        text.find('}').ok_or("unclosed variable")? + 1
    } else {
        text.find('/').unwrap_or(text.len())
    };
    let (segment, tail) = text.split_at(end);
    match tail.strip_prefix('/') {
        Some(tail) => Ok((segment, Some(tail))),
        None if tail.is_empty() => Ok((segment, None)),
        None => Err("a variable must be a whole segment"),
    }
}

fn is_ident(s: &str) -> bool {
    let mut chars = s.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bind(template: &str, path: &str) -> Option<Vec<(String, String)>> {
        PathTemplate::parse(template).unwrap().matches(path)
    }

    #[test]
    fn literal_templates_match_only_their_path() {
        assert_eq!(bind("/api/v1/bots", "/api/v1/bots"), Some(vec![]));
        assert_eq!(bind("/api/v1/bots", "/api/v1/bots/x"), None);
        assert_eq!(bind("/api/v1/bots", "/api/v1/bot"), None);
    }

    #[test]
    fn a_variable_binds_one_decoded_segment() {
        assert_eq!(
            bind(
                "/api/v1/conversations/{conversation_id}/messages",
                "/api/v1/conversations/conv_a%20b/messages"
            ),
            Some(vec![("conversation_id".into(), "conv_a b".into())])
        );
        assert_eq!(
            bind("/api/v1/conversations/{conversation_id}", "/api/v1/conversations/"),
            None
        );
        assert_eq!(
            bind("/api/v1/conversations/{conversation_id}", "/api/v1/conversations/a/b"),
            None
        );
    }

    #[test]
    fn several_variables_and_nested_field_paths_bind() {
        assert_eq!(
            bind("/v1/{parent.id}/items/{item_id}", "/v1/p1/items/i2"),
            Some(vec![("parent.id".into(), "p1".into()), ("item_id".into(), "i2".into())])
        );
    }

    #[test]
    fn a_variable_with_a_pattern_binds_several_segments() {
        assert_eq!(
            bind("/v1/{name=shelves/*/books/*}", "/v1/shelves/s1/books/b2"),
            Some(vec![("name".into(), "shelves/s1/books/b2".into())])
        );
        assert_eq!(bind("/v1/{name=shelves/*/books/*}", "/v1/shelves/s1/cds/b2"), None);
    }

    #[test]
    fn double_wildcard_takes_the_rest_of_the_path() {
        assert_eq!(
            bind("/v1/files/{path=**}", "/v1/files/a/b/c.txt"),
            Some(vec![("path".into(), "a/b/c.txt".into())])
        );
        assert_eq!(bind("/v1/static/**", "/v1/static/x/y"), Some(vec![]));
    }

    #[test]
    fn a_custom_verb_must_be_present() {
        assert_eq!(
            bind("/v1/bots/{bot_id}:train", "/v1/bots/bot_1:train"),
            Some(vec![("bot_id".into(), "bot_1".into())])
        );
        assert_eq!(bind("/v1/bots/{bot_id}:train", "/v1/bots/bot_1"), None);
    }

    #[test]
    fn malformed_templates_are_rejected() {
        for bad in [
            "api/v1",
            "/v1/{unclosed",
            "/v1/**/x",
            "/v1/a{b}",
            "/v1/{a={b}}",
            "/v1//x",
            "/v1/{1x}",
        ] {
            assert!(PathTemplate::parse(bad).is_err(), "{bad} should be rejected");
        }
    }

    #[test]
    fn the_literal_prefix_stops_at_the_first_variable() {
        let t = PathTemplate::parse("/api/v1/conversations/{conversation_id}/messages").unwrap();
        assert_eq!(t.literal_prefix(), "/api/v1/conversations");
        assert_eq!(t.specificity(), 4);
    }
}
