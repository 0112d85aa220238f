//! `watch --listen` and `--push`, validated: flags over the config file's
//! keys of the same names. Secrets are read from files (never flags, which
//! every user sees in `ps`), once, at start.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::error::UsageError;
use super::file::{OneOrSize, WatchFile};
use crate::cli::ops::{ListenArgs, PushArgs};
use crate::sink::push::{self, PushAuth, PushConfig};

/// Where the HTTP endpoint listens.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum ListenAddr {
    Tcp(SocketAddr),
    Unix(PathBuf),
}

impl std::fmt::Display for ListenAddr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ListenAddr::Tcp(addr) => write!(f, "http://{addr}"),
            ListenAddr::Unix(path) => write!(f, "unix:{}", path.display()),
        }
    }
}

/// `watch --listen`, validated.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct ListenConfig {
    pub addr: ListenAddr,
    /// The bearer token every request must carry, if any.
    pub token: Option<String>,
}

impl std::fmt::Debug for ListenConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ListenConfig")
            .field("addr", &self.addr)
            .field("token", &self.token.as_ref().map(|_| "…"))
            .finish()
    }
}

/// `--listen` over the file's `listen`; `None` when neither is set.
pub(crate) fn listen_config(
    args: &ListenArgs,
    file: &WatchFile,
    bad: &dyn Fn(&str, String) -> UsageError,
) -> Result<Option<ListenConfig>, UsageError> {
    let Some(text) = args.listen.clone().or_else(|| file.listen.clone()) else {
        if args.listen_token_file.is_some() {
            return Err(UsageError("`--listen-token-file` needs `--listen ADDR`".to_owned()));
        }
        return Ok(None);
    };
    let token_file = args.listen_token_file.clone().or_else(|| file.listen_token_file.clone());
    let token = token_file.map(|path| read_secret(&path)).transpose().map_err(|e| bad("listen-token-file", e))?;
    let addr = parse_listen(&text).map_err(|e| bad("listen", e))?;
    if let ListenAddr::Tcp(sock) = &addr {
        if !sock.ip().is_loopback() && token.is_none() {
            return Err(bad(
                "listen",
                format!(
                    "`{text}` is reachable from other hosts, and anyone reaching it could start captures; \
                     listen on loopback (`127.0.0.1:{}`) or a unix socket, or require a token with \
                     `--listen-token-file FILE`",
                    sock.port()
                ),
            ));
        }
    }
    Ok(Some(ListenConfig { addr, token }))
}

/// `HOST:PORT` (an IP address: no name lookup at start) or `unix:PATH`.
pub(crate) fn parse_listen(text: &str) -> Result<ListenAddr, String> {
    if let Some(path) = text.strip_prefix("unix:") {
        let path = PathBuf::from(path);
        if !path.is_absolute() {
            return Err(format!("`{text}`: the socket path must be absolute, e.g. `unix:/run/stackwatch/http.sock`"));
        }
        return Ok(ListenAddr::Unix(path));
    }
    let text = text.strip_prefix("localhost:").map_or_else(|| text.to_owned(), |port| format!("127.0.0.1:{port}"));
    text.parse::<SocketAddr>().map(ListenAddr::Tcp).map_err(|_| {
        format!("`{text}` is not an address: write `127.0.0.1:9464`, `[::1]:9464` or `unix:/run/stackwatch/http.sock`")
    })
}

/// A secret from a file: trimmed, not empty.
fn read_secret(path: &Path) -> Result<String, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read `{}`: {e}", path.display()))?;
    let secret = text.trim();
    if secret.is_empty() {
        return Err(format!("`{}` is empty", path.display()));
    }
    Ok(secret.to_owned())
}

