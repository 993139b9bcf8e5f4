//! The README's configuration table, the `--help` text and the defaults are checked against the
//! one definition of the options (`volley_wire::config`): every flag is a row with its environment
//! variable and file key; every file key (read from the type itself, not a copied list) is a row;
//! every default a row or a `--help` line states is the value [`Options::defaults`] holds; and
//! every row names real flags and keys the loader accepts. None of them can drift from the code.

use std::collections::BTreeMap;

use clap::CommandFactory;
use serde::de::{self, DeserializeOwned, Visitor};
use volley_gateway::config::{Cli, Jwt, Options, parse_yaml};

/// One row of the table: `flag | env | file key | default | meaning`.
#[derive(Debug)]
struct Row {
    flags: String,
    env: String,
    key: String,
    default: String,
}

fn readme_rows() -> Vec<Row> {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md"))
        .expect("README.md");
    let start = readme
        .find("| flag | env | file key | default | meaning |")
        .expect("the configuration table");
    readme[start..]
        .lines()
        .skip(2)
        .take_while(|l| l.starts_with('|'))
        .map(|line| {
            // No cell of this table holds a `|` of its own.
            let cells: Vec<&str> = line.trim_matches('|').split('|').map(str::trim).collect();
            assert!(cells.len() >= 5, "a five-cell row: {line}");
            Row {
                flags: cells[0].to_owned(),
                env: cells[1].to_owned(),
                key: cells[2].to_owned(),
                default: cells[3].to_owned(),
            }
        })
        .collect()
}

/// The `(file key, default)` pairs of a row: one default per key, or one for all of them.
fn row_defaults(row: &Row) -> Vec<(String, String)> {
    let keys: Vec<String> = cells(&row.key);
    let defaults: Vec<String> = row.default.split(", ").map(str::to_owned).collect();
    keys.iter()
        .enumerate()
        .map(|(i, k)| {
            let d = if defaults.len() == keys.len() {
                &defaults[i]
            } else {
                &row.default
            };
            (k.clone(), d.clone())
        })
        .collect()
}

/// The backticked items of a cell: "`a`, `b`" → [a, b].
fn cells(cell: &str) -> Vec<String> {
    cell.split(", ")
        .filter(|c| !c.is_empty())
        .map(|c| c.trim_matches('`').to_owned())
        .collect()
}

/// The leading backticked literal of a default cell ("`0` (off)" → "0"), if it has one.
fn literal(cell: &str) -> Option<&str> {
    cell.strip_prefix('`')?.split('`').next()
}

/// Every fixed default, by dotted file key, as its YAML scalar (`flushInterval` → `10ms`).
fn fixed_defaults() -> BTreeMap<String, String> {
    let value = serde_yaml::to_value(Options::defaults()).unwrap();
    let mut out = BTreeMap::new();
    flatten("", &value, &mut out);
    out
}

fn flatten(prefix: &str, value: &serde_yaml::Value, out: &mut BTreeMap<String, String>) {
    match value {
        serde_yaml::Value::Mapping(map) => {
            for (k, v) in map {
                let k = k.as_str().expect("string keys");
                let key = if prefix.is_empty() {
                    k.to_owned()
                } else {
                    format!("{prefix}.{k}")
                };
                flatten(&key, v, out);
            }
        }
        scalar => {
            let text = serde_yaml::to_string(scalar).unwrap();
            out.insert(prefix.to_owned(), text.trim().to_owned());
        }
    }
}

/// A deserializer that only records the field names a struct asks for: the file keys, read from
/// the type's own serde derive (with its renames).
struct FieldNames<'a>(&'a mut Option<&'static [&'static str]>);

impl<'de> de::Deserializer<'de> for FieldNames<'_> {
    type Error = de::value::Error;

    fn deserialize_any<V: Visitor<'de>>(self, _: V) -> Result<V::Value, Self::Error> {
        Err(de::Error::custom("not a struct"))
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        fields: &'static [&'static str],
        _visitor: V,
    ) -> Result<V::Value, Self::Error> {
        *self.0 = Some(fields);
        Err(de::Error::custom("fields recorded"))
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf
        option unit unit_struct newtype_struct seq tuple tuple_struct map enum identifier
        ignored_any
    }
}

fn field_names<T: DeserializeOwned>() -> &'static [&'static str] {
    let mut names = None;
    let _ = T::deserialize(FieldNames(&mut names));
    names.expect("a struct")
}

/// Every leaf key of the file: the top-level keys, with the `auth` section spelled out.
fn file_keys() -> Vec<String> {
    let mut keys: Vec<String> = field_names::<Options>()
        .iter()
        .filter(|k| **k != "auth" && **k != "history")
        .map(|k| (*k).to_owned())
        .collect();
    assert_eq!(field_names::<volley_gateway::config::Auth>(), ["jwt"]);
    keys.extend(field_names::<Jwt>().iter().map(|k| format!("auth.jwt.{k}")));
    keys.extend(
        field_names::<volley_gateway::config::HistoryFile>()
            .iter()
            .map(|k| format!("history.{k}")),
    );
    keys
}

