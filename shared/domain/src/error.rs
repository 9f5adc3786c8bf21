//! The one error type of the domain. The HTTP layer maps each variant to a status and a
//! stable code in one place (`http::error_response`).

use std::error::Error as StdError;

/// Everything that can go wrong in an operation.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// No valid identity on the request.
    #[error("authentication required")]
    Unauthenticated,
    /// The request is malformed or breaks a rule; the message says which.
    #[error("{0}")]
    Invalid(String),
    /// The request body or a field of it is larger than allowed.
    #[error("{0}")]
    TooLarge(String),
    /// The conversation does not exist for this user (whether or not it exists for another).
    #[error("conversation not found")]
    NotFound,
    /// The export does not exist for this user (whether or not it exists for another).
    #[error("export not found")]
    ExportNotFound,
    /// No live share link has this token (never made, revoked, expired, or its conversation
    /// or last message deleted): one answer for all of them.
    #[error("shared conversation not found")]
    ShareNotFound,
    /// The request conflicts with one still in progress; the client may retry shortly.
    #[error("{0}")]
    Conflict(String),
    /// A change lost to a later one (by the time it was made), or targets a conversation
    /// deleted since; nothing was changed.
    #[error("{0}")]
    Superseded(String),
    /// An operation id was used before for a different operation.
    #[error("operation id {0} was already used for a different operation")]
    OperationReused(String),
    /// A batch operation not started because the batch ran out of time; send it again.
    #[error("not run: the batch ran out of time; send this operation again")]
    NotRun,
    /// A sync cursor the server can no longer follow (older than the tombstones' retention,
    /// so deletions since may be forgotten, or signed with a retired key): the app must sync
    /// from scratch. Says why.
    #[error("{0}; sync again without it")]
    ResyncRequired(String),
    /// The model provider failed; nothing but the prompt was saved.
    #[error("the model did not answer: {0}")]
    ModelFailed(String),
    /// The model provider took longer than allowed; nothing but the prompt was saved.
    #[error("the model did not answer in time")]
    ModelTimeout,
    /// No route for this method and path.
    #[error("no such route")]
    NoRoute,
    /// The user reached one of their limits (`usage`); the same request is admitted again
    /// after `retry_after_seconds`.
    #[error("{message}")]
    RateLimited {
        message: String,
        retry_after_seconds: u64,
    },
    /// The store is throttling or unavailable; the client may retry.
    #[error("the service is busy: {0}")]
    Unavailable(#[source] Box<dyn StdError + Send + Sync>),
    /// A failure of ours or of a dependency; details go to the log, never to the client.
    #[error("internal error: {context}")]
    Internal {
        context: &'static str,
        #[source]
        source: Box<dyn StdError + Send + Sync>,
    },
    /// Configuration is missing or wrong at cold start.
    #[error("configuration: {0}")]
    Config(String),
}

impl Error {
    pub fn invalid(message: impl Into<String>) -> Self {
        Self::Invalid(message.into())
    }

    /// The variant's name: the error type Lambda reports, which Step Functions' `Retry` and
    /// `Catch` match on (`Unavailable` is worth retrying; `Invalid` never is).
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Unauthenticated => "Unauthenticated",
            Self::Invalid(_) => "Invalid",
            Self::TooLarge(_) => "TooLarge",
            Self::NotFound => "NotFound",
            Self::ExportNotFound => "ExportNotFound",
            Self::ShareNotFound => "ShareNotFound",
            Self::Conflict(_) => "Conflict",
            Self::Superseded(_) => "Superseded",
            Self::OperationReused(_) => "OperationReused",
            Self::ResyncRequired(_) => "ResyncRequired",
            Self::NotRun => "NotRun",
            Self::ModelFailed(_) => "ModelFailed",
            Self::ModelTimeout => "ModelTimeout",
            Self::NoRoute => "NoRoute",
            Self::RateLimited { .. } => "RateLimited",
            Self::Unavailable(_) => "Unavailable",
            Self::Internal { .. } => "Internal",
            Self::Config(_) => "Config",
        }
    }

    pub fn internal(
        context: &'static str,
        source: impl Into<Box<dyn StdError + Send + Sync>>,
    ) -> Self {
        Self::Internal {
            context,
            source: source.into(),
        }
    }
}

/// The whole cause chain of an error, for logs.
pub fn chain(error: &dyn StdError) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
