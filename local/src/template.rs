//! Reads `template.yaml`: the HTTP routes of its functions and the table's definition, so
//! the local API serves exactly what the deployed one does.

use std::path::Path;

use serde::Deserialize;
use serde_norway::Value;

#[derive(Debug, thiserror::Error)]
pub enum TemplateError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("template is not valid YAML: {0}")]
    Yaml(#[from] serde_norway::Error),
    #[error("template: {0}")]
    Shape(String),
}

/// One HTTP route: method, API Gateway path pattern, and the function binary serving it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    pub method: String,
    pub path: String,
    pub binary: String,
    /// Served without a token (`Auth: Authorizer: NONE`).
    pub public: bool,
}

/// The table's `Properties` as CloudFormation spells them (the same names as CreateTable).
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct TableDefinition {
    pub attribute_definitions: Vec<AttributeDefinition>,
    pub key_schema: Vec<KeyElement>,
    #[serde(default)]
    pub global_secondary_indexes: Vec<GlobalSecondaryIndex>,
    pub billing_mode: Option<String>,
    pub time_to_live_specification: Option<TimeToLive>,
    pub stream_specification: Option<StreamSpecification>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct AttributeDefinition {
    pub attribute_name: String,
    pub attribute_type: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct KeyElement {
    pub attribute_name: String,
    pub key_type: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct GlobalSecondaryIndex {
    pub index_name: String,
    pub key_schema: Vec<KeyElement>,
    pub projection: Projection,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Projection {
    pub projection_type: String,
    #[serde(default)]
    pub non_key_attributes: Vec<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct TimeToLive {
    pub attribute_name: String,
    pub enabled: bool,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct StreamSpecification {
    pub stream_view_type: String,
}

/// A state machine of the template: its definition file and what each of the definition's
/// `${…}` placeholders names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StateMachine {
    pub definition_uri: String,
    /// Placeholder → the logical id of the resource it names (`!GetAtt X.Arn` or `!Ref X`).
    pub substitutions: std::collections::BTreeMap<String, String>,
}

/// A function fed by the table's stream (a `DynamoDB` event of the template): its binary,
/// how many records a batch holds at most, and its filter patterns (a record goes to the
/// function if any pattern matches it; every record does when there are none).
#[derive(Debug, Clone, PartialEq)]
pub struct StreamSubscription {
    pub binary: String,
    pub batch_size: usize,
    pub filters: Vec<serde_json::Value>,
    /// How many times a failed batch is delivered again before its failed record is given
    /// up on (`MaximumRetryAttempts`; none: until it succeeds).
    pub max_retries: Option<usize>,
}

/// A function fed by a queue (an `SQS` event of the template): its binary, the queue's
/// logical id, how many messages a batch holds at most, and how many times a message is
/// received before it goes to the queue's dead-letter queue (`RedrivePolicy.maxReceiveCount`;
/// none: until it is handled).
#[derive(Debug, Clone, PartialEq)]
pub struct QueueSubscription {
    pub binary: String,
    pub queue: String,
    pub batch_size: usize,
    pub max_receives: Option<usize>,
}

/// The parsed template.
pub struct Template {
    root: Value,
}

/// The logical id of the single table in `template.yaml`.
pub const TABLE_RESOURCE: &str = "ConversationsTable";

impl Template {
    pub fn load(path: &Path) -> Result<Self, TemplateError> {
        let text = std::fs::read_to_string(path).map_err(|source| TemplateError::Read {
            path: path.display().to_string(),
            source,
        })?;
        Self::parse(&text)
    }

    pub fn parse(text: &str) -> Result<Self, TemplateError> {
        Ok(Self {
            root: serde_norway::from_str(text)?,
        })
    }

    fn resources(&self) -> Result<&serde_norway::Mapping, TemplateError> {
        self.root
            .get("Resources")
            .and_then(Value::as_mapping)
            .ok_or_else(|| TemplateError::Shape("no Resources".into()))
    }

    /// Every function: its logical id, its binary and its resource.
    fn functions(&self) -> Result<Vec<(&str, &str, &Value)>, TemplateError> {
        let mut functions = Vec::new();
        for (name, resource) in self.resources()? {
            if resource.get("Type").and_then(Value::as_str) != Some("AWS::Serverless::Function") {
                continue;
            }
            let name = name.as_str().unwrap_or("?");
            let binary = resource
                .get("Metadata")
                .and_then(|m| m.get("BuildProperties"))
                .and_then(|b| b.get("Binary"))
                .and_then(Value::as_str)
                .ok_or_else(|| {
                    TemplateError::Shape(format!("{name} has no Metadata.BuildProperties.Binary"))
                })?;
            functions.push((name, binary, resource));
        }
        Ok(functions)
    }

    /// The binary of every function.
    pub fn binaries(&self) -> Result<Vec<String>, TemplateError> {
        Ok(self
            .functions()?
            .into_iter()
            .map(|(_, binary, _)| binary.to_owned())
            .collect())
    }

    /// The binaries of functions served through a Function URL.
    pub fn function_urls(&self) -> Result<Vec<String>, TemplateError> {
        Ok(self
            .functions()?
            .into_iter()
            .filter(|(_, _, resource)| {
                resource
                    .get("Properties")
                    .and_then(|p| p.get("FunctionUrlConfig"))
                    .is_some()
            })
            .map(|(_, binary, _)| binary.to_owned())
            .collect())
    }

    /// Every event of this type of every function (its logical id, binary and event), in
    /// template order.
    fn events_of_type(&self, kind: &str) -> Result<Vec<(&str, &str, &Value)>, TemplateError> {
        let mut found = Vec::new();
        for (name, binary, resource) in self.functions()? {
            let events = resource
                .get("Properties")
                .and_then(|p| p.get("Events"))
                .and_then(Value::as_mapping);
            for event in events.into_iter().flat_map(|e| e.values()) {
                if event.get("Type").and_then(Value::as_str) == Some(kind) {
                    found.push((name, binary, event));
                }
            }
        }
        Ok(found)
    }

    /// Every HttpApi route of every function, in template order.
    pub fn routes(&self) -> Result<Vec<Route>, TemplateError> {
        let mut routes = Vec::new();
        for (name, binary, event) in self.events_of_type("HttpApi")? {
            let property = |key: &str| {
                event
                    .get("Properties")
                    .and_then(|p| p.get(key))
                    .and_then(Value::as_str)
                    .map(str::to_owned)
                    .ok_or_else(|| {
                        TemplateError::Shape(format!("{name}: an HttpApi event has no {key}"))
                    })
            };
            let public = event
                .get("Properties")
                .and_then(|p| p.get("Auth"))
                .and_then(|a| a.get("Authorizer"))
                .and_then(Value::as_str)
                == Some("NONE");
            routes.push(Route {
                method: property("Method")?.to_uppercase(),
                path: property("Path")?,
                binary: binary.to_owned(),
                public,
            });
        }
        Ok(routes)
    }

    /// Every function fed by the table's stream, in template order.
    pub fn stream_subscriptions(&self) -> Result<Vec<StreamSubscription>, TemplateError> {
        let mut subscriptions = Vec::new();
        for (name, binary, event) in self.events_of_type("DynamoDB")? {
            let properties = event.get("Properties");
            let batch_size = properties
                .and_then(|p| p.get("BatchSize"))
                .and_then(Value::as_u64)
                .unwrap_or(100) as usize;
            let patterns = properties
                .and_then(|p| p.get("FilterCriteria"))
                .and_then(|f| f.get("Filters"))
                .and_then(Value::as_sequence);
            let mut filters = Vec::new();
            for filter in patterns.into_iter().flatten() {
                let pattern = filter
                    .get("Pattern")
                    .and_then(Value::as_str)
                    .ok_or_else(|| {
                        TemplateError::Shape(format!("{name}: a filter has no Pattern"))
                    })?;
                filters.push(serde_json::from_str(pattern).map_err(|e| {
                    TemplateError::Shape(format!("{name}: filter pattern is not JSON: {e}"))
                })?);
            }
            let max_retries = properties
                .and_then(|p| p.get("MaximumRetryAttempts"))
                .and_then(Value::as_u64)
                .map(|n| n as usize);
            subscriptions.push(StreamSubscription {
                binary: binary.to_owned(),
                batch_size,
                filters,
                max_retries,
            });
        }
        Ok(subscriptions)
    }

    /// Every function fed by a queue, with its queue's settings.
    pub fn queue_subscriptions(&self) -> Result<Vec<QueueSubscription>, TemplateError> {
        let resources = self.resources()?;
        let mut subscriptions = Vec::new();
        for (name, binary, event) in self.events_of_type("SQS")? {
            let properties = event.get("Properties");
            let queue = properties
                .and_then(|p| p.get("Queue"))
                .and_then(get_att_arn)
                .ok_or_else(|| {
                    TemplateError::Shape(format!(
                        "{name}: an SQS event's Queue is not !GetAtt <queue>.Arn"
                    ))
                })?;
            let batch_size = properties
                .and_then(|p| p.get("BatchSize"))
                .and_then(Value::as_u64)
                .unwrap_or(10) as usize;
            let max_receives = resources
                .get(queue.as_str())
                .and_then(|q| q.get("Properties"))
                .and_then(|p| p.get("RedrivePolicy"))
                .and_then(|r| r.get("maxReceiveCount"))
                .and_then(Value::as_u64)
                .map(|n| n as usize);
            subscriptions.push(QueueSubscription {
                binary: binary.to_owned(),
                queue,
                batch_size,
                max_receives,
            });
        }
        Ok(subscriptions)
    }

    /// The binary of the function with this logical id.
    pub fn binary_of(&self, logical_id: &str) -> Result<Option<String>, TemplateError> {
        Ok(self
            .functions()?
            .into_iter()
            .find(|(name, _, _)| *name == logical_id)
            .map(|(_, binary, _)| binary.to_owned()))
    }

    /// The state machine with this logical id.
    pub fn state_machine(&self, logical_id: &str) -> Result<StateMachine, TemplateError> {
        let properties = self
            .resources()?
            .get(logical_id)
            .filter(|r| {
                r.get("Type").and_then(Value::as_str) == Some("AWS::Serverless::StateMachine")
            })
            .and_then(|r| r.get("Properties"))
            .ok_or_else(|| TemplateError::Shape(format!("no state machine {logical_id}")))?;
        let definition_uri = properties
            .get("DefinitionUri")
            .and_then(Value::as_str)
            .ok_or_else(|| TemplateError::Shape(format!("{logical_id} has no DefinitionUri")))?
            .to_owned();
        let mut substitutions = std::collections::BTreeMap::new();
        for (key, value) in properties
            .get("DefinitionSubstitutions")
            .and_then(Value::as_mapping)
            .into_iter()
            .flatten()
        {
            let named = match value {
                Value::Tagged(tagged) => match (tagged.tag.to_string().as_str(), &tagged.value) {
                    ("!GetAtt", Value::String(target)) => {
                        target.split('.').next().map(str::to_owned)
                    }
                    ("!Ref", Value::String(target)) => Some(target.clone()),
                    _ => None,
                },
                _ => None,
            };
            let key = key.as_str().unwrap_or("?").to_owned();
            let named = named.ok_or_else(|| {
                TemplateError::Shape(format!(
                    "{logical_id}: substitution {key} names no resource"
                ))
            })?;
            substitutions.insert(key, named);
        }
        Ok(StateMachine {
            definition_uri,
            substitutions,
        })
    }

    /// The table's definition, from the `ConversationsTable` resource.
    pub fn table(&self) -> Result<TableDefinition, TemplateError> {
        let properties = self
            .resources()?
            .get(TABLE_RESOURCE)
            .and_then(|t| t.get("Properties"))
            .ok_or_else(|| TemplateError::Shape(format!("no {TABLE_RESOURCE} with Properties")))?;
        Ok(serde_norway::from_value(properties.clone())?)
    }
}

/// The logical id `!GetAtt <id>.Arn` names.
fn get_att_arn(value: &Value) -> Option<String> {
    let Value::Tagged(tagged) = value else {
        return None;
    };
    if tagged.tag != "GetAtt" && tagged.tag != "!GetAtt" {
        return None;
    }
    tagged
        .value
        .as_str()?
        .strip_suffix(".Arn")
        .map(str::to_owned)
}
