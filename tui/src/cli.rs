//! `webb`: the command line. Flags and outputs follow `hubble` so that its users feel at home.

use std::io::{self, BufReader, IsTerminal, Write};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::builder::TypedValueParser as _;
use clap::{ArgMatches, Args, CommandFactory, FromArgMatches, Parser, Subcommand, ValueEnum};
use flow_filter::FlowFilters;
use webb_proto::health::pb::{
    HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient,
};
use webb_proto::observer::{
    GetFlowsRequest, GetNamespacesRequest, GetNodesRequest, ServerStatusRequest,
    observer_client::ObserverClient,
};
use webb_proto::webb_v1::FlowsRequestOptions;

use crate::client::{self, DEFAULT_SERVER};
use crate::flags::{FilterArgs, filter_lists_from_matches};
use crate::observe::{Selectors, build_request, parse_raw_filters, raw_filters_yaml, read_local};
use crate::printer::{
    Format, PrintOptions, Printer, write_namespaces, write_nodes, write_policy_status,
    write_server_status,
};
use crate::time::TimeFormat;

const OBSERVE_EXAMPLES: &str = "\
Examples:
  Last 20 flows from the relay:
    webb observe
  Follow HTTP 5xx answers from pods of namespace demo:
    webb observe -f --from-namespace demo --http-status 5+
  Everything but drops, as JSON lines:
    webb observe --last 1000 --not --verdict DROPPED -o json
  Only some fields of each flow, as the server sends them:
    webb observe -o json --field-mask time,verdict,source.pod_name,destination.pod_name
  The filters a command line means, without asking a server:
    webb observe --print-raw-filters --pod demo/web --not --protocol udp
  Offline, from saved JSON lines (or - for stdin):
    webb observe --input-file flows.json --type l7 --http-method get";

const TUI_EXAMPLES: &str = "\
Examples:
  Live view of the relay, errors of namespace demo only:
    webb tui --filter '--from-namespace demo --http-status 5+'
  Open on the last hour of history (relay with a flow store), then follow live flows:
    webb tui --since 1h
  One window of history, not followed:
    webb tui --since 2026-12-07T09:00:00Z --until 2026-12-07T09:30:00Z
  Browse saved flows:
    webb tui --input-file flows.json
Keys: ? shows them all; / edits the filter; space pauses; Enter shows a flow; 1-4 switch views.";

const STATUS_EXAMPLES: &str = "\
Examples:
  webb status --server relay:4245
  webb status --server unix:///var/run/webb/node-1.sock -o dict";

/// Network flow observability, Hubble-compatible.
#[derive(Debug, Parser)]
#[command(name = "webb", version, about, propagate_version = true)]
pub struct Cli {
    /// Observer server: host:port of an agent (:4244) or relay (:4245), tls://host:port for TLS, or unix:///path of an agent socket
    #[arg(long, global = true, env = "WEBB_SERVER", default_value = DEFAULT_SERVER)]
    pub server: String,
    /// Connection timeout (e.g. 5s, 500ms)
    #[arg(long, global = true, default_value = "5s", value_parser = humantime::parse_duration)]
    pub timeout: Duration,
    /// Log debug messages and informational node events
    #[arg(short = 'D', long, global = true)]
    pub debug: bool,
    #[command(flatten)]
    pub tls: webb_security::ClientTlsArgs,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Observe flows of an agent or relay (or from a file)
    #[command(after_help = OBSERVE_EXAMPLES)]
    Observe(Box<ObserveArgs>),
    /// Health check and server status
    #[command(after_help = STATUS_EXAMPLES)]
    Status(StatusArgs),
    /// List nodes or namespaces
    #[command(subcommand)]
    List(ListCommand),
    /// Read-only SQL over the flow history of a relay (its HTTP API, :9965)
    #[command(after_help = SQL_EXAMPLES)]
    Sql(SqlArgs),
    /// Live terminal flow viewer (flows, service map, drops, HTTP routes)
    #[command(after_help = TUI_EXAMPLES)]
    Tui(TuiArgs),
    /// Create a CA and certificates for nodes, the relay and clients (TLS and mTLS)
    #[command(subcommand, after_help = crate::certs::EXAMPLES)]
    Certs(crate::certs::CertsCommand),
    /// Print a shell completion script (e.g. webb completion bash > /etc/bash_completion.d/webb)
    Completion {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Default)]
