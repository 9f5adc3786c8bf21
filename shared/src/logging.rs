//! The function's logs, as Lambda's advanced logging controls set them: JSON lines when
//! `AWS_LAMBDA_LOG_FORMAT` is `JSON`, no timestamps (CloudWatch stamps each line), and what is
//! logged from `AWS_LAMBDA_LOG_LEVEL` and `RUST_LOG` (see [`filter`]).
//!
//! Like `lambda_runtime`'s default subscriber, except that `RUST_LOG`'s directives
//! (`info,store=debug`) go through `Targets`, whose parser needs no regex engine: the
//! runtime's `EnvFilter` linked one into every function.

use std::str::FromStr;

use tracing_subscriber::filter::{LevelFilter, Targets};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{fmt, Layer};

/// Installs the subscriber for this process (once, first thing in `main`).
pub fn init() {
    let variable = |name: &str| std::env::var(name).ok();
    let filter = filter(
        variable("AWS_LAMBDA_LOG_LEVEL").as_deref(),
        variable("RUST_LOG").as_deref(),
    );
    let json = variable("AWS_LAMBDA_LOG_FORMAT").is_some_and(|f| f.eq_ignore_ascii_case("json"));
    let lines = fmt::layer()
        .with_target(false)
        .without_time()
        .with_ansi(false);
    let lines = if json {
        lines.json().boxed()
    } else {
        lines.boxed()
    };
    // Tests install their own subscriber first: the first one stays.
    let _ = tracing_subscriber::registry()
        .with(lines.with_filter(filter))
        .try_init();
}

/// What is logged: `RUST_LOG`'s per-target directives (`store=debug`) always; for every other
/// target, Lambda's level when it is set (its `FATAL` is our `ERROR`), else `RUST_LOG`'s bare
/// level, else INFO. Directives are read one by one: a blank or unreadable one is skipped, the
/// others still count.
pub fn filter(lambda_level: Option<&str>, rust_log: Option<&str>) -> Targets {
    let lambda_level = lambda_level
        .map(str::trim)
        .filter(|level| !level.is_empty())
        .and_then(|level| match level {
            fatal if fatal.eq_ignore_ascii_case("fatal") => Some(LevelFilter::ERROR),
            level => LevelFilter::from_str(level).ok(),
        });
    let mut targets = Targets::new();
    let mut bare_level = None;
    for directive in rust_log.unwrap_or_default().split(',').map(str::trim) {
        if directive.is_empty() || directive.starts_with('=') || directive.ends_with('=') {
            continue;
        }
        let Ok(parsed) = Targets::from_str(directive) else {
            continue;
        };
        bare_level = parsed.default_level().or(bare_level);
        for (target, level) in parsed.iter() {
            targets = targets.with_target(target, level);
        }
    }
    targets.with_default(lambda_level.or(bare_level).unwrap_or(LevelFilter::INFO))
}

#[cfg(test)]
mod tests {
    use tracing::Level;

    use super::filter;

    #[test]
    fn lambdas_level_is_the_default_and_rust_logs_targets_refine_it() {
        // The template's configuration: JSON logs at Lambda's INFO, RUST_LOG naming targets.
        let template = filter(Some("INFO"), Some("info,store=debug"));
        assert!(template.would_enable("store::append", &Level::DEBUG));
        assert!(template.would_enable("shared", &Level::INFO));
        assert!(!template.would_enable("shared", &Level::DEBUG));

        // Lambda's level outranks RUST_LOG's bare level.
        let lambda_debug = filter(Some("DEBUG"), Some("error"));
        assert!(lambda_debug.would_enable("store", &Level::DEBUG));
        assert!(!lambda_debug.would_enable("store", &Level::TRACE));

        let fatal = filter(Some("FATAL"), None);
        assert!(fatal.would_enable("shared", &Level::ERROR));
        assert!(!fatal.would_enable("shared", &Level::WARN));

        let per_target = filter(None, Some("warn, store=debug,"));
        assert!(per_target.would_enable("store::append", &Level::DEBUG));
        assert!(!per_target.would_enable("shared", &Level::INFO));
        assert!(per_target.would_enable("shared", &Level::WARN));

        // A target alone leaves everything else at INFO, errors included.
        let only_store = filter(None, Some("store=debug"));
        assert!(only_store.would_enable("shared", &Level::ERROR));
        assert!(only_store.would_enable("shared", &Level::INFO));

        // An unreadable directive is skipped; the others still count.
        let one_bad = filter(None, Some("store=loud,warn"));
        assert!(one_bad.would_enable("shared", &Level::WARN));
        assert!(!one_bad.would_enable("shared", &Level::INFO));

        for (lambda_level, rust_log) in [
            (None, None),
            (Some(""), Some("")),
            (Some("loud"), Some("=")),
            (None, Some(" , ")),
        ] {
            let unset = filter(lambda_level, rust_log);
            assert!(unset.would_enable("shared", &Level::INFO), "{rust_log:?}");
            assert!(!unset.would_enable("shared", &Level::DEBUG), "{rust_log:?}");
        }
    }
}
