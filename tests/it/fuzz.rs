//! Nothing panics on any input: arbitrary YAML and arbitrary command lines.

use std::path::Path;

use clap::Parser;
use envctl::cli::Cli;
use envctl::spec::{self, Target};
use proptest::prelude::*;

/// Fragments that steer generated documents into envctl's schema, so the search reaches the
/// validation code and not only the YAML parser.
fn fragment() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("services:\n".to_string()),
        Just("  a:\n".to_string()),
        Just("  b:\n".to_string()),
        Just("    image: x\n".to_string()),
        Just("    tag: ${T:-1}\n".to_string()),
        Just("    depends_on: [a, b]\n".to_string()),
        Just("    links: [\"a:db\", b]\n".to_string()),
        Just("    ports: [8080, \"53/udp\", 0]\n".to_string()),
        Just("    ready:\n      tcp: 1\n      exit: 3\n      timeout: 1s\n".to_string()),
        Just("    env: {K: $$x, L: ${U}}\n".to_string()),
        Just("    build: {context: .}\n".to_string()),
        "[ -~\n]{0,20}".prop_map(|s| s),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn parsing_arbitrary_text_never_panics(text in "\\PC*") {
        let _ = spec::parse(Path::new("fuzz.yaml"), &text, &|_| None);
    }

    #[test]
    fn parsing_schema_shaped_documents_never_panics(parts in proptest::collection::vec(fragment(), 0..12)) {
        let text: String = parts.concat();
        if let Err(error) = spec::parse(Path::new("fuzz.yaml"), &text, &|_| None) {
            // Rendering walks the source lines and columns: it must not panic either.
            let _ = error.to_string();
        }
    }

    #[test]
    fn arbitrary_command_lines_never_panic(args in proptest::collection::vec("[-a-z@:=./ 0-9]{0,12}", 0..6)) {
        let argv = std::iter::once("envctl".to_string()).chain(args.iter().cloned());
        if let Ok(cli) = Cli::try_parse_from(argv) {
            let _ = format!("{cli:?}");
        }
        let _ = Target::from_words(&args);
    }
}
