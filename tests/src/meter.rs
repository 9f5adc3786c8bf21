//! What DynamoDB would bill, metered: an HTTP proxy in front of the local server (moto, which
//! reports no faithful consumed capacity) that computes the write and read request units of
//! every call by DynamoDB's documented rules (`crate::capacity`) from the items themselves:
//! before a write it reads each item the write names, after it reads them again, and bills the
//! table and each index from the two images; after a read it bills the items the read
//! evaluated (a query's, filters ignored). The benchmarks give each part of the service
//! (requests, the search indexer, the summarizer…) its own meter.
//!
//! The extra reads go straight to the server, not through the meter. Calls are metered one
//! at a time (a lock around each), so two writes never interleave between their images.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use aws_sdk_dynamodb::types::AttributeValue;
use axum::body::{to_bytes, Body};
use axum::extract::State as Extract;
use axum::http::{Request, Response};
use base64::Engine;
use serde_json::Value;
use tokio::net::TcpListener;

use crate::capacity::{self, IndexShape, Item};

/// Request units billed, by what they were for.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Units {
    /// Write units of the table's items.
    pub table_writes: u64,
    /// Write units of each index's entries.
    pub index_writes: BTreeMap<String, u64>,
    /// Read units (eventually consistent reads count half).
    pub reads: f64,
    /// Calls metered.
    pub calls: u64,
}

impl Units {
    /// Every write unit: the table's and the indexes'.
    pub fn writes(&self) -> u64 {
        self.table_writes + self.index_writes.values().sum::<u64>()
    }

    pub fn add(&mut self, other: &Units) {
        self.table_writes += other.table_writes;
        for (index, units) in &other.index_writes {
            *self.index_writes.entry(index.clone()).or_default() += units;
        }
        self.reads += other.reads;
        self.calls += other.calls;
    }
}

/// The meter, listening on 127.0.0.1 at `endpoint()`.
pub struct Meter {
    endpoint: String,
    units: Arc<Mutex<Units>>,
    failures: Arc<Mutex<Vec<String>>>,
}

struct Metering {
    target: String,
    http: reqwest::Client,
    direct: aws_sdk_dynamodb::Client,
    indexes: Vec<IndexShape>,
    units: Arc<Mutex<Units>>,
    /// What the meter could not bill (a read of its own failed): `take` refuses to answer.
    failures: Arc<Mutex<Vec<String>>>,
}

/// Every meter's calls, one at a time: no two writes interleave between their images,
/// whichever meters they pass through (they share one server).
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

impl Meter {
    /// A meter in front of `target` (the local server's URL) for tables shaped as the
    /// template's.
    pub async fn start(target: &str) -> Self {
        ai::provider::install_tls_provider();
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("a free port");
        let endpoint = format!("http://{}", listener.local_addr().expect("bound"));
        let units = Arc::new(Mutex::new(Units::default()));
        let failures = Arc::new(Mutex::new(Vec::new()));
        let table = crate::template().table().expect("the table's definition");
        let metering = Arc::new(Metering {
            target: target.trim_end_matches('/').to_owned(),
            http: reqwest::Client::new(),
            direct: aws_sdk_dynamodb::Client::new(&aws_config::load_from_env().await),
            indexes: IndexShape::of_table(&table),
            units: units.clone(),
            failures: failures.clone(),
        });
        let app = axum::Router::new().fallback(meter).with_state(metering);
        tokio::spawn(async move { axum::serve(listener, app).await });
        Self {
            endpoint,
            units,
            failures,
        }
    }

    /// Where clients send their requests.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// The units billed since the last take. Panics if a call could not be billed.
    pub fn take(&self) -> Units {
        let failures = self.failures.lock().expect("not poisoned").clone();
        assert!(
            failures.is_empty(),
            "the meter could not bill: {failures:?}"
        );
        std::mem::take(&mut *self.units.lock().expect("not poisoned"))
    }
}

/// One item a write names: its table and key, whether it is part of a transaction.
struct Written {
    table: String,
    key: Item,
    transactional: bool,
}

