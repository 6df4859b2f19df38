//! The `herald` command line: `serve`, `token`, `publish`, `apikey`,
//! `store`, and the operator commands that talk to a running hub
//! (`connections`, `kick`, `revoke`, `audit`, `status`; see [`operator`]).

pub mod audit;
pub mod client;
pub mod format;
pub mod operator;

use crate::auth::jwt::{sign_hs256, Claims, HeraldClaims};
use crate::config::{Config, FlagOverrides, LogFormat};
use crate::hub::Hub;
use clap::{Args, Parser, Subcommand};
use std::path::PathBuf;
use std::sync::Arc;

/// Herald: an audience-scoped, revocation-aware Server-Sent Events hub.
#[derive(Debug, Parser)]
#[command(
    name = "herald",
    version,
    about,
    long_version = concat!(env!("CARGO_PKG_VERSION"), "\nDocumentation: README.md and docs/ in Herald's source (api.md, configuration.md, cli.md, console.md); a running hub names its endpoints at / and serves its console at /admin/"),
    after_help = "Documentation: README.md and docs/ in Herald's source (api.md for the HTTP API, configuration.md for every setting, cli.md for these commands, console.md for /admin/). A running hub names its endpoints at / ."
)]
pub struct Cli {
    /// What to do (default: serve).
    #[command(subcommand)]
    pub command: Option<Command>,
    /// Options shared by every command.
    #[command(flatten)]
    pub common: Common,
}

/// Options every command understands (they locate the configuration).
#[derive(Debug, Args, Clone, Default)]
pub struct Common {
    /// TOML configuration file.
    #[arg(long, global = true, env = "HERALD_CONFIG")]
    pub config: Option<PathBuf>,
    /// Address to listen on (default 127.0.0.1:8080).
    #[arg(long, global = true)]
    pub listen: Option<String>,
    /// Directory for generated secrets and data (default ./herald-data).
    #[arg(long, global = true)]
    pub data_dir: Option<PathBuf>,
    /// TLS certificate chain (PEM); enables HTTPS and HTTP/2.
    #[arg(long, global = true)]
    pub tls_cert: Option<PathBuf>,
    /// TLS private key (PEM).
    #[arg(long, global = true)]
    pub tls_key: Option<PathBuf>,
    /// Log format: text or json.
    #[arg(long, global = true)]
    pub log_format: Option<String>,
    /// History store: embedded (durable, default) or memory.
    #[arg(long, global = true)]
    pub store: Option<String>,
    /// Run as a cluster node over NATS JetStream (`nats://host:4222[,...]`).
    #[arg(long, global = true)]
    pub cluster: Option<String>,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the hub.
    Serve,
    /// Mint a user JWT with the configured HS256 secret.
    Token(TokenArgs),
    /// Publish one event to a running hub.
    Publish(PublishArgs),
    /// Generate a backend API key and the hash to put in the configuration.
    Apikey(ApikeyArgs),
    /// Inspect or maintain the embedded store (run while the hub is stopped).
    #[command(subcommand)]
    Store(StoreCommand),
    /// List a running hub's live streams.
    Connections(operator::ConnectionsArgs),
    /// Close one stream of a running hub (it receives `event: kicked`).
    Kick(operator::KickArgs),
    /// Revoke access on a running hub: matching streams close now and the
    /// credential stays refused.
    Revoke(operator::RevokeArgs),
    /// Print a running hub's newest audit records, or follow them live.
    Audit(operator::AuditArgs),
    /// Summarise a running hub: streams, rates, latency, totals, health.
    Status(operator::StatusArgs),
}

/// `herald store ...`.
#[derive(Debug, Subcommand)]
pub enum StoreCommand {
    /// Check the store file's integrity and decode every record.
    Verify,
    /// Rewrite the store file to give freed space back to the filesystem.
    Compact,
}

/// `herald token`.
#[derive(Debug, Args)]
pub struct TokenArgs {
    /// Account id.
    #[arg(long)]
    pub sub: String,
    /// Tenant.
    #[arg(long)]
    pub tenant: Option<String>,
    /// Session id.
    #[arg(long)]
    pub sid: Option<String>,
    /// Role (repeatable).
    #[arg(long = "role")]
    pub roles: Vec<String>,
    /// Group (repeatable).
    #[arg(long = "group")]
    pub groups: Vec<String>,
    /// Selector the token may subscribe to (repeatable).
    #[arg(long)]
    pub subscribe: Vec<String>,
    /// Selector the token may publish to (repeatable).
    #[arg(long)]
    pub publish: Vec<String>,
    /// Hub admin (tenant admin with --tenant).
    #[arg(long)]
    pub admin: bool,
    /// Lifetime in seconds.
    #[arg(long, default_value_t = 3600)]
    pub ttl: u64,
    /// Token id (for `token_revoke`); random when omitted.
    #[arg(long)]
    pub jti: Option<String>,
}

