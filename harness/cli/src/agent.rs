//! `harness agent`: the probe agent that runs inside each pod — in a network namespace of the
//! netns dataplane (`ip netns exec … harness agent serve …`) or as a container in a real
//! cluster. A thin wrapper over `harness_agent::command`.

use std::net::Ipv4Addr;

use clap::{Args, Subcommand};
use harness_agent::command::{self, BatchSource, ServeCommand, Status};
use harness_agent::{Identity, ServeOptions, ServedPort};

use crate::exit::Exit;

#[derive(Args, Debug)]
pub struct AgentArgs {
    #[command(subcommand)]
    pub command: AgentCommand,
}

#[derive(Subcommand, Debug)]
pub enum AgentCommand {
    /// Serve the pod's declared container ports until SIGTERM (exit 0) or Ctrl-C (exit 130),
    /// answering every connection or datagram with a line naming the backend. Prints one JSON
    /// line on stdout once every port is bound; SCTP ports are skipped, saying so, when the
    /// kernel has no SCTP.
    #[command(
        after_help = "Example:\n  harness agent serve --ports TCP/80,UDP/80,SCTP/80,TCP/81 --identity x/a\n  ip netns exec pod-x-a harness agent serve --ports HTTP/8080 --identity x/a\n  nc 10.32.0.5 80    # → harness-agent x/a TCP/80 from 10.32.0.4:40112"
    )]
    Serve(ServeArgs),
    /// Run a batch of TCP/UDP/SCTP/ICMP probes concurrently, each with its own timeout, and
    /// print the results (connected/refused/timeout/other, backend, detail) as a JSON array in
    /// request order. Exit 0 when the batch ran, 2 when it is malformed.
    #[command(
        after_help = "Example:\n  echo '[{\"to\": \"10.32.0.5\", \"protocol\": \"TCP\", \"port\": 80, \"timeoutMs\": 1000}]' \\\n    | kubectl exec -i -n x a -- harness agent probe --batch -\n  harness agent probe --batch probes.json"
    )]
    Probe(ProbeArgs),
}

#[derive(Args, Debug)]
pub struct ServeArgs {
    /// Ports to serve: PROTOCOL/PORT separated by commas (TCP, UDP, SCTP, or HTTP for TCP
    /// answering HTTP/1.1); repeatable. Port 0 picks a free port.
    #[arg(long, value_delimiter = ',', value_name = "PROTO/PORT,...")]
    pub ports: Vec<ServedPort>,
    /// The name replies carry [default: $POD_NAMESPACE/$POD_NAME, else the host name].
    #[arg(long, value_name = "NS/POD")]
    pub identity: Option<Identity>,
    /// Answer HTTP/1.1 on every TCP port.
    #[arg(long)]
    pub http: bool,
    /// The address to listen on (every address of the namespace by default).
    #[arg(long, default_value = "0.0.0.0")]
    pub address: Ipv4Addr,
}

#[derive(Args, Debug)]
pub struct ProbeArgs {
    /// Where the batch comes from: `-` for stdin, a file, or the JSON array itself.
    #[arg(long, value_name = "-|FILE|JSON")]
    pub batch: String,
}

pub fn run(args: &AgentArgs) -> Exit {
    let status = match &args.command {
        AgentCommand::Serve(a) => command::run_serve(
            &ServeCommand {
                ports: a.ports.clone(),
                identity: a.identity.clone(),
                options: ServeOptions {
                    address: a.address,
                    http: a.http,
                },
            },
            // Not locked: a panic message from the serving thread must not wait for the lock
            // the main thread would hold until the end.
            &mut std::io::stdout(),
            &mut std::io::stderr(),
        ),
        AgentCommand::Probe(a) => command::run_probe(
            &BatchSource::from_arg(&a.batch),
            &mut std::io::stdin().lock(),
            &mut std::io::stdout(),
            &mut std::io::stderr(),
        ),
    };
    match status {
        Status::Ok => Exit::Ok,
        Status::BadInput => Exit::BadInput,
        Status::Infrastructure => Exit::Infrastructure,
        Status::Interrupted => Exit::Interrupted,
    }
}
