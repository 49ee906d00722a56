//! The `sluice` command: `serve` (the default), `migrate` and `admin`.

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use tokio::net::TcpListener;
use tracing_subscriber::EnvFilter;

use sluice::config::{CommonArgs, LogFormat, ServeArgs};
use sluice::secrets;
use sluice::service::keys;
use sluice::store::Store;

// The request path allocates many small JSON values; mimalloc serves them markedly cheaper than
// the system allocator.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(name = "sluice", version, about = "A self-hosted server for the Mixpeek ingestion API")]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the API (the default).
    Serve(Box<ServeArgs>),
    /// Bring the metadata store's schema up to date and exit.
    Migrate(CommonArgs),
    /// Manage organizations and API keys.
    Admin {
        #[command(flatten)]
        common: CommonArgs,
        #[command(subcommand)]
        command: AdminCommand,
    },
}

#[derive(Subcommand)]
enum AdminCommand {
    /// Organizations.
    #[command(subcommand)]
    Org(OrgCommand),
    /// API keys.
    #[command(subcommand)]
    Key(KeyCommand),
    /// Seal the stored secrets (connection credentials, webhook signing secrets) under a new
    /// master key. Stop every sluice process first, and start them again with the new key.
    /// Running it again with the same keys finishes a rotation that was cut short. Signed URLs
    /// handed out before the rotation stop working.
    RotateMasterKey {
        /// The new key: 32 bytes as base64 (for example `openssl rand -base64 32`).
        #[arg(long, env = "SLUICE_NEW_MASTER_KEY", hide_env_values = true)]
        new_key: String,
        /// The current key; default `SLUICE_MASTER_KEY`, else the key file in the data
        /// directory, which is then replaced by the new key.
        #[arg(long, env = "SLUICE_MASTER_KEY", hide_env_values = true)]
        current_key: Option<String>,
    },
}

#[derive(Subcommand)]
enum OrgCommand {
    /// Create an organization and print its id.
    Create { name: String },
    /// List organizations.
    List,
}

#[derive(Subcommand)]
enum KeyCommand {
    /// Create an API key and print it; it is shown only this once.
    Create {
        #[arg(long)]
        org: String,
        #[arg(long, default_value = "api")]
        name: String,
    },
    /// List API keys (never their secrets).
    List {
        #[arg(long)]
        org: Option<String>,
    },
    /// Revoke an API key by its id.
    Revoke { key_id: String },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let command = cli.command.unwrap_or_else(|| Command::Serve(Box::new(default_serve_args())));
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(e) => return fail(&format!("cannot start the async runtime: {e}")),
    };
    match runtime.block_on(dispatch(command)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => fail(&message),
    }
}

fn default_serve_args() -> ServeArgs {
    match Cli::try_parse_from(["sluice", "serve"]) {
        Ok(Cli { command: Some(Command::Serve(args)) }) => *args,
        _ => unreachable_serve_args(),
    }
}

fn unreachable_serve_args() -> ServeArgs {
    // `sluice serve` with no flags always parses; its settings come from the environment.
    eprintln!("sluice: could not read the default settings");
    std::process::exit(2)
}

fn fail(message: &str) -> ExitCode {
    eprintln!("sluice: {message}");
    ExitCode::FAILURE
}

async fn dispatch(command: Command) -> Result<(), String> {
    match command {
        Command::Serve(args) => serve(*args).await,
        Command::Migrate(common) => {
            init_logging(&common)?;
            let store = open_store(&common).await?;
            store.close().await;
            tracing::info!("migrations applied");
            Ok(())
        }
        Command::Admin { common, command } => {
            init_logging(&common)?;
            let store = open_store(&common).await?;
            let outcome = admin(&store, &common, command).await;
            store.close().await;
            outcome
        }
    }
}

async fn serve(args: ServeArgs) -> Result<(), String> {
    let config = args.config().map_err(|e| e.to_string())?;
    init_logging(&args.common)?;
    let shutdown = shutdown_signal();
    let listener = TcpListener::bind(config.listen)
        .await
        .map_err(|e| format!("SLUICE_LISTEN: cannot listen on {}: {e}", config.listen))?;
    sluice::run(config, listener, shutdown).await.map_err(|e| e.to_string())
}

