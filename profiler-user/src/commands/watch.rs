//! `stackwatch watch`: the resident daemon ([`crate::watch`]), configured
//! from the command line over `--config` over the defaults.

use anyhow::Result;

use crate::cli::WatchArgs;
use crate::config::WatchConfig;

pub async fn run(args: &WatchArgs) -> Result<()> {
    let config = WatchConfig::load(args)?;
    crate::watch::run(config).await
}
