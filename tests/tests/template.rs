//! The template, the functions, the events and the local gateway describe the same API.

use std::collections::BTreeSet;

use local::Endpoint;
use shared::keys::Index;
use tests::{state, template, workspace_root};

/// The directories in `dir` (no extension given), or its files with that extension.
fn names_in(dir: &str, extension: Option<&str>) -> BTreeSet<String> {
    std::fs::read_dir(workspace_root().join(dir))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| match extension {
            None => p.is_dir(),
            Some(ext) => p.extension().is_some_and(|e| e == ext),
        })
        .map(|p| p.file_stem().unwrap().to_str().unwrap().to_owned())
        .collect()
}

#[test]
fn every_function_is_in_the_template_with_an_event_and_every_route_has_a_handler() {
    let binaries: BTreeSet<String> = template().binaries().unwrap().into_iter().collect();
    assert_eq!(
        binaries,
        names_in("functions", None),
        "template functions = functions/*"
    );
    assert_eq!(
        binaries,
        names_in("events", Some("json")),
        "one event file per function"
    );

    let routes = template().routes().unwrap();
    let routed: BTreeSet<&str> = routes.iter().map(|r| r.binary.as_str()).collect();
    for binary in routed {
        assert!(
            Endpoint::for_binary(binary).is_some(),
            "{binary} has no handler"
        );
    }
}

#[test]
fn the_routes_are_the_specifications() {
    let routes: BTreeSet<(String, String)> = template()
        .routes()
        .unwrap()
        .into_iter()
        .map(|r| (r.method, r.path))
        .collect();
    let expected: BTreeSet<(String, String)> = [
        ("GET", "/conversations"),
        ("GET", "/conversations/{id}"),
        ("POST", "/conversations"),
        ("POST", "/conversations/{id}/messages"),
        ("PUT", "/conversations/{id}/title"),
        ("PUT", "/conversations/{id}/archive"),
        ("PUT", "/conversations/{id}/tags"),
        ("POST", "/conversations/{id}/messages/{messageId}/edit"),
        ("PUT", "/conversations/{id}/branch"),
        ("DELETE", "/conversations/{id}/messages/{messageId}"),
        ("POST", "/conversations/{id}/shares"),
        ("GET", "/shares"),
        ("DELETE", "/conversations/{id}/shares/{shareId}"),
        ("GET", "/shared/{shareId}"),
        ("POST", "/shared/{shareId}/continue"),
        ("POST", "/conversations/{id}/people"),
        ("GET", "/conversations/{id}/people"),
        ("DELETE", "/conversations/{id}/people/{userId}"),
        ("GET", "/shared-with-me"),
        ("GET", "/shared-with-me/{id}"),
        ("DELETE", "/shared-with-me/{id}"),
        ("GET", "/presets"),
        ("POST", "/presets"),
        ("PUT", "/presets/{id}"),
        ("DELETE", "/presets/{id}"),
        ("PUT", "/conversations/{id}/preset"),
        ("DELETE", "/conversations/{id}"),
        ("GET", "/conversations/context"),
        ("GET", "/conversations/context/{id}"),
        ("POST", "/completion"),
        ("POST", "/conversations/migrate"),
        ("POST", "/conversations/{id}/attachments"),
        ("GET", "/mobile/sync"),
        ("POST", "/mobile/batch"),
        ("GET", "/health"),
        ("GET", "/search"),
        ("GET", "/conversations/{id}/export"),
        ("POST", "/exports"),
        ("GET", "/exports/{id}"),
        ("GET", "/usage"),
    ]
    .into_iter()
    .map(|(m, p)| (m.to_owned(), p.to_owned()))
    .collect();
    assert_eq!(routes, expected);
}

#[test]
fn the_template_table_declares_the_indexes_the_store_queries() {
    let table = template().table().unwrap();
    for index in Index::ALL {
        let declared = table
            .global_secondary_indexes
            .iter()
            .find(|i| i.index_name == index.name())
            .unwrap_or_else(|| panic!("{} is not in template.yaml", index.name()));
        let keys: Vec<&str> = declared
            .key_schema
            .iter()
            .map(|k| k.attribute_name.as_str())
            .collect();
        assert_eq!(
            keys,
            [index.partition_attribute(), index.sort_attribute()],
            "{}",
            index.name()
        );
        let projects_all = declared.projection.projection_type == "ALL";
        assert_eq!(
            projects_all,
            index.projects_all(),
            "{} projection",
            index.name()
        );
    }
    let ttl = table.time_to_live_specification.expect("TTL is declared");
    assert_eq!(ttl.attribute_name, shared::keys::EXPIRES_AT);
    assert!(ttl.enabled);
}