pub enum ColorWhen {
    #[default]
    Auto,
    Always,
    Never,
}

#[derive(Debug, Args)]
pub struct ObserveArgs {
    /// Last N flows from the buffer (default 20 when nothing else selects)
    #[arg(
        long,
        value_name = "N",
        default_value_t = 0,
        hide_default_value = true,
        help_heading = "Selectors"
    )]
    pub last: u64,
    /// First N flows from the buffer
    #[arg(
        long,
        value_name = "N",
        default_value_t = 0,
        hide_default_value = true,
        help_heading = "Selectors"
    )]
    pub first: u64,
    /// All flows in the buffer
    #[arg(long, help_heading = "Selectors")]
    pub all: bool,
    /// Follow new flows
    #[arg(short = 'f', long, help_heading = "Selectors")]
    pub follow: bool,
    /// Flows since a time: relative (30s, 5m, 1h) or absolute (RFC 3339, 2026-11-27, ...)
    #[arg(long, value_name = "TIME", help_heading = "Selectors")]
    pub since: Option<String>,
    /// Flows until a time (ignored with --follow)
    #[arg(long, value_name = "TIME", help_heading = "Selectors")]
    pub until: Option<String>,

    #[command(flatten)]
    pub filters: FilterArgs,

    /// Allowlist FlowFilter in protojson (repeatable)
    #[arg(long, value_name = "JSON", help_heading = "Raw filters")]
    pub allowlist: Vec<String>,
    /// Denylist FlowFilter in protojson (repeatable)
    #[arg(long, value_name = "JSON", help_heading = "Raw filters")]
    pub denylist: Vec<String>,

    /// Output format: compact, dict, table, json (= jsonpb)
    #[arg(
        short = 'o',
        long,
        default_value = "compact",
        help_heading = "Formatting"
    )]
    pub output: String,
    /// Colour: auto (only on a terminal), always, never
    #[arg(long, value_enum, default_value_t = ColorWhen::Auto, help_heading = "Formatting")]
    pub color: ColorWhen,
    /// Print the node name of each flow
    #[arg(long, help_heading = "Formatting")]
    pub print_node_name: bool,
    /// Time format: StampMilli, YearMonthDay, YearMonthDayHour, YearMonthDayHourMinute, RFC3339, RFC3339Milli, RFC3339Micro, RFC3339Nano, RFC1123Z
    #[arg(long, default_value = "StampMilli", help_heading = "Formatting")]
    pub time_format: String,
    /// Print IPs instead of pod, service or DNS names
    #[arg(long, help_heading = "Formatting")]
    pub numeric: bool,
    /// Translate IPs to pod, service or DNS names
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set, value_name = "BOOL", help_heading = "Formatting")]
    pub ip_translation: bool,
    /// Ask for Webb's extras (kernel drop reason, default-deny attribution, loss) and keep them in JSON
    #[arg(long, help_heading = "Formatting")]
    pub extras: bool,

    /// Only these fields of each flow from the server: comma-separated proto paths of
    /// flow.Flow (e.g. time,verdict,source.pod_name,l4); needs -o json
    #[arg(
        long,
        value_name = "PATHS",
        value_delimiter = ',',
        alias = "experimental-field-mask",
        help_heading = "Formatting"
    )]
    pub field_mask: Vec<String>,

    /// Print the allow/deny filters and exit without asking a server
    #[arg(long)]
    pub print_raw_filters: bool,
    /// Read JSON lines (hubble observe -o json) from FILE, or - for stdin, instead of a server
    #[arg(long, value_name = "FILE")]
    pub input_file: Option<String>,
    /// Do not print errors and warnings about single records
    #[arg(short = 's', long)]
    pub silent_errors: bool,
}

#[derive(Debug, Args)]
pub struct StatusArgs {
    /// Output format: compact, dict, table, json
    #[arg(short = 'o', long, default_value = "compact")]
    pub output: String,
}