async fn meter(Extract(to): Extract<Arc<Metering>>, request: Request<Body>) -> Response<Body> {
    let (parts, body) = request.into_parts();
    let body = to_bytes(body, usize::MAX).await.expect("a request body");
    let operation = parts
        .headers
        .get("x-amz-target")
        .and_then(|t| t.to_str().ok())
        .filter(|t| t.starts_with("DynamoDB_"))
        .map(|t| t.rsplit('.').next().unwrap_or(t).to_owned());
    let parsed: Value = serde_json::from_slice(&body).unwrap_or_default();
    let _turn = ONE_AT_A_TIME.lock().await;
    let written = operation
        .as_deref()
        .map(|operation| written_items(operation, &parsed))
        .unwrap_or_default();
    let before = to.current(&written).await;

    let (status, response, bytes) =
        crate::recording::pass_on(&to.http, &to.target, &parts, body).await;

    if let Some(operation) = operation {
        let mut units = Units {
            calls: 1,
            ..Units::default()
        };
        // A write is billed when it was applied or refused by its condition; a validation
        // error or throttling consumes nothing.
        let error_type = serde_json::from_slice::<Value>(&bytes)
            .ok()
            .and_then(|answer| answer["__type"].as_str().map(str::to_owned))
            .unwrap_or_default();
        let billed_write = status.is_success()
            || error_type.ends_with("ConditionalCheckFailedException")
            || error_type.ends_with("TransactionCanceledException");
        let after = if billed_write {
            to.current(&written).await
        } else {
            Vec::new()
        };
        for ((item, old), new) in written.iter().zip(&before).zip(&after) {
            let billed =
                capacity::write_units(old.as_ref(), new.as_ref(), &to.indexes, item.transactional);
            units.table_writes += billed.table;
            for (index, n) in billed.indexes {
                *units.index_writes.entry(index).or_default() += n;
            }
        }
        if status.is_success() {
            let authorization = parts.headers.get("authorization").cloned();
            units.reads = to.read_units(&operation, &parsed, authorization).await;
        }
        to.units.lock().expect("not poisoned").add(&units);
    }
    response.body(Body::from(bytes)).expect("a response")
}

impl Metering {
    fn failed(&self, what: String) {
        self.failures.lock().expect("not poisoned").push(what);
    }

    /// The items as the server holds them now, read consistently and directly, in order.
    async fn current(&self, items: &[Written]) -> Vec<Option<Item>> {
        let mut found: HashMap<(String, Vec<(String, String)>), Item> = HashMap::new();
        let identity = |table: &str, key: &Item| {
            let mut parts: Vec<(String, String)> = key
                .iter()
                .map(|(name, value)| (name.clone(), format!("{value:?}")))
                .collect();
            parts.sort();
            (table.to_owned(), parts)
        };
        let mut wanted: Vec<(String, Item)> = Vec::new();
        for item in items {
            if !wanted
                .iter()
                .any(|(table, key)| identity(table, key) == identity(&item.table, &item.key))
            {
                wanted.push((item.table.clone(), item.key.clone()));
            }
        }
        for chunk in wanted.chunks(100) {
            let mut request = self.direct.batch_get_item();
            let mut by_table: HashMap<&str, Vec<Item>> = HashMap::new();
            for (table, key) in chunk {
                by_table.entry(table).or_default().push(key.clone());
            }
            for (table, keys) in by_table {
                request = request.request_items(
                    table,
                    aws_sdk_dynamodb::types::KeysAndAttributes::builder()
                        .set_keys(Some(keys))
                        .consistent_read(true)
                        .build()
                        .expect("keys"),
                );
            }
            let answer = match request.send().await {
                Ok(answer) => answer,
                Err(error) => {
                    self.failed(format!("read items: {error:?}"));
                    continue;
                }
            };
            for (table, items) in answer.responses.unwrap_or_default() {
                for item in items {
                    let key: Item = ["PK", "SK"]
                        .iter()
                        .filter_map(|k| Some(((*k).to_owned(), item.get(*k)?.clone())))
                        .collect();
                    found.insert(identity(&table, &key), item);
                }
            }
        }
        items
            .iter()
            .map(|item| found.get(&identity(&item.table, &item.key)).cloned())
            .collect()
    }

    /// The read units of a successful call, from the items it read (read again in full).
    async fn read_units(
        &self,
        operation: &str,
        request: &Value,
        authorization: Option<axum::http::HeaderValue>,
    ) -> f64 {
        let consistent = request["ConsistentRead"].as_bool().unwrap_or(false);
        // What a get reads is the whole item, whatever its projection returned: each key
        // asked is read again in full (the state is the same: calls are metered one at a time).
        let whole = |table: &str, keys: Vec<&Value>| {
            let asked: Vec<Written> = keys
                .into_iter()
                .map(|key| Written {
                    table: table.to_owned(),
                    key: item_of(key),
                    transactional: false,
                })
                .collect();
            async move { self.current(&asked).await }
        };
        let size = |item: &Option<Item>| item.as_ref().map_or(0, capacity::item_bytes);
        match operation {
            "GetItem" => {
                let table = request["TableName"].as_str().unwrap_or_default();
                let found = whole(table, vec![&request["Key"]]).await;
                capacity::read_units(found.first().map_or(0, size), consistent, false)
            }
            "BatchGetItem" => {
                let mut units = 0.0;
                for (table, asked) in request["RequestItems"].as_object().into_iter().flatten() {
                    let consistent = asked["ConsistentRead"].as_bool().unwrap_or(false);
                    let keys = asked["Keys"]
                        .as_array()
                        .map(|k| k.iter().collect())
                        .unwrap_or_default();
                    // A key that found nothing still costs the least read.
                    for item in whole(table, keys).await {
                        units += capacity::read_units(size(&item), consistent, false);
                    }
                }
                units
            }
            "TransactGetItems" => {
                let mut units = 0.0;
                for get in request["TransactItems"].as_array().into_iter().flatten() {
                    let get = &get["Get"];
                    let table = get["TableName"].as_str().unwrap_or_default();
                    for item in whole(table, vec![&get["Key"]]).await {
                        units += capacity::read_units(size(&item), true, true);
                    }
                }
                units
            }
            "Query" | "Scan" => {
                let bytes = self
                    .evaluated_bytes(operation, request, authorization)
                    .await;
                capacity::read_units(bytes, consistent, false)
            }
            _ => 0.0,
        }
    }

