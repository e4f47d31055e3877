//! `${VAR}` and `${VAR:-default}` in values, read from the caller's environment, as docker-compose
//! does: `$VAR` and `${VAR}` substitute, `${VAR:-default}` falls back when VAR is unset or empty,
//! `${VAR-default}` only when unset, and `$$` is a literal `$`.

/// Why a value could not be interpolated; `offset` is the character index of the `$`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InterpolationError {
    Unset { variable: String, offset: usize },
    Malformed { offset: usize },
}

pub fn interpolate(
    value: &str,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<String, InterpolationError> {
    let chars: Vec<char> = value.chars().collect();
    let mut out = String::with_capacity(value.len());
    let mut i = 0;
    while i < chars.len() {
        if chars[i] != '$' {
            out.push(chars[i]);
            i += 1;
            continue;
        }
        let start = i;
        match chars.get(i + 1) {
            Some('$') => {
                out.push('$');
                i += 2;
            }
            Some('{') => {
                let close = chars[i + 2..]
                    .iter()
                    .position(|&c| c == '}')
                    .ok_or(InterpolationError::Malformed { offset: start })?;
                let body: String = chars[i + 2..i + 2 + close].iter().collect();
                out.push_str(&expand(&body, start, lookup)?);
                i += close + 3;
            }
            Some(c) if c.is_ascii_alphabetic() || *c == '_' => {
                let len = chars[i + 1..]
                    .iter()
                    .take_while(|c| c.is_ascii_alphanumeric() || **c == '_')
                    .count();
                let name: String = chars[i + 1..i + 1 + len].iter().collect();
                out.push_str(&expand(&name, start, lookup)?);
                i += len + 1;
            }
            _ => {
                out.push('$');
                i += 1;
            }
        }
    }
    Ok(out)
}

fn expand(
    body: &str,
    offset: usize,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<String, InterpolationError> {
    let (name, default) = match body.find([':', '-']) {
        Some(at) if body[at..].starts_with(":-") => (&body[..at], Some((&body[at + 2..], true))),
        Some(at) if body[at..].starts_with('-') => (&body[..at], Some((&body[at + 1..], false))),
        Some(_) => return Err(InterpolationError::Malformed { offset }),
        None => (body, None),
    };
    let valid_name = name
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    if !valid_name {
        return Err(InterpolationError::Malformed { offset });
    }
    match (lookup(name), default) {
        (Some(value), Some((default, true))) if value.is_empty() => Ok(default.to_string()),
        (Some(value), _) => Ok(value),
        (None, Some((default, _))) => Ok(default.to_string()),
        (None, None) => Err(InterpolationError::Unset {
            variable: name.to_string(),
            offset,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str) -> Option<String> {
        match name {
            "USER" => Some("tester".into()),
            "EMPTY" => Some(String::new()),
            _ => None,
        }
    }

    #[test]
    fn substitutes_like_compose() {
        let cases = [
            ("plain", "plain"),
            ("${USER}", "tester"),
            ("$USER-x", "tester-x"),
            ("${MISSING:-fallback}", "fallback"),
            ("${EMPTY:-fallback}", "fallback"),
            ("${EMPTY-fallback}", ""),
            ("${MISSING-}", ""),
            ("cost: $$5", "cost: $5"),
            ("trailing $", "trailing $"),
        ];
        for (input, expected) in cases {
            assert_eq!(interpolate(input, &env).as_deref(), Ok(expected), "{input}");
        }
    }

    #[test]
    fn reports_unset_and_malformed_variables() {
        assert_eq!(
            interpolate("db=${DB_HOST}", &env),
            Err(InterpolationError::Unset {
                variable: "DB_HOST".into(),
                offset: 3
            })
        );
        assert_eq!(
            interpolate("${OPEN", &env),
            Err(InterpolationError::Malformed { offset: 0 })
        );
        assert_eq!(
            interpolate("${A:?x}", &env),
            Err(InterpolationError::Malformed { offset: 0 })
        );
    }
}