#[derive(Debug, Subcommand)]
pub enum ListCommand {
    /// Nodes known to the relay
    #[command(alias = "node")]
    Nodes(ListArgs),
    /// Namespaces with recent flows
    Namespaces(ListArgs),
}

#[derive(Debug, Args)]
pub struct ListArgs {
    /// Output format: table, wide, json
    #[arg(short = 'o', long, default_value = "table", value_parser = ["table", "wide", "json"])]
    pub output: String,
}

#[derive(Debug, Args)]
pub struct TuiArgs {
    /// Open on history since TIME (relative like 1h, or RFC 3339, as webb observe), then follow
    /// live flows; a relay with a flow store has older history than its ring
    #[arg(long, value_name = "TIME", conflicts_with = "input_file")]
    pub since: Option<String>,
    /// Show history until TIME only (relative or RFC 3339), without following live flows
    #[arg(long, value_name = "TIME", conflicts_with = "input_file")]
    pub until: Option<String>,
    /// Flows of history to ask for at start [default: 1000 without --since, all with it]
    #[arg(long, value_name = "N", conflicts_with = "input_file")]
    pub last: Option<u64>,
    /// Flows kept in the viewer (older ones are evicted and counted)
    #[arg(long, value_name = "N", default_value_t = crate::viewer::state::DEFAULT_CAPACITY,
          value_parser = clap::value_parser!(u64).range(1..=1_000_000).map(|n| n as usize))]
    pub buffer: usize,
    /// Frames per second
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..=60))]
    pub fps: u32,
    /// Initial filter in `webb observe` flag syntax, e.g. "--from-pod demo/ --http-status 5+"
    #[arg(long, value_name = "FLAGS", default_value = "")]
    pub filter: String,
    /// Read JSON lines (hubble observe -o json) from FILE instead of a server
    #[arg(long, value_name = "FILE")]
    pub input_file: Option<String>,
}

#[derive(Debug, Args)]
pub struct SqlArgs {
    /// A read-only query over table `flows` (SCHEMA.md of flow-store); `-` or none reads it
    /// from standard input
    pub query: Option<String>,
    /// The relay's HTTP port (its JSON API): host:port or http://host:port; https://host:port
    /// or tls://host:port when it serves TLS (with the TLS flags below, as for observe)
    #[arg(long, env = "WEBB_API", default_value = "localhost:9965")]
    pub api: String,
    /// Bearer token of the relay's API (its --api-token)
    #[arg(long, env = "WEBB_API_TOKEN", hide_env_values = true)]
    pub api_token: Option<String>,
    /// Output: table, or json (the API's answer as it came)
    #[arg(short, long, default_value = "table", value_parser = ["table", "json"])]
    pub output: String,
}

const SQL_EXAMPLES: &str = "\
Examples:
  Flows per verdict in the last hour:
    webb sql \"SELECT verdict, count(*) AS n FROM flows WHERE time > now() - interval '1 hour' GROUP BY verdict\"
  A query from a file, against a relay elsewhere:
    webb sql --api http://relay:9965 - < query.sql
  A relay whose HTTP port serves mTLS (the TLS flags of webb observe):
    webb sql --api https://relay:9965 --tls-ca-cert-files ca.crt \\
      --tls-client-cert-file client-alice.crt --tls-client-key-file client-alice.key \\
      \"SELECT count(*) FROM flows\"";

/// Entry point of the `webb` binary.
pub fn main() -> ExitCode {
    let matches = Cli::command().get_matches();
    let cli = match Cli::from_arg_matches(&matches) {
        Ok(cli) => cli,
        Err(e) => e.exit(),
    };
    init_logging(cli.debug);
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("Error: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli, &matches)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) if is_broken_pipe(&e) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("Error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn init_logging(debug: bool) {
    let default = if debug { "debug" } else { "warn" };
    let filter = tracing_subscriber::EnvFilter::try_from_env("WEBB_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(io::stderr)
        .with_target(false)
        .try_init();
}

fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<io::Error>()
            .is_some_and(|io| io.kind() == io::ErrorKind::BrokenPipe)
    })
}

