//! `summarize_conversations`: brings the summary of each conversation that is due forward
//! (`crate::summaries`), off the request path of the appends that made it due. Fed by the
//! table's stream (conversation items only, by the template's event filter).

use aws_lambda_events::event::dynamodb::Event;
use aws_lambda_events::event::streams::DynamoDbEventResponse;
use domain::error::{chain, Error};
use lambda_runtime::LambdaEvent;
use shared::store::Store;
use shared::streams::{failed_from, time_left, DEADLINE_MARGIN};

use crate::state::State;

/// Summarizes the conversations the records show due (once each, by their new image, in the
/// order they come). A summary the model could not write is counted and its record reported,
/// so Lambda delivers it (and the records after it) again, up to the mapping's retry limit;
/// the conversation also stays due, so its next change tries again. A conversation whose
/// turn would not finish before the deadline is reported the same way, without counting.
pub async fn summarize_conversations(
    state: &State,
    event: LambdaEvent<Event>,
) -> Result<DynamoDbEventResponse, Error> {
    let deadline_ms = event.context.deadline;
    let summaries = &state.summaries;
    let mut seen = std::collections::BTreeSet::new();
    for record in &event.payload.records {
        if record.event_name == "REMOVE" || record.change.new_image.is_empty() {
            continue;
        }
        let Ok(conversation) = Store::conversation_of_image(record.change.new_image.clone().into())
        else {
            continue;
        };
        if !summaries.is_due(&conversation)
            || !seen.insert((conversation.user_id.clone(), conversation.conversation_id))
        {
            continue;
        }
        if time_left(deadline_ms) < summaries.settings().timeout + DEADLINE_MARGIN {
            return Ok(failed_from(Some(record)));
        }
        let outcome = summaries
            .summarize(
                &conversation.user_id,
                &conversation.conversation_id,
                state.now(),
            )
            .await;
        match outcome {
            Ok(crate::summaries::SummaryOutcome::Written { .. }) => shared::metrics::summary(true),
            Ok(_) => {}
            Err(error) => {
                tracing::error!(error = %chain(&error), "could not summarize a conversation");
                if matches!(error, Error::ModelFailed(_) | Error::ModelTimeout) {
                    shared::metrics::summary(false);
                }
                return Ok(failed_from(Some(record)));
            }
        }
    }
    Ok(DynamoDbEventResponse::default())
}
