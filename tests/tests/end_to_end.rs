//! The end-to-end suite, one test binary (one link instead of one per file): real HTTP
//! against the local gateway and API Gateway events through the handlers, against the local
//! servers `scripts/test.sh` starts. Each module is one behaviour area; `cargo nextest` runs
//! every test in its own process. `observability.rs` is a binary of its own: it installs the
//! process's log subscriber and reads every metric the process writes, so it must not share
//! a process with other tests even under plain `cargo test`.

mod account_export;
mod appends;
mod attachments;
mod bad_input;
mod batch;
mod branches;
mod cache;
mod completion;
mod context;
mod contract;
mod conversations_api;
mod cursor_keys;
mod deletion;
mod events;
mod export;
mod faults;
mod health;
mod iam;
mod isolation;
mod limits;
mod migration;
mod migration_api;
mod migration_state_machine;
mod pagination;
mod presets;
mod search;
mod security_sweep;
mod sharing;
mod slot_keys;
mod stream_poller;
mod streaming;
mod streaming_url;
mod summaries;
mod sync;
mod template;