async fn admin(store: &Store, common: &CommonArgs, command: AdminCommand) -> Result<(), String> {
    match command {
        AdminCommand::RotateMasterKey { new_key, current_key } => {
            rotate_master_key(store, common, &new_key, current_key.as_deref()).await?;
        }
        AdminCommand::Org(OrgCommand::Create { name }) => {
            let org = keys::create_organization(store, &name).await.map_err(|e| e.to_string())?;
            println!("{}", org.id);
        }
        AdminCommand::Org(OrgCommand::List) => {
            for org in store.list_organizations().await.map_err(|e| e.to_string())? {
                println!("{}\t{}\t{}", org.id, org.name, org.created_at);
            }
        }
        AdminCommand::Key(KeyCommand::Create { org, name }) => {
            let key =
                keys::create_key(store, &org, &name, None).await.map_err(|e| e.to_string())?;
            println!("{}", key.secret);
        }
        AdminCommand::Key(KeyCommand::List { org }) => {
            for key in store.list_api_keys(org.as_deref()).await.map_err(|e| e.to_string())? {
                let state = if key.revoked_at.is_some() { "revoked" } else { "active" };
                println!("{}\t{}\t{}\t{}…\t{state}", key.id, key.org_id, key.name, key.key_prefix);
            }
        }
        AdminCommand::Key(KeyCommand::Revoke { key_id }) => {
            let revoked = store.revoke_api_key(&key_id, &sluice::model::now()).await;
            if !revoked.map_err(|e| e.to_string())? {
                return Err(format!("no active key {key_id}"));
            }
            println!("revoked {key_id}");
        }
    }
    Ok(())
}

async fn rotate_master_key(
    store: &Store,
    common: &CommonArgs,
    new_key: &str,
    current_key: Option<&str>,
) -> Result<(), String> {
    let new = secrets::decode(new_key)
        .ok_or("--new-key: expected 32 bytes encoded as base64 (openssl rand -base64 32)")?;
    let old = secrets::master_key(&common.data_dir, current_key).map_err(|e| e.to_string())?;
    let connections = sluice::service::connections::reseal_all(store, &old, &new).await?;
    let webhooks = sluice::service::webhooks::reseal_all(store, &old, &new).await?;
    println!("re-sealed the credentials of {connections} connections");
    println!("re-sealed the signing secrets of {webhooks} webhooks");
    if current_key.is_none() {
        secrets::replace_key_file(&common.data_dir, &new)
            .map_err(|e| format!("could not write the new key file: {e}"))?;
        println!("the key file in {} now holds the new key", common.data_dir.display());
    } else {
        println!("start every sluice process with SLUICE_MASTER_KEY set to the new key");
    }
    Ok(())
}

async fn open_store(common: &CommonArgs) -> Result<Store, String> {
    let config = common.store_config(4).map_err(|e| e.to_string())?;
    Store::open(&config).await.map_err(|e| format!("DATABASE_URL: {e}"))
}

fn init_logging(common: &CommonArgs) -> Result<(), String> {
    let filter = EnvFilter::try_new(&common.log).map_err(|e| format!("SLUICE_LOG: {e}"))?;
    let format = common.log_format().map_err(|e| e.to_string())?;
    let colors = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(colors);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
    Ok(())
}

/// A future that completes on Ctrl-C or SIGTERM. The SIGTERM handler is installed before this
/// returns, so a signal that arrives while the server is still starting is not lost.
fn shutdown_signal() -> impl std::future::Future<Output = ()> + Send + 'static {
    #[cfg(unix)]
    let mut terminate =
        tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
    async move {
        let ctrl_c = async {
            if tokio::signal::ctrl_c().await.is_err() {
                std::future::pending::<()>().await;
            }
        };
        #[cfg(unix)]
        let terminate = async {
            match terminate.as_mut() {
                Some(signal) => {
                    signal.recv().await;
                }
                None => std::future::pending::<()>().await,
            }
        };
        #[cfg(not(unix))]
        let terminate = std::future::pending::<()>();
        tokio::select! {
            () = ctrl_c => {}
            () = terminate => {}
        }
    }
}
