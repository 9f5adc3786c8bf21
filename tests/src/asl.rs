//! Runs a state machine definition (Amazon States Language) the way Step Functions does, for
//! the parts our definitions use: Task (Lambda invoke, DynamoDB UpdateItem), Choice, Map,
//! Pass, Succeed, Fail; Parameters / ItemSelector with `.$` paths and `States.Format`;
//! ResultPath, OutputPath, Retry (attempt counts, no waiting) and Catch.
//!
//! Step Functions cannot run Lambda tasks here (moto needs Docker for Lambda), so Lambda
//! tasks call the same handler functions the Lambda binaries run; DynamoDB tasks go to the
//! local DynamoDB server for real. What drives the run is the definition file itself.

use std::collections::BTreeMap;
use std::sync::Mutex;

use aws_sdk_dynamodb::types::AttributeValue;
use futures::future::BoxFuture;
use futures::{stream, StreamExt, TryStreamExt};
use serde_json::{json, Map, Value};

/// A failed state, as Step Functions names it (`Error`) and explains it (`Cause`).
#[derive(Debug, Clone, PartialEq)]
pub struct Failure {
    pub error: String,
    pub cause: String,
}

impl Failure {
    pub fn new(error: impl Into<String>, cause: impl Into<String>) -> Self {
        Self {
            error: error.into(),
            cause: cause.into(),
        }
    }

    fn runtime(cause: impl Into<String>) -> Self {
        Self::new("States.Runtime", cause)
    }
}

/// Runs a Lambda task: the function's binary and its payload, to its result.
pub type Invoke = dyn Fn(String, Value) -> BoxFuture<'static, Result<Value, Failure>> + Send + Sync;

/// What a `${…}` placeholder of the definition stands for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// A Lambda function, by its binary.
    Function(String),
    /// The table, by its name.
    Table(String),
}

pub struct Interpreter<'a> {
    definition: Value,
    targets: BTreeMap<String, Target>,
    invoke: &'a Invoke,
    dynamodb: aws_sdk_dynamodb::Client,
    /// Every state entered, in order (Map iterations interleave).
    pub trace: Mutex<Vec<String>>,
}

#[derive(Clone)]
struct Context {
    execution_name: String,
    map_item: Option<(usize, Value)>,
}

impl<'a> Interpreter<'a> {
    pub fn new(
        definition: Value,
        targets: BTreeMap<String, Target>,
        invoke: &'a Invoke,
        dynamodb: aws_sdk_dynamodb::Client,
    ) -> Self {
        Self {
            definition,
            targets,
            invoke,
            dynamodb,
            trace: Mutex::new(Vec::new()),
        }
    }

    /// Runs an execution named `execution_name` with `input`, to its output or failure.
    pub async fn run(&self, execution_name: &str, input: Value) -> Result<Value, Failure> {
        let context = Context {
            execution_name: execution_name.to_owned(),
            map_item: None,
        };
        self.run_states(&self.definition, input, context).await
    }