/// `--flush-interval` → `flushInterval`.
fn camel(long: &str) -> String {
    let mut out = String::new();
    let mut upper = false;
    for c in long.chars() {
        if c == '-' {
            upper = true;
        } else if upper {
            out.extend(c.to_uppercase());
            upper = false;
        } else {
            out.push(c);
        }
    }
    out
}

/// The `[default: X]` the help text states, if any.
fn help_default(help: &str) -> Option<&str> {
    let start = help.rfind("[default: ")? + "[default: ".len();
    help[start..].strip_suffix(']')
}

#[test]
fn every_flag_is_a_row_with_its_env_key_and_default() {
    let rows = readme_rows();
    let fixed = fixed_defaults();
    let cli = Cli::command();
    let mut checked = 0;
    for arg in cli.get_arguments() {
        let Some(long) = arg.get_long() else {
            continue;
        };
        if ["help", "version", "check-config"].contains(&long) {
            continue;
        }
        let flag = format!("`--{long}`");
        let row = rows
            .iter()
            .find(|r| r.flags.split(", ").any(|f| f == flag))
            .unwrap_or_else(|| panic!("README has no row for {flag}"));
        let env = arg
            .get_env()
            .expect("every option has an environment variable");
        let env = env.to_str().unwrap();
        assert!(
            row.env.contains(&format!("`{env}`")) || row.env.contains("..."),
            "{flag}: README env {:?}, the code says {env}",
            row.env
        );
        let help = arg.get_help().map(|h| h.to_string()).unwrap_or_default();
        if long != "config" {
            // JWT options sit under `auth.jwt` in the file; the rest are the camelCase flag.
            let key = match long.strip_prefix("jwt-") {
                Some(rest) => format!("auth.jwt.{}", camel(rest)),
                None => camel(long),
            };
            assert!(
                cells(&row.key).contains(&key),
                "{flag}: README file key {:?}, expected {key}",
                row.key
            );
            // A fixed default is stated by `--help` exactly as the file would spell it.
            if let Some(value) = fixed.get(&key) {
                assert_eq!(
                    help_default(&help),
                    Some(value.as_str()),
                    "{flag}: --help default vs Options::defaults()"
                );
            }
        }
        checked += 1;
    }
    assert!(checked > 30, "only {checked} flags found");
}

#[test]
fn every_file_key_is_a_row_and_every_fixed_default_is_the_readme_s() {
    let rows = readme_rows();
    let fixed = fixed_defaults();
    let keys = file_keys();
    assert!(keys.len() > 30, "only {} keys found", keys.len());
    for key in &keys {
        let row = rows
            .iter()
            .find(|r| cells(&r.key).contains(key))
            .unwrap_or_else(|| panic!("README has no row for file key `{key}`"));
        let (_, default) = row_defaults(row)
            .into_iter()
            .find(|(k, _)| k == key)
            .expect("the key's default cell");
        match fixed.get(key) {
            Some(value) => assert_eq!(
                literal(&default),
                Some(value.as_str()),
                "README default of `{key}` vs Options::defaults()"
            ),
            // No fixed default: the README says what happens in words, not a made-up literal.
            None => assert!(
                literal(&default).is_none(),
                "README states a literal default for `{key}`, the code has none"
            ),
        }
    }
    for key in fixed.keys() {
        assert!(keys.contains(key), "a default for unknown key {key}");
    }
}

#[test]
fn every_row_names_real_flags_and_loadable_keys() {
    let cli = Cli::command();
    let longs: Vec<&str> = cli.get_arguments().filter_map(|a| a.get_long()).collect();
    let keys = file_keys();
    for row in readme_rows() {
        // A file-only option (no flag) has an empty flag cell.
        for flag in row.flags.split(", ").filter(|f| !f.is_empty()) {
            let long = flag
                .trim_matches('`')
                .strip_prefix("--")
                .unwrap_or_else(|| panic!("a flag cell: {flag}"));
            assert!(longs.contains(&long), "README row {flag} is not a flag");
        }
        for key in cells(&row.key) {
            assert!(keys.contains(&key), "README file key {key} is not a key");
            // The loader itself takes the key (it rejects unknown keys at every level).
            let yaml = key
                .split('.')
                .rev()
                .fold("~".to_owned(), |inner, k| format!("{{{k}: {inner}}}"));
            assert!(parse_yaml(&yaml).is_ok(), "the loader refuses {yaml}");
        }
    }
}