/// Runs a parsed command line. `matches` is needed to replay filter flags in order.
pub async fn run(cli: Cli, matches: &ArgMatches) -> anyhow::Result<()> {
    match &cli.command {
        Command::Observe(args) => {
            let sub = matches
                .subcommand_matches("observe")
                .context("observe arguments missing")?;
            observe(&cli, args, sub).await
        }
        Command::Status(args) => status(&cli, args).await,
        Command::List(ListCommand::Nodes(args)) => list_nodes(&cli, args).await,
        Command::List(ListCommand::Namespaces(args)) => list_namespaces(&cli, args).await,
        Command::Sql(args) => sql(&cli, args).await,
        Command::Tui(args) => tui(&cli, args).await,
        Command::Certs(command) => crate::certs::run(command),
        Command::Completion { shell } => {
            let mut cmd = Cli::command();
            clap_complete::generate(*shell, &mut cmd, "webb", &mut io::stdout());
            Ok(())
        }
    }
}

async fn sql(cli: &Cli, args: &SqlArgs) -> anyhow::Result<()> {
    let query = match args.query.as_deref() {
        Some(q) if q != "-" => q.to_string(),
        _ => {
            let mut q = String::new();
            io::Read::read_to_string(&mut io::stdin(), &mut q)
                .context("reading the query from standard input")?;
            q
        }
    };
    if query.trim().is_empty() {
        bail!("no query: give one as the argument or on standard input");
    }
    let (text, answer) = crate::sql::run_query(
        &args.api,
        &cli.tls,
        args.api_token.as_deref(),
        &query,
        cli.timeout,
    )
    .await?;
    let mut out = io::stdout().lock();
    if args.output == "json" {
        writeln!(out, "{}", text.trim_end())?;
    } else {
        write!(out, "{}", crate::sql::format_table(&answer))?;
    }
    if answer.truncated {
        eprintln!("(truncated: the relay stopped at its row limit)");
    }
    Ok(())
}

/// Whether to colour: `auto` colours only a terminal, and respects NO_COLOR and TERM=dumb.
pub fn use_color(when: ColorWhen, is_terminal: bool) -> bool {
    match when {
        ColorWhen::Always => true,
        ColorWhen::Never => false,
        ColorWhen::Auto => {
            is_terminal
                && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
                && std::env::var("TERM").map_or(true, |t| t != "dumb")
        }
    }
}

/// Everything `observe` decides before it talks to anyone: the request, the filters and
/// the printer options.
#[derive(Debug)]
pub struct ObservePlan {
    pub request: GetFlowsRequest,
    pub filters: FlowFilters,
    pub print: PrintOptions,
}

/// Builds the plan from arguments; errors are the user's (bad flag, value or combination).
pub fn plan_observe(
    args: &ObserveArgs,
    matches: &ArgMatches,
    is_terminal: bool,
) -> anyhow::Result<ObservePlan> {
    let mut lists = filter_lists_from_matches(matches)?;
    lists
        .allow
        .extend(parse_raw_filters("allowlist", &args.allowlist)?);
    lists
        .deny
        .extend(parse_raw_filters("denylist", &args.denylist)?);
    let filters = FlowFilters::compile(&lists.allow, &lists.deny)?;
    let format = Format::parse(&args.output).map_err(anyhow::Error::msg)?;
    if format == Format::Table && args.follow {
        bail!("table output format is not compatible with follow mode");
    }
    let selectors = Selectors {
        last: args.last,
        first: args.first,
        all: args.all,
        follow: args.follow,
        since: args.since.clone(),
        until: args.until.clone(),
        input_file: args.input_file.is_some(),
    };
    let mut request = build_request(&selectors, &lists, chrono::Utc::now())?;
    if !args.field_mask.is_empty() {
        // As Hubble: the human formats need fields a custom mask may leave out.
        if format != Format::Json {
            bail!(
                "{} output format is not compatible with --field-mask (use -o json)",
                args.output
            );
        }
        if args.input_file.is_some() {
            bail!("--field-mask is applied by the server; it cannot be used with --input-file");
        }
        if let Some(empty) = args.field_mask.iter().find(|p| p.trim().is_empty()) {
            bail!("--field-mask: empty path {empty:?} in the list");
        }
        request.field_mask = Some(webb_proto::FieldMask {
            paths: args
                .field_mask
                .iter()
                .map(|p| p.trim().to_string())
                .collect(),
        });
    }
    if args.extras {
        webb_proto::options::set(
            &mut request,
            &FlowsRequestOptions {
                include_extras: true,
                ..Default::default()
            },
        );
    }
    let print = PrintOptions {
        format,
        color: use_color(args.color, is_terminal),
        node_name: args.print_node_name,
        time_format: TimeFormat::from_name(&args.time_format),
        ip_translation: args.ip_translation && !args.numeric,
        debug: false,
        extras: args.extras,
    };
    Ok(ObservePlan {
        request,
        filters,
        print,
    })
}

