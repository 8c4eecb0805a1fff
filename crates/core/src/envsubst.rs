//! `${VAR}` and `${VAR:-default}` in config files.
//!
//! contract §5.2 lets config values name environment variables so that one variable
//! (`HERALD_PROVIDER_URL`) redirects every shipped channel to a sink. The config
//! loader runs [`substitute`] over the raw YAML text before parsing it. The lookup
//! is injected (`|k| std::env::var(k).ok()` in production, a map in tests) so this
//! module stays free of I/O and its behaviour is fixed by tests, not by the
//! machine it runs on.
//!
//! The syntax is the small, shell-compatible subset people already know:
//! - `${NAME}` is the variable's value; an unset variable is an error, so a typo
//!   stops the process instead of silently posting to an empty URL;
//! - `${NAME:-default}` is the value, or `default` when the variable is unset
//!   **or empty**, as in the shell; the default is literal text up to the first `}`;
//! - `$$` is a literal `$`; a `$` not followed by `{` is kept as is;
//! - `NAME` must match `[A-Za-z_][A-Za-z0-9_]*`;
//! - a comment line (first non-blank character `#`) is kept as it is, so commented
//!   examples may show `${VAR}` without the variable being set.

/// Why a config text could not be expanded. Positions are 1-based and count
/// characters, as an editor shows them.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EnvSubstError {
    /// `${NAME}` without a default, and `NAME` is not set.
    #[error(
        "environment variable {name} is not set (write ${{{name}:-default}} to give a default)"
    )]
    Unset { name: String },
    /// `${` with no closing `}`.
    #[error("unterminated ${{ at line {line}, column {column}: expected ${{NAME}} or ${{NAME:-default}}")]
    Unterminated { line: usize, column: usize },
    /// `${...}` whose content is not `NAME` or `NAME:-default`.
    #[error(
        "invalid variable reference {text:?} at line {line}, column {column}: \
         expected ${{NAME}} or ${{NAME:-default}} with NAME matching [A-Za-z_][A-Za-z0-9_]*"
    )]
    Invalid {
        text: String,
        line: usize,
        column: usize,
    },
}

/// Expands `${VAR}`, `${VAR:-default}` and `$$` in `input`, asking `lookup` for
/// each variable's value (`None` = unset).
pub fn substitute(
    input: &str,
    lookup: impl Fn(&str) -> Option<String>,
) -> Result<String, EnvSubstError> {
    let mut out = String::with_capacity(input.len());
    // Byte index of the first character not yet copied to `out`. Every index
    // used below sits on an ASCII byte (`$`, `{`, `}`), hence on a char boundary.
    let mut copied = 0;
    let bytes = input.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        if (i == 0 || bytes[i - 1] == b'\n') && is_comment_line(&bytes[i..]) {
            i += bytes[i..]
                .iter()
                .position(|&b| b == b'\n')
                .map_or(bytes.len() - i, |p| p + 1);
            continue;
        }
        if bytes[i] != b'$' {
            i += 1;
            continue;
        }
        match bytes.get(i + 1) {
            Some(b'$') => {
                out.push_str(&input[copied..i]);
                out.push('$');
                i += 2;
                copied = i;
            }
            Some(b'{') => {
                out.push_str(&input[copied..i]);
                let body_start = i + 2;
                let Some(close) = input[body_start..].find('}').map(|p| body_start + p) else {
                    let (line, column) = position(input, i);
                    return Err(EnvSubstError::Unterminated { line, column });
                };
                out.push_str(&expand(&input[body_start..close], &lookup, input, i)?);
                i = close + 1;
                copied = i;
            }
            _ => i += 1,
        }
    }
    out.push_str(&input[copied..]);
    Ok(out)
}

/// Expands the text between `${` and `}`; `at` is the byte index of the `$`.
fn expand(
    body: &str,
    lookup: &impl Fn(&str) -> Option<String>,
    input: &str,
    at: usize,
) -> Result<String, EnvSubstError> {
    let (name, default) = match body.split_once(":-") {
        Some((name, default)) => (name, Some(default)),
        None => (body, None),
    };
    if !is_valid_name(name) {
        let (line, column) = position(input, at);
        return Err(EnvSubstError::Invalid {
            text: format!("${{{body}}}"),
            line,
            column,
        });
    }
    let value = lookup(name);
    match (value, default) {
        (Some(v), None) => Ok(v),
        (Some(v), Some(_)) if !v.is_empty() => Ok(v),
        (_, Some(default)) => Ok(default.to_owned()),
        (None, None) => Err(EnvSubstError::Unset {
            name: name.to_owned(),
        }),
    }
}

/// Whether the line starting at `line` is a YAML comment line.
fn is_comment_line(line: &[u8]) -> bool {
    line.iter().find(|&&b| b != b' ' && b != b'\t') == Some(&b'#')
}

