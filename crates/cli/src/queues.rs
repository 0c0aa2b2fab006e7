//! `wedge queues ls|send|dlq|replay`: the node's durable queues, through the deploy API.

use std::io::Read;

use anyhow::{Context, anyhow};
use serde_json::{Value, json};

use crate::api_client::{Client, ServerArgs};
use crate::exit::{Failure, Status, WithStatus};

#[derive(clap::Args)]
pub struct QueuesArgs {
    #[command(subcommand)]
    command: QueuesCommand,
    #[command(flatten)]
    server: ServerArgs,
}

#[derive(clap::Subcommand)]
enum QueuesCommand {
    /// List the queues the node knows, with their depth and dead letters.
    Ls,
    /// Send one message (the text, or `-` for stdin).
    Send {
        /// The queue's name.
        queue: String,
        /// The message's body; `-` reads it from stdin.
        body: String,
        /// Its content type.
        #[arg(long, value_name = "TYPE", default_value = "text/plain")]
        content_type: String,
        #[command(flatten)]
        scope: Scope,
    },
    /// Show a queue's dead-letter list.
    Dlq {
        queue: String,
        /// The most to show.
        #[arg(long, default_value_t = 100)]
        limit: usize,
        #[command(flatten)]
        scope: Scope,
    },
    /// Send dead letters back to their queue (all, or those given with --id).
    Replay {
        queue: String,
        /// A dead letter's id (repeatable).
        #[arg(long = "id", value_name = "ID")]
        ids: Vec<String>,
        #[command(flatten)]
        scope: Scope,
    },
}

#[derive(clap::Args)]
struct Scope {
    /// The queue is this function's (a deployed function's queues are its own) [default: the
    /// app's].
    #[arg(long, value_name = "NAME")]
    function: Option<String>,
}

impl Scope {
    fn query(&self, more: &str) -> String {
        let mut parts: Vec<String> = Vec::new();
        if let Some(function) = &self.function {
            parts.push(format!("function={function}"));
        }
        if !more.is_empty() {
            parts.push(more.to_string());
        }
        if parts.is_empty() {
            String::new()
        } else {
            format!("?{}", parts.join("&"))
        }
    }
}

fn text(value: &Value, key: &str) -> String {
    match value.get(key) {
        Some(Value::String(text)) => text.clone(),
        Some(Value::Null) | None => "-".into(),
        Some(other) => other.to_string(),
    }
}

pub fn queues(args: QueuesArgs) -> Result<(), Failure> {
    let client = Client::new(&args.server)?;
    match args.command {
        QueuesCommand::Ls => {
            let answer = client.get("/queues")?;
            let Some(queues) = answer.json.get("queues").and_then(Value::as_array) else {
                return Err(Failure::new(
                    Status::ApiRefused,
                    anyhow!("the server's answer has no `queues` list"),
                ));
            };
            println!(
                "{:<24} {:<24} {:>8} {:>9} {:>5}  OLDEST",
                "QUEUE", "SCOPE", "DEPTH", "IN FLIGHT", "DEAD"
            );
            for queue in queues {
                println!(
                    "{:<24} {:<24} {:>8} {:>9} {:>5}  {}",
                    text(queue, "name"),
                    text(queue, "scope"),
                    text(queue, "depth"),
                    text(queue, "in_flight"),
                    text(queue, "dead_letters"),
                    text(queue, "oldest_enqueued"),
                );
            }
            Ok(())
        }
        QueuesCommand::Send {
            queue,
            body,
            content_type,
            scope,
        } => {
            let bytes = if body == "-" {
                let mut bytes = Vec::new();
                std::io::stdin()
                    .read_to_end(&mut bytes)
                    .context("cannot read the message from stdin")
                    .status(Status::NoInput)?;
                bytes
            } else {
                body.into_bytes()
            };
            let answer = client.send(
                "POST",
                &format!("/queues/{queue}/messages{}", scope.query("")),
                &content_type,
                &bytes,
            )?;
            let id = answer
                .json
                .get("ids")
                .and_then(Value::as_array)
                .and_then(|ids| ids.first())
                .and_then(Value::as_str)
                .unwrap_or("?")
                .to_string();
            eprintln!("wedge: sent to `{queue}`");
            println!("{id}");
            Ok(())
        }
        QueuesCommand::Dlq {
            queue,
            limit,
            scope,
        } => {
            let answer = client.get(&format!(
                "/queues/{queue}/dlq{}",
                scope.query(&format!("limit={limit}"))
            ))?;
            let dead = answer
                .json
                .get("dead_letters")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default();
            for letter in &dead {
                println!(
                    "{}  attempts={}  died={}  {}\n    {}",
                    text(letter, "id"),
                    text(letter, "attempts"),
                    text(letter, "died"),
                    text(letter, "reason"),
                    text(letter, "body")
                );
            }
            eprintln!("wedge: {} dead letter(s) in `{queue}`", dead.len());
            Ok(())
        }
        QueuesCommand::Replay { queue, ids, scope } => {
            let body = if ids.is_empty() {
                String::new()
            } else {
                json!({ "ids": ids }).to_string()
            };
            let answer = client.send(
                "POST",
                &format!("/queues/{queue}/dlq/replay{}", scope.query("")),
                "application/json",
                body.as_bytes(),
            )?;
            println!("{}", text(&answer.json, "replayed"));
            Ok(())
        }
    }
}
