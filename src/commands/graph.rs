use crate::cli::GraphArgs;
use crate::spec::Environment;
use crate::{Error, ExitStatus, output};

pub fn exec(args: GraphArgs) -> Result<ExitStatus, Error> {
    let (environment, _) = super::select(&args.target)?;
    output::data(&to_dot(&environment));
    Ok(ExitStatus::Success)
}

/// The environment as a Graphviz DOT digraph: an arrow from each service to what it needs,
/// labelled with the link alias where there is one.
fn to_dot(environment: &Environment) -> String {
    let mut dot = format!(
        "digraph \"{}\" {{\n  rankdir=BT;\n  node [shape=box];\n",
        environment.name
    );
    for service in environment.services.values() {
        dot.push_str(&format!(
            "  \"{}\" [label=\"{}\\n{}\"];\n",
            service.name, service.name, service.image
        ));
    }
    for service in environment.services.values() {
        for dep in &service.depends_on {
            let aliases: Vec<&str> = service
                .links
                .iter()
                .filter(|l| &l.service == dep && &l.alias != dep)
                .map(|l| l.alias.as_str())
                .collect();
            if aliases.is_empty() {
                dot.push_str(&format!("  \"{}\" -> \"{}\";\n", service.name, dep));
            } else {
                dot.push_str(&format!(
                    "  \"{}\" -> \"{}\" [label=\"{}\"];\n",
                    service.name,
                    dep,
                    aliases.join(", ")
                ));
            }
        }
    }
    dot.push_str("}\n");
    dot
}
