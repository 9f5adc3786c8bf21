//! A hello-world Lambda function on `lambda_runtime` and nothing else: the floor the
//! cold-start benchmark (tests/benches/cold_start.rs) measures every function against.

use lambda_runtime::{service_fn, Error, LambdaEvent};
use serde_json::{json, Value};

#[tokio::main]
async fn main() -> Result<(), Error> {
    lambda_runtime::run(service_fn(|_event: LambdaEvent<Value>| async {
        Ok::<_, Error>(json!({ "hello": "world" }))
    }))
    .await
}