/// `herald publish`.
#[derive(Debug, Args)]
pub struct PublishArgs {
    /// Hub URL (http:// or https://).
    #[arg(long, env = "HERALD_URL", default_value = operator::DEFAULT_URL)]
    pub url: String,
    /// Topic (repeatable).
    #[arg(long = "topic", required = true)]
    pub topics: Vec<String>,
    /// Event data.
    #[arg(long)]
    pub data: String,
    /// Event type.
    #[arg(long = "type")]
    pub event_type: Option<String>,
    /// Audience: `public` or a JSON object.
    #[arg(long, default_value = "public")]
    pub audience: String,
    /// Make it the topic's retained snapshot.
    #[arg(long)]
    pub retain: bool,
    /// Credential (JWT or API key); default: a one-minute JWT minted with
    /// the configured secret.
    #[arg(long, env = "HERALD_TOKEN", hide_env_values = true)]
    pub token: Option<operator::Credential>,
}

/// `herald apikey`.
#[derive(Debug, Args)]
pub struct ApikeyArgs {
    /// Id for the key.
    #[arg(long, default_value = "backend")]
    pub id: String,
    /// Scope (repeatable): publish, tokens, revoke, admin.
    #[arg(long = "scope", default_values_t = ["publish".to_string(), "tokens".to_string()])]
    pub scopes: Vec<String>,
    /// Tenant to bind the key to.
    #[arg(long)]
    pub tenant: Option<String>,
}

impl Common {
    fn load(&self) -> Result<Config, String> {
        let flags = FlagOverrides {
            listen: self.listen.clone(),
            data_dir: self.data_dir.clone(),
            tls_cert: self.tls_cert.clone(),
            tls_key: self.tls_key.clone(),
            log_format: self.log_format.clone(),
            store: self.store.clone(),
            cluster: self.cluster.clone(),
        };
        Config::load(self.config.as_deref(), &flags).map_err(|e| e.to_string())
    }
}

/// Loads the hub configuration, reporting a failure on stderr as exit
/// code 2.
fn load(common: &Common) -> Result<Config, i32> {
    common.load().map_err(|e| {
        eprintln!("herald: {e}");
        2
    })
}

/// Exit codes: 0 fine, 1 runtime failure, 2 configuration or usage error.
pub async fn run(cli: Cli) -> i32 {
    // Only the commands that need the hub's configuration load it: the
    // client commands run from shells whose HERALD_* variables, or lack of
    // a configuration file, are no business of theirs.
    match cli.command.unwrap_or(Command::Serve) {
        Command::Serve => match load(&cli.common) {
            Ok(config) => {
                let me = invocation(&cli.common, &config);
                serve(config, &me).await
            }
            Err(code) => code,
        },
        Command::Token(args) => match load(&cli.common) {
            Ok(config) => token(&config, args),
            Err(code) => code,
        },
        Command::Store(cmd) => match load(&cli.common) {
            Ok(config) => store(&config, cmd),
            Err(code) => code,
        },
        Command::Publish(args) => publish(&cli.common, args).await,
        Command::Apikey(args) => apikey(args),
        Command::Connections(args) => operator::connections(args).await,
        Command::Kick(args) => operator::kick(args).await,
        Command::Revoke(args) => operator::revoke(args).await,
        Command::Audit(args) => audit::audit(args).await,
        Command::Status(args) => operator::status(args).await,
    }
}

fn store(config: &Config, cmd: StoreCommand) -> i32 {
    let path = config.data_dir.join(crate::hub::STORE_FILE);
    if !path.exists() {
        eprintln!("herald: no store at {}", path.display());
        return 2;
    }
    let result = match cmd {
        StoreCommand::Verify => crate::store::verify(&path),
        StoreCommand::Compact => crate::store::compact(&path),
    };
    match result {
        Ok(report) => {
            println!("{report}");
            0
        }
        Err(e) => {
            eprintln!("herald: {e}");
            1
        }
    }
}

fn apikey(args: ApikeyArgs) -> i32 {
    let (key, hash) = crate::auth::api_key::generate();
    println!("# the key (give it to the backend; it is not stored anywhere):");
    println!("{key}");
    println!("\n# add to herald.toml:");
    println!(
        "[[api_keys]]\nid = {:?}\nhash = {hash:?}\nscopes = {:?}",
        args.id, args.scopes
    );
    if let Some(t) = args.tenant {
        println!("tenant = {t:?}");
    }
    0
}

fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("HERALD_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // Colour codes only on a terminal: under systemd or a container the
    // log goes to a journal or a file, where they would be noise.
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Json => builder.json().try_init(),
        LogFormat::Text => builder.try_init(),
    };
}