/// The plan for `webb observe ARGS...` (without the `webb observe` words), as if stdout were
/// not a terminal. For tests and for the TUI, which takes the same flags.
pub fn plan_from_args<I, S>(args: I) -> anyhow::Result<ObservePlan>
where
    I: IntoIterator<Item = S>,
    S: Into<std::ffi::OsString> + Clone,
{
    let mut argv: Vec<std::ffi::OsString> = vec!["webb".into(), "observe".into()];
    argv.extend(args.into_iter().map(Into::into));
    let matches = Cli::command().try_get_matches_from(argv)?;
    let cli = Cli::from_arg_matches(&matches)?;
    let Command::Observe(args) = &cli.command else {
        bail!("not an observe command line");
    };
    let sub = matches
        .subcommand_matches("observe")
        .context("observe arguments missing")?;
    plan_observe(args, sub, false)
}

async fn observe(cli: &Cli, args: &ObserveArgs, matches: &ArgMatches) -> anyhow::Result<()> {
    let stdout = io::stdout();
    let mut plan = plan_observe(args, matches, stdout.is_terminal())?;
    plan.print.debug = cli.debug;
    if args.print_raw_filters {
        let yaml = raw_filters_yaml(&plan.request.whitelist, &plan.request.blacklist)?;
        stdout.lock().write_all(yaml.as_bytes())?;
        return Ok(());
    }
    let err: Box<dyn Write> = if args.silent_errors {
        Box::new(io::sink())
    } else {
        Box::new(io::stderr())
    };
    let mut printer = Printer::new(plan.print.clone(), io::BufWriter::new(stdout.lock()), err);
    match &args.input_file {
        Some(path) => {
            let reader: Box<dyn io::BufRead> = if path == "-" {
                Box::new(BufReader::new(io::stdin()))
            } else {
                let file = std::fs::File::open(path)
                    .with_context(|| format!("cannot open --input-file {path}"))?;
                Box::new(BufReader::new(file))
            };
            let stats = read_local(reader, &plan.request, &plan.filters, |res| {
                printer.write_response(res)
            })?;
            printer.finish()?;
            if stats.unreadable > 0 && !args.silent_errors {
                tracing::warn!(
                    "{} of {} lines were not GetFlowsResponse JSON and were skipped",
                    stats.unreadable,
                    stats.lines
                );
            }
            Ok(())
        }
        None => {
            let channel = client::connect(&cli.server, &cli.tls, cli.timeout).await?;
            let mut observer = ObserverClient::new(channel);
            tracing::debug!(request = ?plan.request, "sending GetFlows");
            let mut stream = observer
                .get_flows(plan.request.clone())
                .await
                .map_err(|s| anyhow::anyhow!(client::status_message(&s)))?
                .into_inner();
            let follow = plan.request.follow;
            let ctrl_c = tokio::signal::ctrl_c();
            tokio::pin!(ctrl_c);
            loop {
                tokio::select! {
                    msg = stream.message() => match msg {
                        Ok(Some(res)) => {
                            printer.write_response(&res)?;
                            if follow {
                                printer.flush()?;
                            }
                        }
                        Ok(None) => break,
                        Err(s) if s.code() == tonic::Code::Cancelled => break,
                        Err(s) => {
                            printer.finish()?;
                            bail!(client::status_message(&s));
                        }
                    },
                    _ = &mut ctrl_c => break,
                }
            }
            printer.finish()?;
            Ok(())
        }
    }
}