    /// The bytes a query or scan evaluated: the same request without its filter and its
    /// projection, sized as the index's entries (or the table's items) are.
    async fn evaluated_bytes(
        &self,
        operation: &str,
        request: &Value,
        authorization: Option<axum::http::HeaderValue>,
    ) -> usize {
        let mut unfiltered = request.clone();
        let object = unfiltered.as_object_mut().expect("a request object");
        for name in ["FilterExpression", "ProjectionExpression", "Select"] {
            object.remove(name);
        }
        // Names and values only the removed expressions used would be refused as unused.
        let kept = placeholders(
            request["KeyConditionExpression"]
                .as_str()
                .unwrap_or_default(),
        );
        for map in ["ExpressionAttributeNames", "ExpressionAttributeValues"] {
            if let Some(entries) = object.get_mut(map).and_then(Value::as_object_mut) {
                entries.retain(|name, _| kept.contains(name.as_str()));
                if entries.is_empty() {
                    object.remove(map);
                }
            }
        }
        let mut again = self
            .http
            .post(format!("{}/", self.target))
            .header("x-amz-target", format!("DynamoDB_20120810.{operation}"))
            .header("content-type", "application/x-amz-json-1.0");
        // The caller's (the local server reads the region and account from it).
        if let Some(authorization) = authorization {
            again = again.header("authorization", authorization);
        }
        let answer = match again
            .body(serde_json::to_vec(&unfiltered).expect("json"))
            .send()
            .await
        {
            Ok(answer) if answer.status().is_success() => answer,
            Ok(answer) => {
                let text = answer.text().await.unwrap_or_default();
                self.failed(format!("repeat a {operation} without its filter: {text}"));
                return 0;
            }
            Err(error) => {
                self.failed(format!("repeat a {operation}: {error}"));
                return 0;
            }
        };
        let answer: Value = answer.json().await.unwrap_or_default();
        let index = request["IndexName"]
            .as_str()
            .and_then(|name| self.indexes.iter().find(|i| i.name == name));
        answer["Items"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|item| {
                let item = item_of(item);
                match index {
                    Some(index) => index.entry(&item).map_or(0, |e| capacity::item_bytes(&e)),
                    None => capacity::item_bytes(&item),
                }
            })
            .sum()
    }
}

/// The `#name` and `:value` placeholders an expression uses.
fn placeholders(expression: &str) -> std::collections::HashSet<&str> {
    let mut found = std::collections::HashSet::new();
    let bytes = expression.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'#' || bytes[i] == b':' {
            let start = i;
            i += 1;
            while i < bytes.len() && (bytes[i].is_ascii_alphanumeric() || bytes[i] == b'_') {
                i += 1;
            }
            found.insert(&expression[start..i]);
        } else {
            i += 1;
        }
    }
    found
}

/// The items a write names, with their keys (`PK`, `SK` in this design).
fn written_items(operation: &str, request: &Value) -> Vec<Written> {
    let key_of_item = |item: &Value| -> Item {
        ["PK", "SK"]
            .iter()
            .filter_map(|k| Some(((*k).to_owned(), attribute(item.get(*k)?))))
            .collect()
    };
    let table = |v: &Value| v["TableName"].as_str().unwrap_or_default().to_owned();
    match operation {
        "PutItem" => vec![Written {
            table: table(request),
            key: key_of_item(&request["Item"]),
            transactional: false,
        }],
        "UpdateItem" | "DeleteItem" => vec![Written {
            table: table(request),
            key: item_of(&request["Key"]),
            transactional: false,
        }],
        "BatchWriteItem" => request["RequestItems"]
            .as_object()
            .into_iter()
            .flatten()
            .flat_map(|(name, writes)| {
                writes
                    .as_array()
                    .cloned()
                    .unwrap_or_default()
                    .into_iter()
                    .map(move |w| {
                        let key = match (w.get("PutRequest"), w.get("DeleteRequest")) {
                            (Some(put), _) => key_of_item(&put["Item"]),
                            (_, Some(delete)) => item_of(&delete["Key"]),
                            _ => Item::new(),
                        };
                        Written {
                            table: name.clone(),
                            key,
                            transactional: false,
                        }
                    })
            })
            .collect(),
        "TransactWriteItems" => request["TransactItems"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|entry| {
                let (kind, action) = entry.as_object()?.iter().next()?;
                let key = if kind == "Put" {
                    key_of_item(&action["Item"])
                } else {
                    item_of(&action["Key"])
                };
                Some(Written {
                    table: table(action),
                    key,
                    transactional: true,
                })
            })
            .collect(),
        _ => Vec::new(),
    }
}

