//! The function's logs, as Lambda's advanced logging controls set them: the level from
//! `AWS_LAMBDA_LOG_LEVEL` (else `RUST_LOG`, else INFO), JSON lines when
//! `AWS_LAMBDA_LOG_FORMAT` is `JSON`, no timestamps (CloudWatch stamps each line).
//!
//! The same as `lambda_runtime`'s default subscriber, except that `RUST_LOG` takes
//! per-target directives (`info,store=debug`) through `Targets`, whose parser needs no regex
//! engine: the runtime's `EnvFilter` linked one into every function.

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

/// What is logged: Lambda's level when set (its `FATAL` is our `ERROR`), else `RUST_LOG`'s
/// directives, else INFO; a value that does not parse counts as unset.
pub fn filter(lambda_level: Option<&str>, rust_log: Option<&str>) -> Targets {
    let lambda_level = lambda_level.and_then(|level| match level.trim() {
        fatal if fatal.eq_ignore_ascii_case("fatal") => Some(LevelFilter::ERROR),
        level => LevelFilter::from_str(level).ok(),
    });
    let directives = rust_log
        .filter(|directives| !directives.trim().is_empty())
        .and_then(|directives| Targets::from_str(directives).ok());
    match (lambda_level, directives) {
        (Some(level), _) => Targets::new().with_default(level),
        (None, Some(directives)) => directives,
        (None, None) => Targets::new().with_default(LevelFilter::INFO),
    }
}

#[cfg(test)]
mod tests {
    use tracing::Level;

    use super::filter;

    #[test]
    fn lambdas_log_level_comes_first_then_rust_log_then_info() {
        let lambda_debug = filter(Some("DEBUG"), Some("error"));
        assert!(lambda_debug.would_enable("store", &Level::DEBUG));
        assert!(!lambda_debug.would_enable("store", &Level::TRACE));

        let fatal = filter(Some("FATAL"), None);
        assert!(fatal.would_enable("shared", &Level::ERROR));
        assert!(!fatal.would_enable("shared", &Level::WARN));

        let per_target = filter(None, Some("warn,store=debug"));
        assert!(per_target.would_enable("store::append", &Level::DEBUG));
        assert!(!per_target.would_enable("shared", &Level::INFO));

        for (lambda_level, rust_log) in [
            (None, None),
            (Some("loud"), Some("store=loud")),
            (None, Some(" ")),
        ] {
            let unset = filter(lambda_level, rust_log);
            assert!(unset.would_enable("shared", &Level::INFO), "{rust_log:?}");
            assert!(!unset.would_enable("shared", &Level::DEBUG), "{rust_log:?}");
        }
    }
}