/// How to run this very `herald` against this hub's configuration, as a
/// shell word list: the banner's commands must run as printed, from any
/// directory, whether the binary is on `PATH` or was started by `cargo run`.
fn invocation(common: &Common, config: &Config) -> String {
    let absolute = |p: &std::path::Path| std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf());
    let exe = std::env::current_exe().map_or_else(|_| PathBuf::from("herald"), |p| absolute(&p));
    let mut words = vec![shell_word(&exe.to_string_lossy())];
    if let Some(file) = &common.config {
        words.push(format!("--config {}", shell_word(&absolute(file).to_string_lossy())));
    }
    words.push(format!(
        "--data-dir {}",
        shell_word(&absolute(&config.data_dir).to_string_lossy())
    ));
    words.join(" ")
}

/// `s` as one POSIX shell word (quoted unless it is plainly safe).
fn shell_word(s: &str) -> String {
    let plain = !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"/._-+:@%=,".contains(&b));
    if plain {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', "'\\''"))
    }
}

async fn serve(config: Config, me: &str) -> i32 {
    init_logging(config.log_format);
    crate::http::ops::install_metrics();
    let tls = match (&config.tls_cert, &config.tls_key) {
        (Some(c), Some(k)) => match crate::server::tls_acceptor(c, k) {
            Ok(a) => Some(a),
            Err(e) => {
                eprintln!("herald: invalid configuration: {e}");
                return 2;
            }
        },
        _ => None,
    };
    let mut builder = Hub::builder(config.clone());
    let mut cluster_node = None;
    if let Some(urls) = &config.cluster {
        let cluster = crate::cluster::ClusterConfig {
            urls: urls.clone(),
            stream: config.cluster_stream.clone(),
            replicas: config.cluster_replicas.max(1),
            max_events: config.history_size,
            window: config.cluster_window.min(config.history_size),
            caps: config.cluster_caps,
            lease: std::time::Duration::from_secs(config.cluster_lease_secs),
            max_age: std::time::Duration::from_secs(config.retention_max_age_secs),
            control_max_age: std::time::Duration::from_secs(config.max_token_lifetime_secs + config.jwt_leeway_secs),
            retained_per_tenant: config.limits.retained_per_tenant,
        };
        match tokio::time::timeout(
            std::time::Duration::from_secs(60),
            crate::cluster::Cluster::join(cluster),
        )
        .await
        {
            Ok(Ok(c)) => {
                cluster_node = Some(c.clone());
                builder = builder.cluster(c);
            }
            Ok(Err(e)) => {
                eprintln!("herald: {e}");
                return 1;
            }
            Err(_) => {
                eprintln!("herald: cluster: could not reach NATS at {urls} within 60 s");
                return 1;
            }
        }
    }
    let hub = match builder.build() {
        Ok(h) => h,
        Err(e) => {
            eprintln!("herald: {e}");
            return match e {
                crate::hub::BuildError::Config(_) => 2,
                crate::hub::BuildError::Store(_) | crate::hub::BuildError::Thread(_) => 1,
            };
        }
    };
    if let Some(c) = cluster_node {
        // Revocations from other nodes (including every one kept from
        // before this node started) are applied to this hub.
        let target = Arc::downgrade(hub.inner());
        c.on_rule(Arc::new(move |rule| {
            if let Some(hub) = target.upgrade() {
                hub.apply_rule(rule, None);
            }
        }));
        let target = Arc::downgrade(hub.inner());
        c.on_audit(Arc::new(move |record| {
            if let Some(hub) = target.upgrade() {
                hub.audit.ingest(record);
            }
        }));
    }
    let listener = match crate::server::listen(config.listen) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("herald: cannot listen on {}: {e}", config.listen);
            return 1;
        }
    };
    // Before the line that says the hub is up, so a SIGTERM sent right
    // after it stops the hub gracefully.
    let stop = crate::server::shutdown_signal();
    let addr = listener.local_addr().map_or(config.listen, |a| a);
    let scheme = if tls.is_some() { "https" } else { "http" };
    tracing::info!(%addr, tls = tls.is_some(), "herald listening");
    // Machine-readable line for scripts and tests that bind port 0.
    println!("herald listening on {scheme}://{addr}");
    if let Some(file) = &hub.inner.generated_secret_file {
        println!(
            "\nNo JWT key configured: using the generated HS256 secret in {} (mode 0600).\n\
             Mint a token:\n  TOKEN=$({me} token --sub alice --subscribe 'demo' --publish 'demo')\n\
             Subscribe:\n  curl -N -H \"Authorization: Bearer $TOKEN\" '{scheme}://{addr}/v1/events?topic=demo'\n\
             Publish:\n  curl -H \"Authorization: Bearer $TOKEN\" -H 'content-type: application/json' \\\n    \
             -d '{{\"topics\":[\"demo\"],\"data\":\"hello\",\"audience\":\"public\"}}' {scheme}://{addr}/v1/publish\n",
            file.display()
        );
    }
    crate::server::serve(hub, listener, tls, stop).await;
    tracing::info!("herald stopped");
    0
}