/// An item from DynamoDB's JSON (`{"PK": {"S": "…"}}`).
pub fn item_of(json: &Value) -> Item {
    json.as_object()
        .into_iter()
        .flatten()
        .map(|(name, value)| (name.clone(), attribute(value)))
        .collect::<HashMap<_, _>>()
}

/// One attribute value from DynamoDB's JSON.
fn attribute(json: &Value) -> AttributeValue {
    let text = |v: &Value| v.as_str().unwrap_or_default().to_owned();
    let bytes = |v: &Value| {
        aws_sdk_dynamodb::primitives::Blob::new(
            base64::engine::general_purpose::STANDARD
                .decode(v.as_str().unwrap_or_default())
                .unwrap_or_default(),
        )
    };
    let list = |v: &Value| v.as_array().cloned().unwrap_or_default();
    let Some((kind, value)) = json.as_object().and_then(|o| o.iter().next()) else {
        return AttributeValue::Null(true);
    };
    match kind.as_str() {
        "S" => AttributeValue::S(text(value)),
        "N" => AttributeValue::N(text(value)),
        "B" => AttributeValue::B(bytes(value)),
        "BOOL" => AttributeValue::Bool(value.as_bool().unwrap_or_default()),
        "NULL" => AttributeValue::Null(true),
        "M" => AttributeValue::M(item_of(value)),
        "L" => AttributeValue::L(list(value).iter().map(attribute).collect()),
        "SS" => AttributeValue::Ss(list(value).iter().map(text).collect()),
        "NS" => AttributeValue::Ns(list(value).iter().map(text).collect()),
        "BS" => AttributeValue::Bs(list(value).iter().map(bytes).collect()),
        _ => AttributeValue::Null(true),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_key_conditions_placeholders_are_kept() {
        let used = placeholders("#owner = :owner AND #s_1 BETWEEN :from AND :to");
        let expected: std::collections::HashSet<&str> =
            ["#owner", ":owner", "#s_1", ":from", ":to"].into();
        assert_eq!(used, expected);
        assert!(!used.contains("#s"), "a prefix of a placeholder is not one");
    }

    #[test]
    fn a_transactions_items_are_named_by_their_keys_and_billed_as_transactional() {
        let request: Value = serde_json::from_str(
            r#"{"TransactItems": [
                {"Put": {"TableName": "t", "Item": {"PK": {"S": "a"}, "SK": {"S": "m"}, "n": {"N": "1"}}}},
                {"Update": {"TableName": "t", "Key": {"PK": {"S": "a"}, "SK": {"S": "META"}}}},
                {"ConditionCheck": {"TableName": "t", "Key": {"PK": {"S": "b"}, "SK": {"S": "x"}}}}
            ]}"#,
        )
        .unwrap();
        let written = written_items("TransactWriteItems", &request);
        assert_eq!(written.len(), 3);
        assert!(written.iter().all(|w| w.transactional && w.table == "t"));
        assert_eq!(written[0].key.len(), 2, "a put's key, not its whole item");
        assert_eq!(written[1].key["SK"], AttributeValue::S("META".into()));
    }

    #[test]
    fn items_convert_from_dynamodbs_json_by_type() {
        let item = item_of(&serde_json::json!({
            "s": {"S": "x"}, "n": {"N": "12"}, "b": {"B": "AQI="}, "t": {"BOOL": true},
            "z": {"NULL": true}, "m": {"M": {"k": {"S": "v"}}}, "l": {"L": [{"N": "1"}]},
            "ss": {"SS": ["a", "b"]}
        }));
        assert_eq!(item["b"], AttributeValue::B(vec![1u8, 2].into()));
        assert_eq!(
            item["m"],
            AttributeValue::M(HashMap::from([(
                "k".to_owned(),
                AttributeValue::S("v".into())
            )]))
        );
        assert_eq!(item["ss"], AttributeValue::Ss(vec!["a".into(), "b".into()]));
        assert_eq!(item.len(), 8);
    }
}
