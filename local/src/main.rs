//! `numina-local`: serve the API on localhost, create the local table from the template,
//! or mint a bearer token for a test user.

use std::path::PathBuf;

use assistant::State;
use clap::{Parser, Subcommand};
use local::{table, Gateway, StreamPoller, StreamingUrl, Template, Tokens};

#[derive(Parser)]
#[command(name = "numina-local", about = "Run Numina Conversations on localhost")]
struct Cli {
    /// The SAM template whose routes and table are served.
    #[arg(long, global = true, default_value = "template.yaml")]
    template: PathBuf,
    /// Secret that signs and verifies local bearer tokens.
    #[arg(long, global = true, env = "LOCAL_JWT_SECRET", default_value = local::token::DEFAULT_SECRET)]
    jwt_secret: String,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Create the table (as TABLE_NAME) from the template, then serve the API.
    Serve {
        #[arg(long, env = "PORT", default_value_t = 3000)]
        port: u16,
        /// Port of the streaming completion function's URL.
        #[arg(long, env = "STREAM_PORT", default_value_t = 3001)]
        stream_port: u16,
    },
    /// Create the table from the template, if it does not exist.
    CreateTable {
        #[arg(long, env = "TABLE_NAME")]
        table_name: String,
    },
    /// Write short-term memory for some users, as the old system would have left it (to try
    /// the migration: `numina-migrate --dry-run`, then `numina-migrate`).
    SeedMemory {
        /// The users (default: three new ones, printed).
        #[arg(long = "user")]
        users: Vec<String>,
        #[arg(long, default_value_t = 3)]
        new_users: usize,
        /// Messages per user.
        #[arg(long, default_value_t = 40)]
        messages: usize,
    },
    /// Print a bearer token for a user.
    Token {
        #[arg(long)]
        user: String,
        #[arg(long, default_value_t = 24)]
        hours: i64,
    },
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let cli = Cli::parse();
    let tokens = Tokens::new(&cli.jwt_secret);
    match cli.command {
        Command::Token { user, hours } => println!("{}", tokens.mint(&user, hours * 3600)),
        Command::SeedMemory {
            users,
            new_users,
            messages,
        } => {
            let state = State::from_env().await?;
            let template = Template::load(&cli.template)?;
            let client = aws_sdk_dynamodb::Client::new(&aws_config::load_from_env().await);
            table::create_table(&client, &state.config.table_name, &template.table()?).await?;
            let mut users = users
                .iter()
                .map(|u| shared::model::UserId::parse(u))
                .collect::<Result<Vec<_>, _>>()?;
            if users.is_empty() {
                for _ in 0..new_users {
                    let id = uuid::Uuid::new_v4().to_string();
                    users.push(shared::model::UserId::parse(&id)?);
                }
            }
            let memory = state.assistant.memory();
            local::seed::short_term_memory(memory, &users, messages, chrono::Utc::now()).await?;
            for user in &users {
                println!("{user}: {messages} messages of short-term memory");
            }
        }
        Command::CreateTable { table_name } => {
            let template = Template::load(&cli.template)?;
            let client = aws_sdk_dynamodb::Client::new(&aws_config::load_from_env().await);
            let created = table::create_table(&client, &table_name, &template.table()?).await?;
            println!(
                "table {table_name} {}",
                if created { "created" } else { "exists" }
            );
        }
        Command::Serve { port, stream_port } => {
            shared::logging::init();
            let template = Template::load(&cli.template)?;
            let state = State::from_env().await?;
            let client = aws_sdk_dynamodb::Client::new(&aws_config::load_from_env().await);
            table::create_table(&client, &state.config.table_name, &template.table()?).await?;
            if let Some(bucket) = &state.config.attachments_bucket {
                table::create_bucket(bucket).await?;
            }
            let streaming = StreamingUrl::new(state.clone(), tokens.clone());
            // The stream functions, fed as Lambda feeds them (search indexing, purges, cache
            // invalidation).
            let poller = StreamPoller::from_latest(state.clone(), &template, None).await?;
            let swept = state.core.clone();
            let gateway = Gateway::new(&template.routes()?, state, tokens)?;
            let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
            let stream_listener = tokio::net::TcpListener::bind(("127.0.0.1", stream_port)).await?;
            eprintln!("Numina Conversations API on http://127.0.0.1:{port}");
            eprintln!("Streaming completion URL on http://127.0.0.1:{stream_port}");
            let polling = async {
                poller
                    .run(std::time::Duration::from_millis(500))
                    .await
                    .map_err(std::io::Error::other)
            };
            tokio::try_join!(
                gateway.serve(listener),
                streaming.serve(stream_listener),
                polling,
                sweep_hourly(swept)
            )?;
        }
    }
    Ok(())
}

/// How often the template schedules `sweep-deleted-conversations` (`rate(1 hour)`).
const SWEEP_EVERY: std::time::Duration = std::time::Duration::from_secs(3600);
/// The sweep function's timeout in the template: a sweep ends its work before it.
const SWEEP_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(900);

/// Sweeps deleted conversations every hour, as the template's schedule runs the sweep in AWS
/// (the first an hour after start): what an in-flight write left after a purge goes too.
async fn sweep_hourly(state: shared::state::State) -> Result<(), std::io::Error> {
    let mut hourly = tokio::time::interval(SWEEP_EVERY);
    hourly.tick().await;
    loop {
        hourly.tick().await;
        let deadline = std::time::Instant::now()
            + SWEEP_TIMEOUT.saturating_sub(shared::streams::DEADLINE_MARGIN);
        match shared::purge::sweep_deleted_conversations(&state, deadline).await {
            Ok(report) => tracing::info!(?report, "swept deleted conversations"),
            Err(error) => tracing::warn!(%error, "the sweep of deleted conversations failed"),
        }
    }
}