fn secret_for_cli(config: &Config) -> Result<String, String> {
    crate::secrets::resolve(config)
        .map_err(|e| e.to_string())?
        .jwt_secret
        .ok_or_else(|| "no HS256 secret: this hub verifies public-key tokens only; mint them with your issuer".into())
}

fn token(config: &Config, a: TokenArgs) -> i32 {
    let secret = match secret_for_cli(config) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("herald: {e}");
            return 2;
        }
    };
    let now = crate::hub::now_ms() / 1000;
    let claims = Claims {
        sub: a.sub,
        tenant: a.tenant,
        sid: a.sid,
        roles: a.roles,
        groups: a.groups,
        exp: now + a.ttl,
        iat: Some(now),
        jti: Some(a.jti.unwrap_or_else(|| hex::encode(rand::random::<[u8; 12]>()))),
        iss: config.jwt_issuer.clone(),
        aud: config.jwt_audience.clone().map(serde_json::Value::String),
        herald: HeraldClaims {
            subscribe: a.subscribe,
            publish: a.publish,
            admin: a.admin,
        },
        ..Claims::default()
    };
    match sign_hs256(&claims, &secret) {
        Ok(t) => {
            println!("{t}");
            0
        }
        Err(e) => {
            eprintln!("herald: cannot sign: {e}");
            1
        }
    }
}

/// A one-minute JWT allowed to publish anywhere, signed with the
/// configured secret (for `publish` without `--token`).
fn default_publish_token(config: &Config) -> Result<String, i32> {
    let secret = secret_for_cli(config).map_err(|e| {
        eprintln!("herald: {e}");
        2
    })?;
    let now = crate::hub::now_ms() / 1000;
    let claims = Claims {
        sub: "herald-cli".into(),
        exp: now + 60,
        iat: Some(now),
        iss: config.jwt_issuer.clone(),
        aud: config.jwt_audience.clone().map(serde_json::Value::String),
        herald: HeraldClaims {
            publish: vec!["*".into()],
            ..HeraldClaims::default()
        },
        ..Claims::default()
    };
    sign_hs256(&claims, &secret).map_err(|e| {
        eprintln!("herald: cannot sign: {e}");
        1
    })
}

async fn publish(common: &Common, a: PublishArgs) -> i32 {
    // The configuration is only needed to mint the default credential.
    let token = match a.token {
        Some(t) => t.expose().to_string(),
        None => match load(common).and_then(|config| default_publish_token(&config)) {
            Ok(t) => t,
            Err(code) => return code,
        },
    };
    let audience: serde_json::Value = if a.audience == "public" {
        "public".into()
    } else {
        match serde_json::from_str(&a.audience) {
            Ok(v) => v,
            Err(e) => {
                eprintln!("herald: --audience must be `public` or a JSON object: {e}");
                return 2;
            }
        }
    };
    let mut event = serde_json::json!({"topics": a.topics, "data": a.data, "audience": audience, "retain": a.retain});
    if let Some(t) = a.event_type {
        event["type"] = t.into();
    }
    let sent = match client::Client::new(&a.url, &token) {
        Ok(c) => c.send(hyper::Method::POST, "/v1/publish", Some(&event)).await,
        Err(e) => Err(e),
    };
    match sent {
        Ok(reply) => {
            println!("{}", reply.body);
            if reply.status.is_success() {
                0
            } else {
                1
            }
        }
        Err(e) => {
            eprintln!("herald: {e}");
            e.exit_code()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn banner_commands_are_shell_words_with_absolute_paths() {
        assert_eq!(shell_word("/usr/bin/herald"), "/usr/bin/herald");
        assert_eq!(shell_word("/tmp/my dir/it's"), "'/tmp/my dir/it'\\''s'");
        assert_eq!(shell_word(""), "''");
        let common = Common {
            config: Some(PathBuf::from("conf/herald.toml")),
            ..Common::default()
        };
        let config = Config {
            data_dir: PathBuf::from("data"),
            ..Config::default()
        };
        let me = invocation(&common, &config);
        let cwd = std::env::current_dir().expect("cwd");
        assert!(
            me.contains(&format!("--config {}", cwd.join("conf/herald.toml").display())),
            "{me}"
        );
        assert!(
            me.ends_with(&format!("--data-dir {}", cwd.join("data").display())),
            "{me}"
        );
        assert!(me.starts_with('/'), "the binary by its absolute path: {me}");
    }
}
