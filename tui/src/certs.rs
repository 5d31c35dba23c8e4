//! `webb certs`: a CA and the certificates of a standalone setup (agents, the relay, users),
//! as PEM files in one directory. Names and lifetimes: see `webb_security::certs`.

use std::io::Write as _;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use clap::{Args, Subcommand};
use webb_security::certs::{self as certgen, Ca, LeafSpec, Validity};

pub const EXAMPLES: &str = "\
Examples:
  A CA, two agents, the relay and a user, in ./webb-certs:
    webb certs ca
    webb certs node node-1 --ip 198.18.0.1
    webb certs node node-2 --ip 198.18.0.2
    webb certs relay --dns relay.example.org
    webb certs client alice
  Then (mTLS everywhere; the relay checks every agent as node.webb.local):
    webb-agent --tls-cert-file webb-certs/node-node-1.crt --tls-key-file webb-certs/node-node-1.key \\
               --tls-client-ca-files webb-certs/ca.crt
    webb-relay --peers 198.18.0.1:4244 --peer-tls-ca-cert-files webb-certs/ca.crt \\
               --peer-tls-client-cert-file webb-certs/relay.crt --peer-tls-client-key-file webb-certs/relay.key \\
               --peer-tls-server-name node.webb.local \\
               --tls-cert-file webb-certs/relay.crt --tls-key-file webb-certs/relay.key --tls-client-ca-files webb-certs/ca.crt
    webb observe --server tls://relay.webb.local:4245 --tls-ca-cert-files webb-certs/ca.crt \\
               --tls-client-cert-file webb-certs/client-alice.crt --tls-client-key-file webb-certs/client-alice.key";

#[derive(Debug, Subcommand)]
pub enum CertsCommand {
    /// A new CA (ca.crt, ca.key)
    Ca {
        #[command(flatten)]
        out: Out,
        /// The CA's common name
        #[arg(long, default_value = "Webb CA")]
        name: String,
        /// Days the CA is valid
        #[arg(long, default_value_t = certgen::CA_DAYS)]
        days: u32,
    },
    /// An agent's certificate (node-NAME.crt, .key): NAME, NAME.node.webb.local, node.webb.local
    Node {
        /// The node's name (webb-agent --node-name)
        name: String,
        #[command(flatten)]
        out: Out,
        #[command(flatten)]
        names: Names,
        #[arg(long, default_value_t = certgen::NODE_DAYS)]
        days: u32,
    },
    /// The relay's certificate (relay.crt, .key), server and client: relay.webb.local, the name
    /// agents trust with payload
    Relay {
        #[command(flatten)]
        out: Out,
        #[command(flatten)]
        names: Names,
        #[arg(long, default_value_t = certgen::RELAY_DAYS)]
        days: u32,
    },
    /// A user's client certificate (client-NAME.crt, .key): NAME.client.webb.local
    Client {
        /// Who uses it
        name: String,
        #[command(flatten)]
        out: Out,
        #[arg(long, default_value_t = certgen::CLIENT_DAYS)]
        days: u32,
    },
}

#[derive(Debug, Args)]
pub struct Out {
    /// Directory of the CA and the certificates
    #[arg(long, default_value = "webb-certs")]
    dir: PathBuf,
    /// Replace existing files
    #[arg(long)]
    force: bool,
}

#[derive(Debug, Args)]
pub struct Names {
    /// More DNS names the certificate is valid for (repeatable)
    #[arg(long = "dns", value_name = "NAME")]
    dns: Vec<String>,
    /// IP addresses the certificate is valid for (repeatable)
    #[arg(long = "ip", value_name = "ADDRESS")]
    ips: Vec<IpAddr>,
}

pub fn run(command: &CertsCommand) -> anyhow::Result<()> {
    match command {
        CertsCommand::Ca { out, name, days } => {
            let ca = Ca::generate(name, Validity::days(*days))?;
            std::fs::create_dir_all(&out.dir)
                .with_context(|| format!("cannot create {}", out.dir.display()))?;
            write(out, "ca.crt", ca.cert_pem(), false)?;
            write(out, "ca.key", &ca.key_pem(), true)?;
            Ok(())
        }
        CertsCommand::Node {
            name,
            out,
            names,
            days,
        } => issue(
            out,
            &format!("node-{name}"),
            &LeafSpec::node(name, &names.dns, &names.ips, *days),
        ),
        CertsCommand::Relay { out, names, days } => issue(
            out,
            "relay",
            &LeafSpec::relay(&names.dns, &names.ips, *days),
        ),
        CertsCommand::Client { name, out, days } => issue(
            out,
            &format!("client-{name}"),
            &LeafSpec::client(name, *days),
        ),
    }
}

fn issue(out: &Out, stem: &str, spec: &LeafSpec) -> anyhow::Result<()> {
    let read = |file: &str| {
        let path = out.dir.join(file);
        std::fs::read_to_string(&path).with_context(|| {
            format!(
                "cannot read {} (create the CA first: webb certs ca --dir {})",
                path.display(),
                out.dir.display()
            )
        })
    };
    let ca = Ca::from_pem(&read("ca.crt")?, &read("ca.key")?)?;
    let pem = ca.issue(spec)?;
    write(out, &format!("{stem}.crt"), &pem.cert, false)?;
    write(out, &format!("{stem}.key"), &pem.key, true)?;
    Ok(())
}

/// Writes `text` to `out.dir/file`; keys are readable by their owner only.
fn write(out: &Out, file: &str, text: &str, secret: bool) -> anyhow::Result<()> {
    let path: &Path = &out.dir.join(file);
    let mut options = std::fs::OpenOptions::new();
    options.write(true);
    if out.force {
        options.create(true).truncate(true);
    } else {
        options.create_new(true);
    }
    if secret {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.mode(0o600);
    }
    let mut f = match options.open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            bail!("{} exists; pass --force to replace it", path.display())
        }
        Err(e) => return Err(e).with_context(|| format!("cannot write {}", path.display())),
    };
    f.write_all(text.as_bytes())
        .with_context(|| format!("cannot write {}", path.display()))?;
    eprintln!("wrote {}", path.display());
    Ok(())
}
