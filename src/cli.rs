//! Command-line interface: `--config`, `--check-config` and every setting as
//! a flag (each also read from its `GATEHOUSE_*` env var by clap).

use std::path::PathBuf;

use clap::Parser;

use crate::config::RawConfig;

/// gatehouse: an authenticating reverse proxy and forward-auth server.
#[derive(Debug, Parser)]
#[command(name = "gatehouse", version, about, long_about = None)]
pub struct Cli {
    /// TOML configuration file (keys are the flag names with `_`)
    #[arg(long, env = "GATEHOUSE_CONFIG")]
    pub config: Option<PathBuf>,

    /// Validate the configuration, fetch the provider's discovery document,
    /// print every problem found, and exit (0 only when there are none)
    #[arg(long)]
    pub check_config: bool,

    /// Settings (flag > env > file > default)
    #[command(flatten)]
    pub settings: RawConfig,
}