fn is_valid_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    matches!(bytes.next(), Some(b) if b.is_ascii_alphabetic() || b == b'_')
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

/// 1-based line and column (in characters) of byte index `at`.
fn position(input: &str, at: usize) -> (usize, usize) {
    let before = &input[..at];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |p| p + 1);
    let column = before[line_start..].chars().count() + 1;
    (line, column)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        move |k| map.get(k).cloned()
    }

    #[test]
    fn a_set_variable_is_replaced_by_its_value() {
        let out = substitute("url: ${BASE}/email", env(&[("BASE", "http://sink:5000")]));
        assert_eq!(out.unwrap(), "url: http://sink:5000/email");
    }

    #[test]
    fn an_unset_variable_without_default_is_an_error_naming_it() {
        let err = substitute("url: ${MISSING}", env(&[])).unwrap_err();
        assert_eq!(
            err,
            EnvSubstError::Unset {
                name: "MISSING".into()
            }
        );
        assert!(err.to_string().contains("MISSING"));
    }

    #[test]
    fn a_set_but_empty_variable_without_default_is_empty() {
        assert_eq!(substitute("a${E}b", env(&[("E", "")])).unwrap(), "ab");
    }

    #[test]
    fn the_default_is_used_when_the_variable_is_unset_or_empty() {
        let text = "${HERALD_PROVIDER_URL:-http://127.0.0.1:5000}/sms";
        assert_eq!(
            substitute(text, env(&[])).unwrap(),
            "http://127.0.0.1:5000/sms"
        );
        assert_eq!(
            substitute(text, env(&[("HERALD_PROVIDER_URL", "")])).unwrap(),
            "http://127.0.0.1:5000/sms"
        );
        assert_eq!(
            substitute(text, env(&[("HERALD_PROVIDER_URL", "http://x")])).unwrap(),
            "http://x/sms"
        );
    }

    #[test]
    fn an_empty_default_is_allowed() {
        assert_eq!(substitute("[${X:-}]", env(&[])).unwrap(), "[]");
    }

    #[test]
    fn a_double_dollar_is_a_literal_dollar_and_is_not_expanded() {
        assert_eq!(
            substitute("cost: $$5 and $${X}", env(&[])).unwrap(),
            "cost: $5 and ${X}"
        );
    }

    #[test]
    fn a_dollar_not_followed_by_a_brace_is_kept() {
        assert_eq!(
            substitute("$HOME costs $ 5$", env(&[])).unwrap(),
            "$HOME costs $ 5$"
        );
    }

    #[test]
    fn an_unterminated_reference_is_an_error_naming_its_position() {
        let err = substitute("a: 1\nurl: ${BASE/email\n", env(&[("BASE", "x")])).unwrap_err();
        assert_eq!(err, EnvSubstError::Unterminated { line: 2, column: 6 });
        assert!(err.to_string().contains("line 2, column 6"), "{err}");
    }

    #[test]
    fn invalid_names_are_rejected() {
        for bad in [
            "${}",
            "${1X}",
            "${A-B}",
            "${A:B}",
            "${ A }",
            "${A-default}",
            "${:-x}",
        ] {
            let err = substitute(bad, env(&[("A", "v")])).unwrap_err();
            assert!(
                matches!(err, EnvSubstError::Invalid { .. }),
                "{bad}: {err:?}"
            );
        }
        let err = substitute("x\n  ${9lives}", env(&[])).unwrap_err();
        assert_eq!(
            err,
            EnvSubstError::Invalid {
                text: "${9lives}".into(),
                line: 2,
                column: 3
            }
        );
    }

    #[test]
    fn names_may_contain_underscores_and_digits_after_the_first_character() {
        let out = substitute("${_A1_b2}", env(&[("_A1_b2", "ok")])).unwrap();
        assert_eq!(out, "ok");
    }

    #[test]
    fn several_references_and_unicode_text_survive_expansion() {
        let out = substitute("héllo ${A} → ${B:-β} ✓", env(&[("A", "wörld")])).unwrap();
        assert_eq!(out, "héllo wörld → β ✓");
    }

    #[test]
    fn substituted_values_are_not_expanded_again() {
        let out = substitute("${A}", env(&[("A", "${B}"), ("B", "no")])).unwrap();
        assert_eq!(out, "${B}");
    }

    #[test]
    fn text_without_references_is_unchanged() {
        let text = "rules:\n  - delay: 0s\n";
        assert_eq!(substitute(text, env(&[])).unwrap(), text);
    }

    #[test]
    fn comment_lines_are_kept_as_they_are() {
        let none = |_: &str| None;
        let text = "# url: ${UNSET}\n  # also ${UNSET:-x}\na: ${SET:-d} # ${UNSET:-y}\n";
        assert_eq!(
            substitute(text, none).unwrap(),
            "# url: ${UNSET}\n  # also ${UNSET:-x}\na: d # y\n"
        );
    }
}