/// `--push` and its settings over the file's; `None` without a URL.
/// `default_spool` is where profiles wait while the server is down.
pub(crate) fn push_config(
    args: &PushArgs,
    file: &WatchFile,
    default_spool: &Path,
    bad: &dyn Fn(&str, String) -> UsageError,
) -> Result<Option<PushConfig>, UsageError> {
    let Some(url) = args.push.clone().or_else(|| file.push.clone()) else {
        let stray = args.push_token_file.is_some() || args.push_user.is_some() || args.push_tenant.is_some();
        if stray {
            return Err(UsageError("the `--push-…` settings need `--push URL`".to_owned()));
        }
        return Ok(None);
    };
    push::check_url(&url).map_err(|e| bad("push", e))?;
    let token_file = args.push_token_file.clone().or_else(|| file.push_token_file.clone());
    let user = args.push_user.clone().or_else(|| file.push_user.clone());
    let password_file = args.push_password_file.clone().or_else(|| file.push_password_file.clone());
    let auth = match (token_file, user, password_file) {
        (Some(_), Some(_), _) => {
            return Err(bad("push-token-file", "give a bearer token or a basic-auth user, not both".to_owned()))
        }
        (Some(path), None, _) => PushAuth::Bearer(read_secret(&path).map_err(|e| bad("push-token-file", e))?),
        (None, Some(user), Some(path)) => {
            PushAuth::Basic { user, password: read_secret(&path).map_err(|e| bad("push-password-file", e))? }
        }
        (None, Some(_), None) => return Err(bad("push-user", "basic auth needs `push-password-file` too".to_owned())),
        (None, None, Some(_)) => return Err(bad("push-password-file", "basic auth needs `push-user` too".to_owned())),
        (None, None, None) => PushAuth::None,
    };
    let timeout = match &file.push_timeout {
        Some(text) => {
            let d = crate::units::parse_duration(text).map_err(|e| bad("push-timeout", e))?;
            if d < Duration::from_millis(100) || d > Duration::from_secs(600) {
                return Err(bad("push-timeout", "must be between 100ms and 10m".to_owned()));
            }
            d
        }
        None => push::DEFAULT_TIMEOUT,
    };
    let spool_max_bytes = match &file.push_spool_size {
        Some(OneOrSize::Bytes(n)) => *n,
        Some(OneOrSize::Text(text)) => crate::units::parse_size(text).map_err(|e| bad("push-spool-size", e))?,
        None => push::DEFAULT_SPOOL_BYTES,
    };
    if spool_max_bytes < 1 << 20 {
        return Err(bad("push-spool-size", "must be at least 1MiB".to_owned()));
    }
    let labels: BTreeMap<String, String> = file.push_labels.clone().unwrap_or_default();
    for name in labels.keys() {
        let valid = name.chars().next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
            && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !valid || matches!(name.as_str(), "host" | "kind" | "trigger" | "service_name") {
            return Err(bad("push-labels", format!("`{name}` cannot be a label name here")));
        }
    }
    Ok(Some(PushConfig {
        url,
        auth,
        tenant: args.push_tenant.clone().or_else(|| file.push_tenant.clone()),
        timeout,
        labels,
        spool_dir: file.push_spool_dir.clone().unwrap_or_else(|| default_spool.to_owned()),
        spool_max_bytes,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bad(key: &str, reason: String) -> UsageError {
        UsageError(format!("invalid `{key}`: {reason}"))
    }

    #[test]
    fn listen_addresses() {
        assert_eq!(parse_listen("127.0.0.1:9464"), Ok(ListenAddr::Tcp("127.0.0.1:9464".parse().unwrap())));
        assert_eq!(parse_listen("localhost:9464"), Ok(ListenAddr::Tcp("127.0.0.1:9464".parse().unwrap())));
        assert_eq!(parse_listen("unix:/run/sw.sock"), Ok(ListenAddr::Unix("/run/sw.sock".into())));
        assert!(parse_listen("unix:rel.sock").is_err());
        assert!(parse_listen("9464").is_err());
        let args = ListenArgs { listen: Some("0.0.0.0:9464".into()), listen_token_file: None };
        let err = listen_config(&args, &WatchFile::default(), &bad).unwrap_err();
        assert!(err.0.contains("--listen-token-file"), "{err}");
        let dir = tempfile::tempdir().unwrap();
        let token = dir.path().join("token");
        std::fs::write(&token, "s3cret\n").unwrap();
        let args = ListenArgs { listen: Some("0.0.0.0:9464".into()), listen_token_file: Some(token) };
        let c = listen_config(&args, &WatchFile::default(), &bad).unwrap().unwrap();
        assert_eq!(c.token.as_deref(), Some("s3cret"));
        assert!(!format!("{c:?}").contains("s3cret"));
        let file = WatchFile { listen: Some("[::1]:1".into()), ..WatchFile::default() };
        assert!(listen_config(&ListenArgs::default(), &file, &bad).unwrap().is_some());
        assert_eq!(listen_config(&ListenArgs::default(), &WatchFile::default(), &bad).unwrap(), None);
    }

    #[test]
    fn push_settings() {
        let dir = tempfile::tempdir().unwrap();
        let pw = dir.path().join("pw");
        std::fs::write(&pw, "hunter2").unwrap();
        let args = PushArgs {
            push: Some("https://profiles.example.net".into()),
            push_user: Some("123".into()),
            push_password_file: Some(pw),
            push_tenant: Some("team-a".into()),
            ..PushArgs::default()
        };
        let file =
            WatchFile::parse("push-labels = { env = \"prod\" }\npush-spool-size = \"64MiB\"\npush-timeout = \"5s\"\n")
                .unwrap();
        let c = push_config(&args, &file, Path::new("/var/lib/stackwatch/.push-spool"), &bad).unwrap().unwrap();
        assert_eq!(c.auth, PushAuth::Basic { user: "123".into(), password: "hunter2".into() });
        assert_eq!(c.tenant.as_deref(), Some("team-a"));
        assert_eq!(c.spool_max_bytes, 64 << 20);
        assert_eq!(c.timeout, Duration::from_secs(5));
        assert_eq!(c.labels["env"], "prod");
        assert_eq!(c.spool_dir, Path::new("/var/lib/stackwatch/.push-spool"));

        let args = PushArgs { push: Some("pyroscope:4040".into()), ..PushArgs::default() };
        assert!(push_config(&args, &WatchFile::default(), Path::new("/s"), &bad).is_err());
        let args = PushArgs { push_tenant: Some("x".into()), ..PushArgs::default() };
        assert!(push_config(&args, &WatchFile::default(), Path::new("/s"), &bad).is_err());
        let file = WatchFile::parse("push = \"http://p:4040\"\npush-labels = { kind = \"x\" }\n").unwrap();
        assert!(push_config(&PushArgs::default(), &file, Path::new("/s"), &bad).is_err());
    }
}