#[tokio::test]
async fn the_local_table_was_created_from_the_template() {
    let state = state().await;
    let client = aws_sdk_dynamodb::Client::new(&aws_config::load_from_env().await);
    let described = client
        .describe_table()
        .table_name(&state.config.table_name)
        .send()
        .await
        .unwrap();
    let table = described.table.unwrap();
    let mut local: Vec<String> = table
        .global_secondary_indexes()
        .iter()
        .filter_map(|i| i.index_name.clone())
        .collect();
    local.sort();
    let mut declared: Vec<String> = template()
        .table()
        .unwrap()
        .global_secondary_indexes
        .into_iter()
        .map(|i| i.index_name)
        .collect();
    declared.sort();
    assert_eq!(local, declared);
    let ttl = client
        .describe_time_to_live()
        .table_name(&state.config.table_name)
        .send()
        .await
        .unwrap();
    let ttl = ttl.time_to_live_description.unwrap();
    assert_eq!(ttl.attribute_name(), Some(shared::keys::EXPIRES_AT));
}

#[test]
fn every_function_keeps_its_logs_for_the_configured_retention() {
    let text = std::fs::read_to_string(workspace_root().join("template.yaml")).unwrap();
    let document: serde_norway::Value = serde_norway::from_str(&text).unwrap();
    let resources = document["Resources"].as_mapping().unwrap();
    let functions: Vec<&str> = resources
        .iter()
        .filter(|(_, r)| r["Type"].as_str() == Some("AWS::Serverless::Function"))
        .map(|(name, _)| name.as_str().unwrap())
        .collect();
    // Log groups are written `!Sub /aws/lambda/${Function}`; the tag survives as text.
    for function in functions {
        let declared = text.contains(&format!("LogGroupName: !Sub /aws/lambda/${{{function}}}"));
        assert!(declared, "{function} has no log group with a retention");
    }
    assert!(
        text.matches("RetentionInDays: !Ref LogRetentionDays")
            .count()
            >= 20
    );
}

#[test]
fn the_dashboard_and_alarms_chart_only_metrics_the_service_writes() {
    let text = std::fs::read_to_string(workspace_root().join("template.yaml")).unwrap();
    let written: BTreeSet<&str> = shared::metrics::names::ALL.into_iter().collect();
    let mut charted = BTreeSet::new();
    // Dashboard metrics: ["${Namespace}", "Name", ...]; searches: MetricName=\"Name\".
    for (marker, end) in [("\"${Namespace}\", \"", '"'), ("MetricName=\\\"", '\\')] {
        for piece in text.split(marker).skip(1) {
            charted.insert(piece.split(end).next().unwrap().to_owned());
        }
    }
    // Alarms on the stack's namespace: the MetricName after it.
    for piece in text
        .split("Namespace: !Sub NuminaConversations/${AWS::StackName}")
        .skip(1)
    {
        let near = &piece[..piece.len().min(120)];
        if let Some(rest) = near.split("MetricName: ").nth(1) {
            charted.insert(rest.split_whitespace().next().unwrap().to_owned());
        }
    }
    assert!(charted.len() >= 10, "{charted:?}");
    for name in &charted {
        assert!(
            written.contains(name.as_str()),
            "{name} is charted but never written"
        );
    }
}

#[test]
fn every_function_builds_through_the_makefile_under_the_name_its_logical_id_gives() {
    let text = std::fs::read_to_string(workspace_root().join("template.yaml")).unwrap();
    let document: serde_norway::Value = serde_norway::from_str(&text).unwrap();
    let resources = document["Resources"].as_mapping().unwrap();
    let functions: Vec<(&str, &serde_norway::Value)> = resources
        .iter()
        .filter(|(_, r)| r["Type"].as_str() == Some("AWS::Serverless::Function"))
        .map(|(name, r)| (name.as_str().unwrap(), r))
        .collect();
    assert_eq!(functions.len(), names_in("functions", None).len());
    for (logical_id, function) in functions {
        assert_eq!(
            function["Metadata"]["BuildMethod"].as_str(),
            Some("makefile"),
            "{logical_id}"
        );
        // The Makefile's `build-<Stem>Function` rule finds the binary from the stem.
        let stem = logical_id
            .strip_suffix("Function")
            .unwrap_or_else(|| panic!("{logical_id} is named <Stem>Function"));
        let found = std::process::Command::new(workspace_root().join("scripts/lambda-artifact.sh"))
            .args(["--binary", stem])
            .output()
            .unwrap();
        assert!(found.status.success(), "{logical_id}");
        assert_eq!(
            String::from_utf8(found.stdout).unwrap().trim(),
            function["Metadata"]["BuildProperties"]["Binary"]
                .as_str()
                .unwrap(),
            "{logical_id}"
        );
    }
}

