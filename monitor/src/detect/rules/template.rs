//! Output templates: alert text with `{field}` placeholders, checked against the field table
//! when the rule loads.
use super::fields::{self, Field};
use crate::event::Event;

/// An output template: text with `{field}` placeholders.
#[derive(Debug, Clone)]
pub(crate) struct Template {
    parts: Vec<(String, Option<Field>)>,
}

impl Template {
    pub(super) fn parse(s: &str) -> Result<Template, String> {
        let mut parts = Vec::new();
        let mut rest = s;
        while let Some(i) = rest.find('{') {
            let Some(j) = rest[i..].find('}') else {
                return Err(format!("unclosed `{{` in output at `{}`", &rest[i..]));
            };
            let name = &rest[i + 1..i + j];
            let (f, _) = fields::lookup(name)
                .ok_or_else(|| format!("output names unknown field `{name}`"))?;
            parts.push((rest[..i].to_string(), Some(f)));
            rest = &rest[i + j + 1..];
        }
        parts.push((rest.to_string(), None));
        Ok(Template { parts })
    }

    pub(crate) fn render(&self, e: &Event) -> String {
        let mut out = String::new();
        for (text, f) in &self.parts {
            out.push_str(text);
            if let Some(f) = f {
                out.push_str(
                    &fields::render(&fields::get(f, e)).unwrap_or_else(|| "<none>".into()),
                );
            }
        }
        out
    }
}
