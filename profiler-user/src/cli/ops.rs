//! The flags that plug stackwatch into an ops stack: `watch --listen` (an
//! HTTP endpoint for Alertmanager and Prometheus) and `--push` (Grafana
//! Pyroscope). Each has a config-file key of the same name; the settings
//! that only make sense in a file (push labels, alert label mapping) are
//! only there ([`crate::config::file`]).

use std::path::PathBuf;

use clap::Args;

const LISTEN_HEADING: &str = "HTTP endpoint";
const PUSH_HEADING: &str = "Push to Pyroscope";

/// `watch --listen`.
#[derive(Args, Debug, Clone, Default)]
pub(crate) struct ListenArgs {
    /// Serve HTTP on ADDR: `POST /alerts` (Alertmanager/Grafana webhook), `GET /metrics`,
    /// `GET /healthz`. A loopback `HOST:PORT` (e.g. `127.0.0.1:9464`) or `unix:PATH`; other
    /// addresses need --listen-token-file [default: off]
    #[arg(long, value_name = "ADDR", help_heading = LISTEN_HEADING)]
    pub(crate) listen: Option<String>,

    /// File holding the bearer token every HTTP request must carry (`Authorization: Bearer TOKEN`)
    #[arg(long, value_name = "FILE", help_heading = LISTEN_HEADING)]
    pub(crate) listen_token_file: Option<PathBuf>,
}

/// `--push` and its credentials (`record` and `watch`).
#[derive(Args, Debug, Clone, Default)]
pub(crate) struct PushArgs {
    /// Send every pprof to Grafana Pyroscope at URL (e.g. `http://pyroscope:4040`); the files
    /// are written as before
    #[arg(long, value_name = "URL", help_heading = PUSH_HEADING)]
    pub(crate) push: Option<String>,

    /// File holding a bearer token for the push (`Authorization: Bearer TOKEN`)
    #[arg(long, value_name = "FILE", help_heading = PUSH_HEADING, conflicts_with = "push_user")]
    pub(crate) push_token_file: Option<PathBuf>,

    /// User for HTTP basic auth on the push (Grafana Cloud: the stack's user id)
    #[arg(long, value_name = "USER", help_heading = PUSH_HEADING, requires = "push_password_file")]
    pub(crate) push_user: Option<String>,

    /// File holding the basic-auth password (Grafana Cloud: an access token)
    #[arg(long, value_name = "FILE", help_heading = PUSH_HEADING, requires = "push_user")]
    pub(crate) push_password_file: Option<PathBuf>,

    /// Tenant sent as `X-Scope-OrgID` (multi-tenant Pyroscope)
    #[arg(long, value_name = "ID", help_heading = PUSH_HEADING)]
    pub(crate) push_tenant: Option<String>,
}
