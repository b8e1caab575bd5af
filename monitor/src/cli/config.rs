//! `monitor config`: check the configuration, list its options.
use clap::Subcommand;

use super::{CliError, args::ConfigArgs};
use crate::{
    agent::RulesOptions,
    config::{Config, Sources, keys},
};

#[derive(Subcommand)]
pub(crate) enum ConfigCmd {
    /// Validate the configuration (file, environment, --set) and print it in full as YAML;
    /// exits non-zero, naming every problem, if it is invalid.
    Check {
        #[command(flatten)]
        config: ConfigArgs,
        /// Also compile the rules the configuration names.
        #[arg(long)]
        rules: bool,
    },
    /// List every option with its environment variable.
    Keys,
}

/// Runs a config subcommand.
pub(super) fn run(cmd: ConfigCmd) -> Result<(), CliError> {
    match cmd {
        ConfigCmd::Keys => {
            for (key, env) in keys() {
                println!("{key:<28} {env}");
            }
        }
        ConfigCmd::Check { config, rules } => {
            let c = Config::load(&Sources::from_process(config.config.clone(), config.set))?;
            print!("{}", c.to_yaml());
            if rules {
                let set = RulesOptions::from_config(&c, config.config.as_deref())?
                    .load()
                    .map_err(CliError::Rules)?;
                eprintln!("OK: configuration valid, {} rules", set.len());
            } else {
                eprintln!("OK: configuration valid");
            }
        }
    }
    Ok(())
}