    fn run_states<'s>(
        &'s self,
        machine: &'s Value,
        input: Value,
        context: Context,
    ) -> BoxFuture<'s, Result<Value, Failure>> {
        Box::pin(async move {
            let states = &machine["States"];
            let mut name = text(&machine["StartAt"])?.to_owned();
            let mut data = input;
            loop {
                let state = states
                    .get(&name)
                    .ok_or_else(|| Failure::runtime(format!("no state {name}")))?;
                self.trace.lock().unwrap().push(name.clone());
                let kind = text(&state["Type"])?;
                let next = match kind {
                    "Succeed" => return Ok(data),
                    "Fail" => {
                        return Err(Failure::new(
                            state["Error"].as_str().unwrap_or("States.Fail"),
                            state["Cause"].as_str().unwrap_or(""),
                        ))
                    }
                    "Choice" => {
                        name = choose(state, &data)?;
                        continue;
                    }
                    "Pass" => {
                        let result = match state.get("Parameters") {
                            Some(parameters) => resolve(parameters, &data, &context)?,
                            None => state.get("Result").cloned().unwrap_or(data.clone()),
                        };
                        data = output(state, place(state, data, result)?)?;
                        None
                    }
                    "Task" => {
                        let parameters = match state.get("Parameters") {
                            Some(parameters) => resolve(parameters, &data, &context)?,
                            None => data.clone(),
                        };
                        match self.task_with_retries(state, parameters).await {
                            Ok(result) => {
                                let result = match state.get("ResultSelector") {
                                    Some(selector) => resolve(selector, &result, &context)?,
                                    None => result,
                                };
                                data = output(state, place(state, data, result)?)?;
                                None
                            }
                            Err(failure) => match catcher(state, &failure) {
                                Some(catcher) => {
                                    let caught =
                                        json!({"Error": failure.error, "Cause": failure.cause});
                                    data = place(catcher, data, caught)?;
                                    Some(text(&catcher["Next"])?.to_owned())
                                }
                                None => return Err(failure),
                            },
                        }
                    }
                    "Map" => {
                        let results = self.map(state, &data, &context).await?;
                        data = output(state, place(state, data, Value::Array(results))?)?;
                        None
                    }
                    other => return Err(Failure::runtime(format!("state type {other}"))),
                };
                name = match next {
                    Some(next) => next,
                    None if state["End"] == json!(true) => return Ok(data),
                    None => text(&state["Next"])?.to_owned(),
                };
            }
        })
    }

    async fn map(
        &self,
        state: &Value,
        data: &Value,
        context: &Context,
    ) -> Result<Vec<Value>, Failure> {
        let items = match select(data, state["ItemsPath"].as_str().unwrap_or("$"), context)? {
            Value::Array(items) => items,
            other => {
                return Err(Failure::runtime(format!(
                    "ItemsPath is not a list: {other}"
                )))
            }
        };
        let processor = state
            .get("ItemProcessor")
            .or_else(|| state.get("Iterator"))
            .ok_or_else(|| Failure::runtime("Map without ItemProcessor"))?;
        let concurrency = state["MaxConcurrency"]
            .as_u64()
            .filter(|n| *n > 0)
            .unwrap_or(40);
        let inputs = items
            .into_iter()
            .enumerate()
            .map(|(index, item)| {
                let context = Context {
                    map_item: Some((index, item.clone())),
                    ..context.clone()
                };
                let input = match state
                    .get("ItemSelector")
                    .or_else(|| state.get("Parameters"))
                {
                    Some(selector) => resolve(selector, data, &context)?,
                    None => item,
                };
                Ok((input, context))
            })
            .collect::<Result<Vec<_>, Failure>>()?;
        stream::iter(inputs)
            .map(|(input, context)| self.run_states(processor, input, context))
            .buffered(concurrency as usize)
            .try_collect()
            .await
    }

    async fn task_with_retries(&self, state: &Value, parameters: Value) -> Result<Value, Failure> {
        let retriers = state["Retry"].as_array().cloned().unwrap_or_default();
        let mut attempts = vec![0u64; retriers.len()];
        loop {
            let failure = match self.task(state, parameters.clone()).await {
                Ok(result) => return Ok(result),
                Err(failure) => failure,
            };
            let retrier = retriers.iter().position(|r| matches_error(r, &failure));
            match retrier {
                Some(i) if attempts[i] < retriers[i]["MaxAttempts"].as_u64().unwrap_or(3) => {
                    attempts[i] += 1;
                }
                _ => return Err(failure),
            }
        }
    }

    async fn task(&self, state: &Value, parameters: Value) -> Result<Value, Failure> {
        let resource = text(&state["Resource"])?;
        match resource {
            "arn:aws:states:::lambda:invoke" => {
                let binary = match self.target(&parameters["FunctionName"])? {
                    Target::Function(binary) => binary,
                    other => return Err(Failure::runtime(format!("not a function: {other:?}"))),
                };
                let payload = parameters.get("Payload").cloned().unwrap_or(Value::Null);
                let result = (self.invoke)(binary, payload).await?;
                Ok(json!({"StatusCode": 200, "Payload": result}))
            }
            "arn:aws:states:::dynamodb:updateItem" => {
                let table = match self.target(&parameters["TableName"])? {
                    Target::Table(table) => table,
                    other => return Err(Failure::runtime(format!("not a table: {other:?}"))),
                };
                let mut update = self
                    .dynamodb
                    .update_item()
                    .table_name(table)
                    .set_key(Some(attribute_map(&parameters["Key"])?))
                    .set_update_expression(
                        parameters["UpdateExpression"].as_str().map(str::to_owned),
                    );
                if let Some(values) = parameters.get("ExpressionAttributeValues") {
                    update = update.set_expression_attribute_values(Some(attribute_map(values)?));
                }
                if let Some(condition) = parameters["ConditionExpression"].as_str() {
                    update = update.condition_expression(condition);
                }
                update.send().await.map_err(|e| {
                    Failure::new("DynamoDB.AmazonDynamoDBException", format!("{e:?}"))
                })?;
                Ok(json!({}))
            }
            other => Err(Failure::runtime(format!("unsupported resource {other}"))),
        }
    }

    fn target(&self, placeholder: &Value) -> Result<Target, Failure> {
        let raw = text(placeholder)?;
        let name = raw
            .strip_prefix("${")
            .and_then(|r| r.strip_suffix('}'))
            .ok_or_else(|| Failure::runtime(format!("{raw} is not a ${{placeholder}}")))?;
        self.targets
            .get(name)
            .cloned()
            .ok_or_else(|| Failure::runtime(format!("no substitution for {name}")))
    }
}