/// A function that builds its state without the attachments bucket (no S3 client, none
/// linked) is exactly one whose role grants no S3 access: the two can never drift apart, so
/// a function that reads the bucket is never left without its client.
#[test]
fn a_function_builds_an_s3_client_exactly_when_its_role_may_use_the_bucket() {
    let text = std::fs::read_to_string(workspace_root().join("template.yaml")).unwrap();
    let document: serde_norway::Value = serde_norway::from_str(&text).unwrap();
    let resources = document["Resources"].as_mapping().unwrap();
    let mut without_bucket = 0;
    for (logical_id, function) in resources
        .iter()
        .filter(|(_, r)| r["Type"].as_str() == Some("AWS::Serverless::Function"))
    {
        let logical_id = logical_id.as_str().unwrap();
        let binary = function["Metadata"]["BuildProperties"]["Binary"]
            .as_str()
            .unwrap();
        let main = std::fs::read_to_string(
            workspace_root().join(format!("functions/{binary}/src/main.rs")),
        )
        .unwrap();
        let policies = serde_norway::to_string(&function["Properties"]["Policies"]).unwrap();
        let role_may_use_the_bucket = policies.contains("S3") || policies.contains("s3:");
        let builds_without_bucket = main.contains("State::from_env_without_bucket()");
        if builds_without_bucket {
            without_bucket += 1;
        }
        if main.contains("State::from_env") {
            assert_eq!(
                !builds_without_bucket, role_may_use_the_bucket,
                "{logical_id}: its state and its role disagree on the bucket"
            );
        }
    }
    assert_eq!(without_bucket, 22);
}

/// Every Lambda binary, and the hello-world the cold-start bench compares them with, is
/// linked by the same build script at a fixed address: none of them carries the relocations
/// a position-independent executable applies at each start (docs/benchmarks.md).
#[test]
fn every_function_and_the_baseline_link_at_a_fixed_address() {
    let mut manifests: Vec<(String, &str)> = names_in("functions", None)
        .into_iter()
        .map(|name| {
            (
                format!("functions/{name}/Cargo.toml"),
                "../position-dependent.rs",
            )
        })
        .collect();
    assert_eq!(manifests.len(), 52);
    manifests.push((
        "bench/hello/Cargo.toml".to_owned(),
        "../../functions/position-dependent.rs",
    ));
    for (manifest, script) in manifests {
        let text = std::fs::read_to_string(workspace_root().join(&manifest)).unwrap();
        assert!(
            text.lines()
                .any(|line| line == format!("build = \"{script}\"")),
            "{manifest} builds its binary with {script}"
        );
    }
}

fn resources() -> serde_norway::Mapping {
    let text = std::fs::read_to_string(workspace_root().join("template.yaml")).unwrap();
    let document: serde_norway::Value = serde_norway::from_str(&text).unwrap();
    document["Resources"].as_mapping().unwrap().clone()
}

fn yaml(value: &serde_norway::Value) -> String {
    serde_norway::to_string(value).unwrap()
}

/// The logical id of the queue `!GetAtt <Queue>.Arn` names in `value`.
fn queue_named(value: &serde_norway::Value, resources: &serde_norway::Mapping) -> Option<String> {
    let text = yaml(value);
    let id = text
        .split("!GetAtt")
        .nth(1)?
        .trim()
        .split(".Arn")
        .next()?
        .trim();
    let resource = resources.get(id)?;
    (resource["Type"].as_str() == Some("AWS::SQS::Queue")).then(|| id.to_owned())
}

/// Nothing a stream or a schedule hands over is dropped unseen: every event source mapping
/// and every schedule sends what it gives up to a queue, the function may write to it, and an
/// alarm watches it.
#[test]
fn every_event_source_mapping_and_schedule_has_an_on_failure_queue_with_an_alarm() {
    let resources = resources();
    let alarms: Vec<String> = resources
        .values()
        .filter(|r| r["Type"].as_str() == Some("AWS::CloudWatch::Alarm"))
        .map(yaml)
        .collect();
    let mut checked = Vec::new();
    for (logical_id, resource) in &resources {
        let logical_id = logical_id.as_str().unwrap();
        let Some(events) = resource["Properties"]["Events"].as_mapping() else {
            continue;
        };
        for (name, event) in events {
            let what = format!("{logical_id}.{}", name.as_str().unwrap());
            let queue = match event["Type"].as_str().unwrap() {
                // A queue's own dead-letter queue takes what its function gave up on.
                "SQS" => {
                    let source = queue_named(&event["Properties"]["Queue"], &resources)
                        .unwrap_or_else(|| panic!("{what}: reads no queue of the template"));
                    let policy = &resources[source.as_str()]["Properties"]["RedrivePolicy"];
                    assert!(
                        policy["maxReceiveCount"].as_u64().is_some(),
                        "{what}: {source} gives nothing up"
                    );
                    assert_eq!(
                        event["Properties"]["FunctionResponseTypes"][0].as_str(),
                        Some("ReportBatchItemFailures"),
                        "{what}: a failed message would fail its whole batch"
                    );
                    queue_named(&policy["deadLetterTargetArn"], &resources)
                        .unwrap_or_else(|| panic!("{what}: {source} has no dead-letter queue"))
                }
                "DynamoDB" | "Kinesis" => {
                    let queue = queue_named(
                        &event["Properties"]["DestinationConfig"]["OnFailure"],
                        &resources,
                    )
                    .unwrap_or_else(|| panic!("{what}: no on-failure queue"));
                    assert!(
                        yaml(&resource["Properties"]["Policies"]).contains(&format!("{queue}.Arn")),
                        "{what}: the function may not send to {queue}"
                    );
                    queue
                }
                "ScheduleV2" | "Schedule" => {
                    queue_named(&event["Properties"]["DeadLetterConfig"], &resources)
                        .unwrap_or_else(|| panic!("{what}: no dead-letter queue"))
                }
                _ => continue,
            };
            assert!(
                alarms
                    .iter()
                    .any(|alarm| alarm.contains(&format!("{queue}.QueueName"))),
                "{what}: no alarm watches {queue}"
            );
            checked.push(what);
        }
    }
    // The two stream readers, the five queues' functions, the daily migration schedule and
    // the hourly sweep's.
    assert_eq!(checked.len(), 9, "{checked:?}");
}

