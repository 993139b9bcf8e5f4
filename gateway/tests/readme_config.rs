//! The README's configuration table matches the gateway's own command line: every flag is a row
//! with its environment variable, its YAML key (which the file loader accepts) and the default
//! its `--help` states, and every row names a real flag. The table cannot drift from the code.

use clap::CommandFactory;
use volley_gateway::config::{Cli, parse_yaml};

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
        if long != "config" {
            // JWT options sit under `auth.jwt` in the file; the rest are the camelCase flag.
            let key = match long.strip_prefix("jwt-") {
                Some(rest) => format!("auth.jwt.{}", camel(rest)),
                None => camel(long),
            };
            assert!(
                row.key.contains(&format!("`{key}`")),
                "{flag}: README file key {:?}, expected {key}",
                row.key
            );
        }
        let help = arg.get_help().map(|h| h.to_string()).unwrap_or_default();
        if let Some(default) = help_default(&help) {
            // A literal default in the README is written in backticks and must be the same.
            if let Some(literal) = row.default.strip_prefix('`') {
                let literal = literal.split('`').next().unwrap();
                assert_eq!(literal, default, "{flag}: README default vs --help");
            }
        }
        checked += 1;
    }
    assert!(checked > 30, "only {checked} flags found");
}

#[test]
fn every_row_names_real_flags_and_loadable_keys() {
    let cli = Cli::command();
    let longs: Vec<&str> = cli.get_arguments().filter_map(|a| a.get_long()).collect();
    for row in readme_rows() {
        for flag in row.flags.split(", ") {
            let long = flag
                .trim_matches('`')
                .strip_prefix("--")
                .unwrap_or_else(|| panic!("a flag cell: {flag}"));
            assert!(longs.contains(&long), "README row {flag} is not a flag");
        }
        // Every top-level file key is one the loader knows (it rejects unknown keys); a value of
        // the wrong type is fine here, an unknown key is not.
        for key in row.key.split(", ").filter(|k| !k.is_empty()) {
            let key = key.trim_matches('`');
            let top = key.split('.').next().unwrap();
            if let Err((path, message)) = parse_yaml(&format!("{top}: ~\n")) {
                assert!(
                    !message.contains("unknown field"),
                    "README file key {key}: {path}: {message}"
                );
            }
        }
    }
}