fn text(value: &Value) -> Result<&str, Failure> {
    value
        .as_str()
        .ok_or_else(|| Failure::runtime(format!("expected a string, found {value}")))
}

fn matches_error(rule: &Value, failure: &Failure) -> bool {
    rule["ErrorEquals"].as_array().is_some_and(|names| {
        names
            .iter()
            .any(|n| n == "States.ALL" || n.as_str() == Some(failure.error.as_str()))
    })
}

fn catcher<'v>(state: &'v Value, failure: &Failure) -> Option<&'v Value> {
    state["Catch"]
        .as_array()?
        .iter()
        .find(|c| matches_error(c, failure))
}

fn choose(state: &Value, data: &Value) -> Result<String, Failure> {
    for rule in state["Choices"].as_array().into_iter().flatten() {
        let variable = text(&rule["Variable"])?;
        let value = lookup(data, variable);
        let matched = if let Some(expected) = rule.get("IsPresent") {
            Some(value.is_some()) == expected.as_bool()
        } else if let Some(expected) = rule.get("IsNull") {
            value.map(Value::is_null) == expected.as_bool()
        } else if let Some(expected) = rule.get("BooleanEquals") {
            value == Some(expected)
        } else if let Some(expected) = rule.get("StringEquals") {
            value == Some(expected)
        } else {
            return Err(Failure::runtime(format!("unsupported choice rule {rule}")));
        };
        if matched {
            return Ok(text(&rule["Next"])?.to_owned());
        }
    }
    Ok(text(&state["Default"])
        .map_err(|_| Failure::new("States.NoChoiceMatched", "no choice matched"))?
        .to_owned())
}

/// A JSONPath of the subset definitions use: `$`, `$.a.b`, `$$.Execution.Name`,
/// `$$.Map.Item.Value`, `$$.Map.Item.Index`.
fn select(data: &Value, path: &str, context: &Context) -> Result<Value, Failure> {
    if let Some(context_path) = path.strip_prefix("$$.") {
        return match (context_path, &context.map_item) {
            ("Execution.Name", _) => Ok(json!(context.execution_name)),
            ("Map.Item.Value", Some((_, value))) => Ok(value.clone()),
            ("Map.Item.Index", Some((index, _))) => Ok(json!(index)),
            _ => Err(Failure::runtime(format!("context path {path}"))),
        };
    }
    lookup(data, path)
        .cloned()
        .ok_or_else(|| Failure::runtime(format!("the path {path} is not in the input {data}")))
}

fn lookup<'v>(data: &'v Value, path: &str) -> Option<&'v Value> {
    let rest = path.strip_prefix('$')?;
    rest.split('.')
        .filter(|s| !s.is_empty())
        .try_fold(data, |value, key| value.get(key))
}

/// Parameters with `key.$` entries evaluated against the input.
fn resolve(template: &Value, data: &Value, context: &Context) -> Result<Value, Failure> {
    match template {
        Value::Object(fields) => {
            let mut out = Map::new();
            for (key, value) in fields {
                match key.strip_suffix(".$") {
                    Some(key) => {
                        let expression = text(value)?;
                        out.insert(key.to_owned(), evaluate(expression, data, context)?);
                    }
                    None => {
                        out.insert(key.clone(), resolve(value, data, context)?);
                    }
                }
            }
            Ok(Value::Object(out))
        }
        Value::Array(items) => items
            .iter()
            .map(|item| resolve(item, data, context))
            .collect::<Result<Vec<_>, _>>()
            .map(Value::Array),
        other => Ok(other.clone()),
    }
}

