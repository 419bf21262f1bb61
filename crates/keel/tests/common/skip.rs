//! A test whose tool or server is missing skips what needs it, and says so where it is seen:
//! on the process's stderr (a passing test's captured output is never shown) and, when
//! `KEEL_SKIP_LOG` names a file, in that file, which `scripts/test.sh` sums up at the end.
//! Under `KEEL_REQUIRE_TEST_TOOLS` (CI) a missing tool fails the test instead. keel's tests and
//! shop's use this one file.

use std::io::Write;

/// Records that `tool` is missing (`install` says how to get it); panics under
/// `KEEL_REQUIRE_TEST_TOOLS`.
pub fn skip(tool: &str, install: &str) {
    assert!(
        std::env::var_os("KEEL_REQUIRE_TEST_TOOLS").is_none(),
        "{tool} is missing ({install}) and KEEL_REQUIRE_TEST_TOOLS is set"
    );
    let test = std::thread::current().name().unwrap_or("a test").to_owned();
    let _ = writeln!(
        std::io::stderr(),
        "SKIPPED: {tool} is missing ({install}): {test} did not check what needs it"
    );
    if let Some(log) = std::env::var_os("KEEL_SKIP_LOG") {
        if let Ok(mut file) = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
        {
            let _ = writeln!(file, "{tool}\t{test}");
        }
    }
}
