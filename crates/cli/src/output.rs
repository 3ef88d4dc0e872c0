//! How records are printed, as az prints them: `-o json|jsonc|table|tsv|none`
//! and `--query` (JMESPath, applied before formatting).

use clap::ValueEnum;
use serde_json::Value;

use crate::Globals;

/// `-o`: az's output formats that entraflow has.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum Format {
    /// Aligned columns for people.
    Table,
    /// JSON for scripts.
    Json,
    /// JSON (az colours it; entraflow prints it as json).
    Jsonc,
    /// Tab-separated values, as az writes them: one line per record, fields of
    /// an object in key order, a nested list as its length, a nested object empty.
    Tsv,
    /// YAML, as az writes it.
    Yaml,
    /// Nothing (errors still go to stderr).
    None,
}

/// Checks a `--query` before anything runs, so a typo never follows a change.
pub(crate) fn compile(query: &str) -> anyhow::Result<()> {
    jmespath::compile(query)
        .map(drop)
        .map_err(|e| anyhow::anyhow!("--query '{query}' is not a JMESPath expression: {e}"))
}

fn apply(globals: &Globals, value: &Value) -> anyhow::Result<Value> {
    let Some(query) = &globals.query else {
        return Ok(value.clone());
    };
    let expr = jmespath::compile(query).map_err(|e| anyhow::anyhow!("--query '{query}': {e}"))?;
    let found = expr
        .search(value.clone())
        .map_err(|e| anyhow::anyhow!("--query '{query}': {e}"))?;
    Ok(serde_json::to_value(&*found)?)
}

/// Prints a record in the chosen format; `table` is the command's own table,
/// used when no `--query` reshaped the record.
pub(crate) fn emit(
    globals: &Globals,
    value: &Value,
    table: Option<&dyn Fn()>,
) -> anyhow::Result<()> {
    let shaped = apply(globals, value)?;
    match globals.format {
        Format::Json | Format::Jsonc => println!("{}", serde_json::to_string_pretty(&shaped)?),
        Format::Tsv => print!("{}", tsv(&shaped)),
        Format::Yaml => print!("{}", serde_norway::to_string(&shaped)?),
        Format::None => {}
        Format::Table => match table {
            Some(table) if globals.query.is_none() => table(),
            _ => print_table(&shaped),
        },
    }
    Ok(())
}

/// az's TSV (knack's `_TsvOutput`): a list is one row per item, anything else
/// one row.
pub(crate) fn tsv(value: &Value) -> String {
    let rows: Vec<&Value> = match value {
        Value::Array(items) => items.iter().collect(),
        other => vec![other],
    };
    let mut out = String::new();
    for row in rows {
        match row {
            Value::Object(map) => {
                let cells: Vec<String> = map.values().map(tsv_cell).collect();
                out.push_str(&cells.join("\t"));
            }
            Value::Array(items) => {
                let cells: Vec<String> = items.iter().map(tsv_cell).collect();
                out.push_str(&cells.join("\t"));
            }
            Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
            other => out.push_str(&tsv_cell(other)),
        }
        out.push('\n');
    }
    out
}

/// One field, as Python's `str()` renders it in knack's TSV.
fn tsv_cell(value: &Value) -> String {
    match value {
        Value::Array(items) => items.len().to_string(),
        Value::Object(_) => String::new(),
        Value::String(s) => s.clone(),
        Value::Null => "None".into(),
        Value::Bool(true) => "True".into(),
        Value::Bool(false) => "False".into(),
        Value::Number(n) => n.to_string(),
    }
}

fn cell(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

/// The table of any record: a list of objects as columns of their scalar
/// fields, an object as name/value lines.
pub(crate) fn print_table(v: &Value) {
    match v {
        Value::Array(items) => {
            let Some(Value::Object(first)) = items.first() else {
                for item in items {
                    println!("{}", cell(item));
                }
                return;
            };
            let cols: Vec<&String> = first
                .keys()
                .filter(|k| !first[*k].is_array() && !first[*k].is_object())
                .take(4)
                .collect();
            let rows: Vec<Vec<String>> = items
                .iter()
                .map(|i| cols.iter().map(|c| cell(&i[c.as_str()])).collect())
                .collect();
            let widths: Vec<usize> = cols
                .iter()
                .enumerate()
                .map(|(n, c)| {
                    rows.iter()
                        .map(|r| r[n].len())
                        .chain([c.len()])
                        .max()
                        .unwrap_or(0)
                })
                .collect();
            let line = |cells: Vec<String>| {
                cells
                    .iter()
                    .zip(&widths)
                    .map(|(c, w)| format!("{c:<w$}"))
                    .collect::<Vec<_>>()
                    .join("  ")
            };
            println!("{}", line(cols.iter().map(|c| c.to_string()).collect()));
            for r in rows {
                println!("{}", line(r));
            }
        }
        Value::Object(map) => {
            let w = map.keys().map(String::len).max().unwrap_or(0);
            for (k, v) in map {
                println!("{k:<w$}  {}", cell(v));
            }
        }
        other => println!("{}", cell(other)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn globals(format: Format, query: Option<&str>) -> Globals {
        Globals {
            data_dir: std::path::PathBuf::new(),
            output: crate::Output::Json,
            format,
            query: query.map(str::to_owned),
            only_show_errors: false,
        }
    }

    #[test]
    fn tsv_is_knacks_format() {
        let rows = json!([
            {"b": "x", "a": 1, "n": null, "t": true, "l": [1, 2], "o": {"k": 1}},
            {"b": "y", "a": 2, "n": null, "t": false, "l": [], "o": {}},
        ]);
        // serde_json's maps are sorted by key, as knack sorts a plain dict.
        assert_eq!(
            tsv(&rows),
            "1\tx\t2\tNone\t\tTrue\n2\ty\t0\tNone\t\tFalse\n"
        );
        assert_eq!(tsv(&json!("tok")), "tok\n");
        assert_eq!(tsv(&json!(true)), "true\n");
        assert_eq!(tsv(&json!(["a", "b"])), "a\nb\n");
    }

    #[test]
    fn queries_shape_the_record_before_it_is_formatted() {
        let record = json!([{"name": "a", "id": "1"}, {"name": "b", "id": "2"}]);
        let g = globals(Format::Tsv, Some("[?name=='b'].id"));
        assert_eq!(tsv(&apply(&g, &record).unwrap()), "2\n");
        let g = globals(Format::Json, Some("[0].{n: name}"));
        assert_eq!(apply(&g, &record).unwrap(), json!({"n": "a"}));
        assert!(compile("[?name==").is_err());
    }
}
