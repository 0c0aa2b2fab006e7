//! `wedge functions [ls|show|rm|rollback]`: what a server runs, and managing deployed
//! functions.

use anyhow::anyhow;
use serde_json::{Value, json};

use crate::api_client::{Client, ServerArgs};
use crate::exit::{Failure, Status};

#[derive(clap::Args)]
pub struct FunctionsArgs {
    #[command(subcommand)]
    action: Option<Action>,
    #[command(flatten)]
    server: ServerArgs,
}

#[derive(clap::Subcommand)]
enum Action {
    /// List every function the server serves (the default).
    Ls {
        #[command(flatten)]
        server: ServerArgs,
    },
    /// Show one function: its config, current version and all versions.
    Show {
        name: String,
        /// Print the server's JSON as it is.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// Remove a deployed function and all its versions.
    Rm {
        name: String,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// Serve an earlier version again.
    Rollback {
        name: String,
        /// The version to serve [default: the one before the current].
        #[arg(long, value_name = "VERSION")]
        to: Option<u64>,
        #[command(flatten)]
        server: ServerArgs,
    },
}

pub fn functions(args: FunctionsArgs) -> Result<(), Failure> {
    // The server flags are accepted before and after the action.
    let (action, server) = match args.action {
        None => (None, args.server),
        Some(Action::Ls { server }) => (None, server.or(args.server)),
        Some(Action::Show { name, json, server }) => (
            Some(Action::Show {
                name,
                json,
                server: server.clone(),
            }),
            server.or(args.server),
        ),
        Some(Action::Rm { name, server }) => (
            Some(Action::Rm {
                name,
                server: server.clone(),
            }),
            server.or(args.server),
        ),
        Some(Action::Rollback { name, to, server }) => (
            Some(Action::Rollback {
                name,
                to,
                server: server.clone(),
            }),
            server.or(args.server),
        ),
    };
    let client = Client::new(&server)?;
    match action {
        None | Some(Action::Ls { .. }) => list(&client),
        Some(Action::Show { name, json, .. }) => show(&client, &name, json),
        Some(Action::Rm { name, .. }) => {
            client.delete(&format!("/functions/{name}"))?;
            eprintln!("wedge: removed `{name}`");
            Ok(())
        }
        Some(Action::Rollback { name, to, .. }) => {
            let body = match to {
                Some(version) => json!({ "version": version }).to_string(),
                None => String::new(),
            };
            let answer = client.send(
                "POST",
                &format!("/functions/{name}/rollback"),
                "application/json",
                body.as_bytes(),
            )?;
            eprintln!(
                "wedge: `{name}` now serves version {}",
                answer.json.get("version").cloned().unwrap_or(Value::Null)
            );
            println!(
                "{}",
                answer.json.get("url").and_then(Value::as_str).unwrap_or("")
            );
            Ok(())
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

fn list(client: &Client) -> Result<(), Failure> {
    let answer = client.get("/functions")?;
    let Some(functions) = answer.json.get("functions").and_then(Value::as_array) else {
        return Err(Failure::new(
            Status::ApiRefused,
            anyhow!("the server's answer has no `functions` list"),
        ));
    };
    println!(
        "{:<24} {:<6} {:<5} {:>7}  URL",
        "NAME", "SOURCE", "KIND", "VERSION"
    );
    for function in functions {
        println!(
            "{:<24} {:<6} {:<5} {:>7}  {}{}",
            text(function, "name"),
            text(function, "source"),
            text(function, "kind"),
            text(function, "version"),
            text(function, "url"),
            match function.get("load_error") {
                Some(error) => format!("  (not served: {error})"),
                None => String::new(),
            }
        );
    }
    Ok(())
}

fn show(client: &Client, name: &str, raw: bool) -> Result<(), Failure> {
    let answer = client.get(&format!("/functions/{name}"))?;
    let value = &answer.json;
    if raw {
        println!(
            "{}",
            serde_json::to_string_pretty(value).unwrap_or_default()
        );
        return Ok(());
    }
    println!("name:     {}", text(value, "name"));
    println!("source:   {}", text(value, "source"));
    println!("url:      {}", text(value, "url"));
    println!("kind:     {}", text(value, "kind"));
    if let Some(triggers) = value.get("triggers").and_then(Value::as_array)
        && !triggers.is_empty()
    {
        println!("triggers:");
        for (index, trigger) in triggers.iter().enumerate() {
            println!("  {index}  {trigger}");
        }
    }
    if let Some(manifest) = value.get("manifest").and_then(Value::as_str) {
        println!("manifest: {manifest}");
        return Ok(());
    }
    println!("version:  {}", text(value, "version"));
    println!("digest:   {}", text(value, "digest"));
    println!("created:  {}", text(value, "created"));
    println!("updated:  {}", text(value, "updated"));
    if let Some(config) = value.get("config") {
        println!("config:   {config}");
    }
    if let Some(versions) = value.get("versions").and_then(Value::as_array) {
        println!("versions:");
        let current = value.get("version");
        for version in versions {
            let marker = if version.get("version") == current {
                "*"
            } else {
                " "
            };
            println!(
                "  {marker} {:>4}  {}  {:<5} {:>9} bytes  {}",
                text(version, "version"),
                text(version, "created"),
                text(version, "kind"),
                text(version, "size"),
                &text(version, "digest")[..12.min(text(version, "digest").len())]
            );
        }
    }
    Ok(())
}
