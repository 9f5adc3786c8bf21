//! Metrics as CloudWatch Embedded Metric Format: one JSON line on stdout, which Lambda ships
//! to CloudWatch Logs and CloudWatch turns into metrics (no API call, no added latency).

use serde_json::{json, Value};

use crate::migration::RunSummary;

pub const NAMESPACE: &str = "NuminaConversations";

/// The EMF record of a finished migration run.
pub fn migration_run_record(summary: &RunSummary, timestamp_ms: i64) -> Value {
    let metrics = [
        ("MigrationUsers", summary.users),
        ("MigrationUsersFailed", summary.users_failed),
        (
            "MigrationConversationsCreated",
            summary.conversations_created,
        ),
        ("MigrationMessagesMigrated", summary.messages_migrated),
        ("MigrationMessagesSkipped", summary.messages_skipped),
    ];
    let mut record = json!({
        "_aws": {
            "Timestamp": timestamp_ms,
            "CloudWatchMetrics": [{
                "Namespace": NAMESPACE,
                "Dimensions": [["Mode"]],
                "Metrics": metrics
                    .iter()
                    .map(|(name, _)| json!({"Name": name, "Unit": "Count"}))
                    .collect::<Vec<_>>(),
            }],
        },
        "Mode": if summary.dry_run { "DryRun" } else { "Migrate" },
        "runId": summary.run_id,
    });
    for (name, value) in metrics {
        record[name] = json!(value);
    }
    record
}

/// Publishes a finished run's totals.
pub fn migration_run(summary: &RunSummary) {
    let record = migration_run_record(summary, chrono::Utc::now().timestamp_millis());
    println!("{record}");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_declared_metric_has_its_value_in_the_record() {
        let summary = RunSummary {
            users: 3,
            messages_migrated: 40,
            ..RunSummary::started("run-1", false, chrono::Utc::now())
        };
        let record = migration_run_record(&summary, 1);
        let declared = record["_aws"]["CloudWatchMetrics"][0]["Metrics"]
            .as_array()
            .unwrap();
        assert_eq!(declared.len(), 5);
        for metric in declared {
            let name = metric["Name"].as_str().unwrap();
            assert!(record[name].is_u64(), "{name}");
        }
        assert_eq!(record["MigrationMessagesMigrated"], 40);
        assert_eq!(record["Mode"], "Migrate");
    }
}