/// DynamoDB Streams serves at most two readers of a shard at once (more throttle each
/// other): the table's stream has two, and every other function hears of the table's
/// changes through its queue.
#[test]
fn at_most_two_functions_read_the_tables_stream() {
    let readers: Vec<String> = tests::template()
        .stream_subscriptions()
        .unwrap()
        .into_iter()
        .map(|s| s.binary)
        .collect();
    assert_eq!(
        readers,
        ["dispatch-table-changes", "invalidate-cached-reads"],
        "{readers:?}"
    );
    let queued: Vec<String> = tests::template()
        .queue_subscriptions()
        .unwrap()
        .into_iter()
        .map(|s| s.binary)
        .collect();
    for worker in shared::table_changes::Worker::ALL {
        assert!(queued.contains(&worker.binary().to_owned()), "{queued:?}");
    }
}

/// One user, or many, cannot take the concurrency every other function needs: the completion
/// functions are capped by a reservation, and what all reservations hold together leaves most
/// of a default account's 1,000 executions to the rest.
#[test]
fn the_completion_functions_reserve_and_cap_their_concurrency() {
    let text = std::fs::read_to_string(workspace_root().join("template.yaml")).unwrap();
    let document: serde_norway::Value = serde_norway::from_str(&text).unwrap();
    let default_of = |parameter: &str| {
        document["Parameters"][parameter]["Default"]
            .as_u64()
            .unwrap_or_else(|| panic!("{parameter} has a default"))
    };
    let resources = resources();
    let mut reserved = 0;
    for (logical_id, resource) in &resources {
        let reservation = yaml(&resource["Properties"]["ReservedConcurrentExecutions"]);
        let parameter = ["CompletionConcurrency", "BackgroundConcurrency"]
            .into_iter()
            .find(|p| reservation.contains(&format!("!Ref {p}")));
        if let Some(parameter) = parameter {
            reserved += default_of(parameter);
        }
        if ["CompletionFunction", "CompletionStreamFunction"]
            .contains(&logical_id.as_str().unwrap())
        {
            assert_eq!(parameter, Some("CompletionConcurrency"), "{logical_id:?}");
        }
    }
    assert!(default_of("CompletionConcurrency") > 0);
    assert!(reserved <= 500, "reservations hold {reserved} of 1,000");
}

#[test]
fn model_spend_has_an_alarm() {
    let resources = resources();
    let spend = resources
        .values()
        .find(|r| {
            r["Type"].as_str() == Some("AWS::CloudWatch::Alarm")
                && r["Properties"]["MetricName"].as_str() == Some("ModelTokens")
        })
        .expect("an alarm on ModelTokens");
    assert!(yaml(&spend["Properties"]["Threshold"]).contains("ModelTokensAlarmPerHour"));
}

/// The API accepts Cognito access tokens only (an ID token names the client as its audience
/// too, but carries no scope), and the local gateway requires the same scope.
#[test]
fn the_api_authorizer_requires_the_access_tokens_scope() {
    let resources = resources();
    let api = &resources["ConversationsApi"]["Properties"]["Auth"];
    let authorizer = api["DefaultAuthorizer"].as_str().unwrap();
    let scopes: Vec<&str> = api["Authorizers"][authorizer]["AuthorizationScopes"]
        .as_sequence()
        .expect("the authorizer names its scopes")
        .iter()
        .map(|s| s.as_str().unwrap())
        .collect();
    assert_eq!(scopes, [local::token::ACCESS_SCOPE]);
}
