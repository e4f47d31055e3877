//! The environment file as written: serde types that keep every value's position.

use std::collections::HashMap;

use serde::Deserialize;
use serde_saphyr::Spanned;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawEnvironment {
    pub name: Option<Spanned<String>>,
    pub registry: Option<Spanned<String>>,
    pub gateway: Option<Spanned<String>>,
    pub services: Spanned<HashMap<Spanned<String>, RawService>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawService {
    pub image: Spanned<String>,
    pub tag: Option<Spanned<String>>,
    pub build: Option<Spanned<RawBuild>>,
    pub command: Option<Vec<Spanned<String>>>,
    #[serde(default)]
    pub env: HashMap<Spanned<String>, Spanned<String>>,
    #[serde(default)]
    pub ports: Vec<Spanned<RawPort>>,
    #[serde(default)]
    pub depends_on: Vec<Spanned<String>>,
    #[serde(default)]
    pub links: Vec<Spanned<String>>,
    pub ready: Option<Spanned<RawReady>>,
    pub pull: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum RawBuild {
    Context(String),
    Full(RawBuildFull),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawBuildFull {
    pub context: String,
    pub dockerfile: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum RawPort {
    Number(i64),
    Text(String),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawReady {
    pub log: Option<Spanned<String>>,
    pub tcp: Option<Spanned<RawPort>>,
    pub http: Option<Spanned<RawPort>>,
    pub exec: Option<Spanned<Vec<String>>>,
    pub healthcheck: Option<Spanned<bool>>,
    pub exit: Option<Spanned<i64>>,
    pub timeout: Option<Spanned<String>>,
}
