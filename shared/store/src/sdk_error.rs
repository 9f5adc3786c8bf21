//! An AWS SDK error as health reports and logs show it.

/// An SDK error in a few words: its code, never the request or credentials.
pub fn describe_sdk_error<E, R>(error: &aws_sdk_s3::error::SdkError<E, R>) -> String
where
    E: aws_sdk_s3::error::ProvideErrorMetadata,
{
    use aws_sdk_s3::error::SdkError;
    match error {
        SdkError::TimeoutError(_) => "timed out".to_owned(),
        SdkError::DispatchFailure(_) => "unreachable".to_owned(),
        SdkError::ServiceError(service) => {
            format!("refused ({})", service.err().code().unwrap_or("unknown"))
        }
        _ => "failed".to_owned(),
    }
}
