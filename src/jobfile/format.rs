//! The job file: a YAML or JSON list of jobs, each in the API's job input shape
//! (`POST /api/v1/jobs`), so `export` output can be fed to `apply` unchanged.

use std::path::Path;

use serde_json::Value;

use super::JobFileError;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Yaml,
    Json,
}

impl Format {
    /// `--format` if given, else from the file's extension (`.json` is JSON, anything
    /// else, stdin and stdout are YAML).
    pub fn pick(explicit: Option<Format>, path: Option<&Path>) -> Format {
        if let Some(f) = explicit {
            return f;
        }
        match path
            .and_then(|p| p.extension())
            .and_then(|e| e.to_str())
            .map(str::to_ascii_lowercase)
            .as_deref()
        {
            Some("json") => Format::Json,
            _ => Format::Yaml,
        }
    }
}

/// Parses a job file into its list of job entries (still raw JSON values).
pub fn parse(text: &str, format: Format, source: &str) -> Result<Vec<Value>, JobFileError> {
    let value: Value = match format {
        Format::Json => serde_json::from_str(text).map_err(|e| JobFileError::Parse {
            source_name: source.to_string(),
            reason: e.to_string(),
        })?,
        Format::Yaml => serde_norway::from_str(text).map_err(|e| JobFileError::Parse {
            source_name: source.to_string(),
            reason: e.to_string(),
        })?,
    };
    match value {
        Value::Array(items) => Ok(items),
        // An empty YAML document: no jobs.
        Value::Null => Ok(Vec::new()),
        other => Err(JobFileError::Parse {
            source_name: source.to_string(),
            reason: format!(
                "expected a list of jobs at the top level, found {}",
                kind_of(&other)
            ),
        }),
    }
}

pub fn kind_of(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "a map",
    }
}

/// Renders a list of jobs as YAML or pretty JSON, ending with a newline.
pub fn render<T: serde::Serialize>(jobs: &[T], format: Format) -> Result<String, JobFileError> {
    match format {
        Format::Json => {
            let mut text = serde_json::to_string_pretty(jobs)
                .map_err(|e| JobFileError::Render(e.to_string()))?;
            text.push('\n');
            Ok(text)
        }
        Format::Yaml => {
            if jobs.is_empty() {
                return Ok("[]\n".into());
            }
            serde_norway::to_string(jobs).map_err(|e| JobFileError::Render(e.to_string()))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn yaml_and_json_round_trip() {
        let jobs = vec![json!({
            "group": "g", "name": "n",
            "target": {"url": "http://127.0.0.1:9/x"},
            "payload": {"a": [1, 2.5, "*", null], "b": "yes"},
            "triggers": [{"kind": "cron", "expression": "*/5 * * * * ?", "time_zone": "UTC"}],
        })];
        for format in [Format::Yaml, Format::Json] {
            let text = render(&jobs, format).unwrap();
            assert_eq!(parse(&text, format, "t").unwrap(), jobs, "{text}");
        }
        assert_eq!(render::<Value>(&[], Format::Yaml).unwrap(), "[]\n");
        assert_eq!(parse("", Format::Yaml, "t").unwrap(), Vec::<Value>::new());
    }

    #[test]
    fn a_map_at_the_top_is_refused() {
        let err = parse("name: x\n", Format::Yaml, "jobs.yaml").unwrap_err();
        assert!(err.to_string().contains("expected a list of jobs"), "{err}");
        assert!(err.to_string().starts_with("jobs.yaml:"), "{err}");
    }

    #[test]
    fn format_follows_the_extension() {
        assert_eq!(Format::pick(None, Some(Path::new("a.JSON"))), Format::Json);
        assert_eq!(Format::pick(None, Some(Path::new("a.yml"))), Format::Yaml);
        assert_eq!(Format::pick(None, None), Format::Yaml);
        assert_eq!(
            Format::pick(Some(Format::Json), Some(Path::new("a.yaml"))),
            Format::Json
        );
    }
}
