//! The README's configuration table and `shop --help` list the same settings.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeSet;
use std::process::Command;

#[test]
fn the_readme_documents_every_setting_of_shop_help_and_no_other() {
    let help = Command::new(env!("CARGO_BIN_EXE_shop"))
        .arg("--help")
        .output()
        .unwrap();
    assert!(help.status.success());
    let help = String::from_utf8(help.stdout).unwrap();
    let from_help: BTreeSet<String> = help
        .lines()
        .filter_map(|l| l.trim().strip_prefix("[env: "))
        .map(|rest| rest.split('=').next().unwrap().to_owned())
        .collect();

    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../README.md")).unwrap();
    let section = readme
        .split("## Configuration")
        .nth(1)
        .unwrap()
        .split("\n## ")
        .next()
        .unwrap();
    let from_readme: BTreeSet<String> = section
        .lines()
        .filter_map(|l| l.strip_prefix("| `"))
        .map(|rest| rest.split('`').next().unwrap().to_owned())
        .collect();

    assert!(from_help.len() >= 20, "{from_help:?}");
    assert_eq!(from_readme, from_help);
    // Each row names the flag clap derives from the variable's field.
    for line in section.lines().filter(|l| l.starts_with("| `")) {
        let flag = line.split('|').nth(2).unwrap().trim().trim_matches('`');
        assert!(
            help.contains(&format!("{flag} <")),
            "{flag} is not in shop --help"
        );
    }
}
