//! ChatBotKit's model strings: a model name, then `/key=value` parameters, for example
//! `gpt-4o-mini/temperature=0.2/maxTokens=512`.
//!
//! Model names may contain `/` themselves (OpenRouter's `anthropic/claude-3.5-sonnet`), so the
//! name is every segment before the first one holding `=`.

use std::fmt;
use std::str::FromStr;

#[derive(Debug, Clone, PartialEq, Default)]
pub struct ModelSpec {
    pub name: String,
    /// 0 to 2.
    pub temperature: Option<f32>,
    /// Most tokens the model may produce in one reply.
    pub max_tokens: Option<u32>,
    /// 0 to 1.
    pub top_p: Option<f32>,
    /// -2 to 2.
    pub frequency_penalty: Option<f32>,
    /// -2 to 2.
    pub presence_penalty: Option<f32>,
    /// How many past messages the model sees at most.
    pub interaction_max_messages: Option<u32>,
}

/// Why a model string is not valid; the message names the problem.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("invalid model {0}")]
pub struct ModelError(String);

const KNOWN: [&str; 6] = [
    "temperature",
    "maxTokens",
    "topP",
    "frequencyPenalty",
    "presencePenalty",
    "interactionMaxMessages",
];

fn err(msg: impl Into<String>) -> ModelError {
    ModelError(msg.into())
}

fn ranged_f32(key: &str, raw: &str, lo: f32, hi: f32) -> Result<f32, ModelError> {
    let v: f32 = raw
        .parse()
        .map_err(|_| err(format!("parameter {key}: {raw:?} is not a number")))?;
    if !v.is_finite() || v < lo || v > hi {
        return Err(err(format!("parameter {key}: {v} is outside {lo}..={hi}")));
    }
    Ok(v)
}

fn ranged_u32(key: &str, raw: &str, lo: u32, hi: u32) -> Result<u32, ModelError> {
    let v: u32 = raw
        .parse()
        .map_err(|_| err(format!("parameter {key}: {raw:?} is not a whole number")))?;
    if v < lo || v > hi {
        return Err(err(format!("parameter {key}: {v} is outside {lo}..={hi}")));
    }
    Ok(v)
}

impl FromStr for ModelSpec {
    type Err = ModelError;

    fn from_str(s: &str) -> Result<Self, ModelError> {
        if s.len() > 256 {
            return Err(err("string: longer than 256 characters"));
        }
        let segments: Vec<&str> = s.split('/').collect();
        let first_param = segments
            .iter()
            .position(|seg| seg.contains('='))
            .unwrap_or(segments.len());
        let (name_parts, params) = segments.split_at(first_param);
        // `gpt-4o/temperature` is a forgotten value, not a model called that.
        if let Some(bare) = name_parts.iter().skip(1).find(|p| KNOWN.contains(p)) {
            return Err(err(format!(
                "parameter {bare}: no value (write {bare}=VALUE)"
            )));
        }
        let name = name_parts.join("/");
        if name.is_empty() || name_parts.iter().any(|p| p.is_empty()) {
            return Err(err(
                "string: the model name is missing or has an empty part",
            ));
        }
        if let Some(c) = name
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || "-._:@/".contains(*c)))
        {
            return Err(err(format!(
                "name {name:?}: character {c:?} is not allowed"
            )));
        }
        let mut spec = ModelSpec {
            name,
            ..Default::default()
        };
        for seg in params {
            let (key, value) = seg.split_once('=').ok_or_else(|| {
                err(format!(
                    "string: {seg:?} after the parameters is not key=value"
                ))
            })?;
            if value.is_empty() {
                return Err(err(format!("parameter {key}: no value")));
            }
            let duplicate = match key {
                "temperature" => spec
                    .temperature
                    .replace(ranged_f32(key, value, 0.0, 2.0)?)
                    .is_some(),
                "maxTokens" => spec
                    .max_tokens
                    .replace(ranged_u32(key, value, 1, 1_000_000)?)
                    .is_some(),
                "topP" => spec
                    .top_p
                    .replace(ranged_f32(key, value, 0.0, 1.0)?)
                    .is_some(),
                "frequencyPenalty" => spec
                    .frequency_penalty
                    .replace(ranged_f32(key, value, -2.0, 2.0)?)
                    .is_some(),
                "presencePenalty" => spec
                    .presence_penalty
                    .replace(ranged_f32(key, value, -2.0, 2.0)?)
                    .is_some(),
                "interactionMaxMessages" => spec
                    .interaction_max_messages
                    .replace(ranged_u32(key, value, 1, 10_000)?)
                    .is_some(),
                other => {
                    return Err(err(format!(
                        "parameter {other:?}: unknown (known: temperature, maxTokens, topP, \
                         frequencyPenalty, presencePenalty, interactionMaxMessages)"
                    )));
                }
            };
            if duplicate {
                return Err(err(format!("parameter {key}: given twice")));
            }
        }
        Ok(spec)
    }
}

impl fmt::Display for ModelSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.name)?;
        if let Some(v) = self.temperature {
            write!(f, "/temperature={v}")?;
        }
        if let Some(v) = self.max_tokens {
            write!(f, "/maxTokens={v}")?;
        }
        if let Some(v) = self.top_p {
            write!(f, "/topP={v}")?;
        }
        if let Some(v) = self.frequency_penalty {
            write!(f, "/frequencyPenalty={v}")?;
        }
        if let Some(v) = self.presence_penalty {
            write!(f, "/presencePenalty={v}")?;
        }
        if let Some(v) = self.interaction_max_messages {
            write!(f, "/interactionMaxMessages={v}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_names_and_parameters() {
        let m: ModelSpec = "gpt-4o-mini/temperature=0.2/maxTokens=512".parse().unwrap();
        assert_eq!(m.name, "gpt-4o-mini");
        assert_eq!(m.temperature, Some(0.2));
        assert_eq!(m.max_tokens, Some(512));
        let m: ModelSpec = "anthropic/claude-3.5-sonnet/topP=0.9".parse().unwrap();
        assert_eq!(m.name, "anthropic/claude-3.5-sonnet");
        assert_eq!(m.top_p, Some(0.9));
        let m: ModelSpec = "llama3.1:8b".parse().unwrap();
        assert_eq!(m.to_string(), "llama3.1:8b");
        let round = "gpt-4o/temperature=1/maxTokens=10";
        assert_eq!(round.parse::<ModelSpec>().unwrap().to_string(), round);
    }

    #[test]
    fn malformed_strings_name_the_problem() {
        for (input, needle) in [
            ("", "missing"),
            ("/temperature=1", "missing"),
            ("gpt-4o/temperature", "temperature"),
            ("gpt-4o/temperature=hot", "temperature"),
            ("gpt-4o/temperature=3", "outside"),
            ("gpt-4o/maxTokens=0", "maxTokens"),
            ("gpt-4o/maxTokens=1.5", "whole number"),
            ("gpt-4o/colour=blue", "colour"),
            ("gpt-4o/temperature=1/temperature=1", "twice"),
            ("gpt 4o", "not allowed"),
            ("gpt-4o/temperature=", "no value"),
            ("gpt-4o/temperature=NaN", "outside"),
        ] {
            let e = input.parse::<ModelSpec>().unwrap_err().to_string();
            assert!(e.contains(needle), "{input:?}: {e}");
        }
    }
}
