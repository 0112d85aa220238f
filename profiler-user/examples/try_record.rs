use std::time::Duration;
fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt().with_env_filter("debug").init();
    let args: Vec<String> = std::env::args().collect();
    let target = if args.len() > 1 { stackwatch::target::TargetSpec::Pids(vec![args[1].parse()?]) } else { stackwatch::target::TargetSpec::Host };
    let config = stackwatch::config::RecordConfig { target, duration: Duration::from_secs(3), frequency_hz: 99, output_dir: "/tmp/swout".into(), profiles: vec![stackwatch::profile::ProfileKind::Cpu], formats: Default::default() };
    tokio::runtime::Runtime::new()?.block_on(stackwatch::record::run(config))
}