async fn tui(cli: &Cli, args: &TuiArgs) -> anyhow::Result<()> {
    use crate::viewer::{run, state::App};
    if !io::stdout().is_terminal() {
        bail!("webb tui needs a terminal; use webb observe for pipes and files");
    }
    let (source, label) = match &args.input_file {
        Some(path) => (run::Source::File(path.clone()), format!("file {path}")),
        None => {
            let history = run::History {
                since: args.since.clone(),
                until: args.until.clone(),
                last: args.last,
            };
            let request = run::viewer_request(&history, chrono::Utc::now())?;
            (
                run::Source::Server {
                    server: cli.server.clone(),
                    tls: Box::new(cli.tls.clone()),
                    timeout: cli.timeout,
                    request: Box::new(request),
                },
                cli.server.clone(),
            )
        }
    };
    let mut app = App::new(args.buffer, label);
    if !args.filter.trim().is_empty() {
        app.set_filter(&args.filter);
        if let Some(e) = app.filter_error.take() {
            bail!("--filter: {e}");
        }
    }
    run::run(app, source, args.fps).await
}

async fn status(cli: &Cli, args: &StatusArgs) -> anyhow::Result<()> {
    let format = Format::parse(&args.output).map_err(anyhow::Error::msg)?;
    let channel = client::connect(&cli.server, &cli.tls, cli.timeout).await?;
    let mut health = HealthClient::new(channel.clone());
    let reply = health
        .check(HealthCheckRequest {
            service: webb_proto::health::OBSERVER_HEALTH_SERVICE.to_string(),
        })
        .await
        .map_err(|s| anyhow::anyhow!("failed getting status: {}", client::status_message(&s)))?
        .into_inner();
    let serving = reply.status == ServingStatus::Serving as i32;
    let text = if serving {
        "Ok".to_string()
    } else {
        let name = ServingStatus::try_from(reply.status)
            .map(|s| s.as_str_name().to_string())
            .unwrap_or_else(|_| reply.status.to_string());
        format!("Unavailable: {name}")
    };
    let mut out = io::stdout().lock();
    if format == Format::Compact {
        writeln!(out, "Healthcheck (via {}): {text}", cli.server)?;
    }
    if !serving {
        bail!("not healthy");
    }
    let reply = ObserverClient::new(channel)
        .server_status(ServerStatusRequest::default())
        .await
        .map_err(|s| {
            anyhow::anyhow!(
                "failed to get server status: {}",
                client::status_message(&s)
            )
        })?;
    // Webb's servers add their policy state in a header Hubble's servers do not send.
    let extras = webb_proto::status::read(reply.metadata());
    write_server_status(&mut out, format, reply.get_ref())?;
    match extras {
        Some(Ok(extras)) => write_policy_status(&mut out, format, &extras)?,
        Some(Err(e)) => {
            tracing::warn!(error = %e, "the server's webb-status-bin header does not decode")
        }
        None => {}
    }
    Ok(())
}

async fn list_nodes(cli: &Cli, args: &ListArgs) -> anyhow::Result<()> {
    let channel = client::connect(&cli.server, &cli.tls, cli.timeout).await?;
    let nodes = ObserverClient::new(channel)
        .get_nodes(GetNodesRequest::default())
        .await
        .map_err(|s| {
            if s.code() == tonic::Code::Unimplemented {
                anyhow::anyhow!(
                    "{} does not list nodes (an agent answers for itself; ask the relay)",
                    cli.server
                )
            } else {
                anyhow::anyhow!(client::status_message(&s))
            }
        })?
        .into_inner();
    write_nodes(&mut io::stdout().lock(), &args.output, &nodes)?;
    Ok(())
}

async fn list_namespaces(cli: &Cli, args: &ListArgs) -> anyhow::Result<()> {
    let channel = client::connect(&cli.server, &cli.tls, cli.timeout).await?;
    let namespaces = ObserverClient::new(channel)
        .get_namespaces(GetNamespacesRequest::default())
        .await
        .map_err(|s| anyhow::anyhow!(client::status_message(&s)))?
        .into_inner();
    write_namespaces(&mut io::stdout().lock(), &args.output, &namespaces)?;
    Ok(())
}
