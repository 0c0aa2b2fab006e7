//! `wedge deploy NAME FILE`: upload a function to a running server and print its URL.

use std::collections::BTreeMap;
use std::path::PathBuf;

use anyhow::{Context, anyhow};
use serde_json::{Value, json};

use crate::api_client::{Client, ServerArgs, deploy_body};
use crate::exit::{Failure, Status, WithStatus};

#[derive(clap::Args)]
pub struct DeployArgs {
    /// The function's name: 1 to 63 characters of a-z, 0-9 and -.
    name: String,
    /// Its .wasm: an `http` component or a `wagi` module.
    file: PathBuf,
    /// Path prefix it serves [default: /NAME].
    #[arg(long, value_name = "PATH")]
    route: Option<String>,
    /// `http` or `wagi` [default: detected from the binary].
    #[arg(long, value_name = "KIND")]
    kind: Option<String>,
    /// An environment variable for the function (repeatable).
    #[arg(long = "env", value_name = "NAME=VALUE")]
    env: Vec<String>,
    /// A host it may call, as scheme://host[:port] (repeatable).
    #[arg(long = "allow-outbound", value_name = "URL")]
    allowed_outbound_hosts: Vec<String>,
    /// Wall-clock deadline per request, e.g. 5s.
    #[arg(long, value_name = "DURATION")]
    timeout: Option<String>,
    /// Memory limit, e.g. 64MiB.
    #[arg(long, value_name = "SIZE")]
    max_memory: Option<String>,
    /// Requests it may handle at once.
    #[arg(long, value_name = "N")]
    max_concurrency: Option<i64>,
    /// A trigger, as a JSON object, e.g. '{"type":"cron","schedule":"0 3 * * *"}'
    /// (repeatable; docs/triggers.md). With triggers and no --route, it has no route.
    #[arg(long = "trigger", value_name = "JSON")]
    triggers: Vec<String>,
    #[command(flatten)]
    server: ServerArgs,
}

pub fn deploy(args: DeployArgs) -> Result<(), Failure> {
    let client = Client::new(&args.server)?;
    let wasm = std::fs::read(&args.file)
        .with_context(|| format!("cannot read `{}`", args.file.display()))
        .status(Status::NoInput)?;
    let mut env = BTreeMap::new();
    for pair in &args.env {
        let Some((name, value)) = pair.split_once('=') else {
            return Err(Failure::new(
                Status::Usage,
                anyhow!("--env {pair}: write NAME=VALUE"),
            ));
        };
        env.insert(name.to_string(), value.to_string());
    }
    // Only the keys given: the server applies its defaults to the rest.
    let mut config = json!({});
    let mut set = |key: &str, value: Value| {
        config[key] = value;
    };
    if let Some(route) = &args.route {
        set("route", json!(route));
    }
    if let Some(kind) = &args.kind {
        set("kind", json!(kind));
    }
    if !env.is_empty() {
        set("env", json!(env));
    }
    if !args.allowed_outbound_hosts.is_empty() {
        set("allowed_outbound_hosts", json!(args.allowed_outbound_hosts));
    }
    if let Some(timeout) = &args.timeout {
        set("timeout", json!(timeout));
    }
    if let Some(max_memory) = &args.max_memory {
        set("max_memory", json!(max_memory));
    }
    if let Some(n) = args.max_concurrency {
        set("max_concurrency", json!(n));
    }
    let mut triggers = Vec::with_capacity(args.triggers.len());
    for text in &args.triggers {
        let trigger: Value = serde_json::from_str(text).map_err(|error| {
            Failure::new(
                Status::Usage,
                anyhow!(
                    "--trigger {text}: not JSON ({error}); write e.g. --trigger '{{\"type\":\"cron\",\"schedule\":\"0 3 * * *\"}}'"
                ),
            )
        })?;
        if !trigger.is_object() {
            return Err(Failure::new(
                Status::Usage,
                anyhow!("--trigger {text}: a trigger is a JSON object with a \"type\""),
            ));
        }
        triggers.push(trigger);
    }
    if !triggers.is_empty() {
        set("trigger", json!(triggers));
    }
    let (content_type, body) = deploy_body(&config, &wasm);
    let answer = client.send(
        "PUT",
        &format!("/functions/{}", args.name),
        &content_type,
        &body,
    )?;
    let field = |key: &str| answer.json.get(key).cloned().unwrap_or(Value::Null);
    eprintln!(
        "wedge: deployed `{}` version {} ({}, {})",
        args.name,
        field("version"),
        field("kind").as_str().unwrap_or("?"),
        if answer.status == 201 {
            "new function"
        } else {
            "replaces the previous version"
        }
    );
    match field("url").as_str() {
        Some(url) => println!("{url}"),
        None => eprintln!("wedge: it has no route; it is reached by its triggers"),
    }
    Ok(())
}
