//! `wedge logs NAME [-f]`: a function's log (its guests' stdout and stderr and wedge's notes,
//! each line with its request id), and with `-f` every new line as it comes.

use crate::api_client::{Client, ServerArgs};
use crate::exit::Failure;

#[derive(clap::Args)]
pub struct LogsArgs {
    /// The function's name.
    name: String,
    /// Keep printing new lines until interrupted (or the server stops).
    #[arg(short, long)]
    follow: bool,
    #[command(flatten)]
    server: ServerArgs,
}

pub fn logs(args: LogsArgs) -> Result<(), Failure> {
    let client = Client::new(&args.server)?;
    let path = format!(
        "/functions/{}/logs{}",
        args.name,
        if args.follow { "?follow=1" } else { "" }
    );
    client.stream(&path, &mut std::io::stdout().lock())
}