fn evaluate(expression: &str, data: &Value, context: &Context) -> Result<Value, Failure> {
    let Some(arguments) = expression
        .strip_prefix("States.Format(")
        .and_then(|e| e.strip_suffix(')'))
    else {
        return select(data, expression, context);
    };
    let (format, paths) = arguments
        .strip_prefix('\'')
        .and_then(|a| a.split_once('\''))
        .ok_or_else(|| Failure::runtime(format!("States.Format: {expression}")))?;
    let mut out = String::new();
    let mut values = paths
        .split(',')
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .map(|p| select(data, p, context));
    let mut pieces = format.split("{}").peekable();
    while let Some(piece) = pieces.next() {
        out.push_str(piece);
        if pieces.peek().is_some() {
            let value = values
                .next()
                .ok_or_else(|| Failure::runtime("States.Format: too few arguments"))??;
            match value {
                Value::String(s) => out.push_str(&s),
                other => out.push_str(&other.to_string()),
            }
        }
    }
    Ok(Value::String(out))
}

/// The state's ResultPath applied: the result discarded (`null`), in place of the input
/// (`$`), or set at a field of it.
fn place(state: &Value, data: Value, result: Value) -> Result<Value, Failure> {
    match state.get("ResultPath") {
        Some(Value::Null) => Ok(data),
        None => Ok(result),
        Some(Value::String(path)) if path == "$" => Ok(result),
        Some(Value::String(path)) => {
            let mut data = data;
            let keys: Vec<&str> = path
                .strip_prefix("$.")
                .ok_or_else(|| Failure::runtime(format!("ResultPath {path}")))?
                .split('.')
                .collect();
            let mut at = &mut data;
            for key in &keys[..keys.len() - 1] {
                at = at
                    .as_object_mut()
                    .ok_or_else(|| Failure::runtime("ResultPath into a non-object"))?
                    .entry(key.to_string())
                    .or_insert_with(|| json!({}));
            }
            at.as_object_mut()
                .ok_or_else(|| Failure::runtime("ResultPath into a non-object"))?
                .insert(keys[keys.len() - 1].to_owned(), result);
            Ok(data)
        }
        Some(other) => Err(Failure::runtime(format!("ResultPath {other}"))),
    }
}

fn output(state: &Value, data: Value) -> Result<Value, Failure> {
    match state.get("OutputPath") {
        None => Ok(data),
        Some(Value::String(path)) => lookup(&data, path)
            .cloned()
            .ok_or_else(|| Failure::runtime(format!("OutputPath {path} not in {data}"))),
        Some(other) => Err(Failure::runtime(format!("OutputPath {other}"))),
    }
}

/// DynamoDB JSON (`{"S": "x"}`, `{"N": "1"}`, `{"L": [...]}`, `{"M": {...}}`) to values.
fn attribute_map(
    value: &Value,
) -> Result<std::collections::HashMap<String, AttributeValue>, Failure> {
    value
        .as_object()
        .ok_or_else(|| Failure::runtime(format!("not an attribute map: {value}")))?
        .iter()
        .map(|(k, v)| Ok((k.clone(), attribute(v)?)))
        .collect()
}

fn attribute(value: &Value) -> Result<AttributeValue, Failure> {
    let (kind, inner) = value
        .as_object()
        .filter(|o| o.len() == 1)
        .and_then(|o| o.iter().next())
        .ok_or_else(|| Failure::runtime(format!("not an attribute value: {value}")))?;
    Ok(match kind.as_str() {
        "S" => AttributeValue::S(text(inner)?.to_owned()),
        "N" => AttributeValue::N(text(inner)?.to_owned()),
        "BOOL" => AttributeValue::Bool(inner.as_bool().unwrap_or(false)),
        "NULL" => AttributeValue::Null(true),
        "L" => AttributeValue::L(
            inner
                .as_array()
                .into_iter()
                .flatten()
                .map(attribute)
                .collect::<Result<_, _>>()?,
        ),
        "M" => AttributeValue::M(attribute_map(inner)?),
        other => return Err(Failure::runtime(format!("attribute type {other}"))),
    })
}
