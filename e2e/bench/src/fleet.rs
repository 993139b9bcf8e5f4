//! The gateways under test as one system: a standalone gateway (the original setup), N gateways
//! in cluster mode behind a nats-server the tool starts, or gateways someone else started. Memory
//! and CPU are summed over distinct processes, so gateways sharing one process (in-process test
//! gateways) are not counted twice; nats-server's CPU is kept apart, as its own line of cost.

use std::net::SocketAddr;
use std::path::PathBuf;

use crate::BenchError;
use crate::natsd::NatsServer;
use crate::procfs::{self, ProcError};
use crate::server::Server;

#[cfg(test)]
mod tests;

/// Where the gateways come from.
#[derive(Debug, Clone)]
pub enum Target0 {
    /// `gateways` processes of `binary` with one engine; behind a nats-server started from
    /// `nats_server` when that is set (cluster mode), else one standalone gateway.
    Spawn {
        binary: PathBuf,
        engine: String,
        /// The report's name for it: the engine, or e.g. `epoll-before` for a second binary.
        name: String,
        extra: Vec<String>,
        gateways: usize,
        nats_server: Option<PathBuf>,
    },
    /// Gateways already running: one client and admin address each, and the pid of each (or
    /// one pid for all of them).
    External {
        pids: Vec<u32>,
        clients: Vec<SocketAddr>,
        admins: Vec<SocketAddr>,
        label: String,
        nats: Option<ExternalNats>,
    },
}

/// The NATS that external gateways use.
#[derive(Debug, Clone)]
pub struct ExternalNats {
    pub url: String,
    /// Its monitoring address, to see the gateways' subscriptions.
    pub monitor: SocketAddr,
    /// Its pid, to measure its CPU; unknown if `None`.
    pub pid: Option<u32>,
}

/// The NATS side of a cluster run.
#[derive(Debug)]
pub struct Nats {
    pub url: String,
    pub monitor: SocketAddr,
    pub pid: Option<u32>,
    /// Set when the tool started the server (stopped with the run).
    process: Option<NatsServer>,
}

/// The gateways of one run.
#[derive(Debug)]
pub struct Fleet {
    pub gateways: Vec<Server>,
    /// Set in cluster mode.
    pub nats: Option<Nats>,
    /// The engine label of the report: `epoll`, or `epoll x3` for three gateways behind NATS.
    pub label: String,
}

/// The report label: the engine, with the gateway count when they form a cluster.
pub fn label(engine: &str, gateways: usize, clustered: bool) -> String {
    if clustered {
        format!("{engine} x{gateways}")
    } else {
        engine.to_owned()
    }
}

/// Each pid once, in first-seen order.
pub fn distinct(pids: impl IntoIterator<Item = u32>) -> Vec<u32> {
    let mut out: Vec<u32> = Vec::new();
    for pid in pids {
        if !out.contains(&pid) {
            out.push(pid);
        }
    }
    out
}

/// The pod name gateway `i` gets: distinct, so each has its own control subject.
pub fn pod_name(i: usize) -> String {
    format!("bench-gw-{i}")
}

/// CPU seconds used so far, per gateway, summed, and by nats-server.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CpuSample {
    /// Over distinct gateway processes.
    pub total: f64,
    /// The part of `total` spent in user mode.
    pub user: f64,
    pub per_gateway: Vec<f64>,
    pub nats: Option<f64>,
}

impl CpuSample {
    /// What was used between `earlier` and this sample.
    pub fn since(&self, earlier: &CpuSample) -> CpuSample {
        CpuSample {
            total: self.total - earlier.total,
            user: self.user - earlier.user,
            per_gateway: self
                .per_gateway
                .iter()
                .zip(&earlier.per_gateway)
                .map(|(now, then)| now - then)
                .collect(),
            nats: self.nats.zip(earlier.nats).map(|(now, then)| now - then),
        }
    }
}

impl Fleet {
    /// Starts (or adopts) the gateways and, in cluster mode, the nats-server, all on `cpu`.
    pub async fn start(
        target: &Target0,
        prefix: &str,
        cpu: Option<&str>,
    ) -> Result<Fleet, BenchError> {
        match target {
            Target0::Spawn {
                binary,
                engine,
                name,
                extra,
                gateways,
                nats_server,
            } => {
                let count = (*gateways).max(1);
                let nats = match nats_server {
                    Some(program) => Some(NatsServer::start(program, cpu).await?),
                    None => None,
                };
                let mut servers = Vec::with_capacity(count);
                for i in 0..count {
                    let (args, env) = match &nats {
                        Some(n) => (
                            [
                                vec![
                                    "--nats".to_owned(),
                                    n.url(),
                                    "--subject-prefix".to_owned(),
                                    prefix.to_owned(),
                                ],
                                extra.clone(),
                            ]
                            .concat(),
                            vec![("POD_NAME", pod_name(i))],
                        ),
                        None => (extra.clone(), Vec::new()),
                    };
                    servers.push(Server::spawn(binary, engine, &args, &env, cpu).await?);
                }
                Ok(Fleet {
                    label: label(name, count, nats.is_some()),
                    gateways: servers,
                    nats: nats.map(|n| Nats {
                        url: n.url(),
                        monitor: n.monitor,
                        pid: Some(n.pid),
                        process: Some(n),
                    }),
                })
            }
            Target0::External {
                pids,
                clients,
                admins,
                label: name,
                nats,
            } => {
                let gateways: Vec<Server> = clients
                    .iter()
                    .zip(admins)
                    .enumerate()
                    .map(|(i, (&client, &admin))| {
                        let pid = pids.get(i).or(pids.first()).copied().unwrap_or(0);
                        Server::external(pid, client, admin)
                    })
                    .collect();
                Ok(Fleet {
                    label: label(name, gateways.len(), nats.is_some()),
                    gateways,
                    nats: nats.as_ref().map(|n| Nats {
                        url: n.url.clone(),
                        monitor: n.monitor,
                        pid: n.pid,
                        process: None,
                    }),
                })
            }
        }
    }

    pub fn clustered(&self) -> bool {
        self.nats.is_some()
    }

    fn pids(&self) -> Vec<u32> {
        distinct(self.gateways.iter().map(|g| g.pid))
    }

    /// Resident memory summed over the gateway processes.
    pub fn rss(&self) -> Result<u64, ProcError> {
        self.pids().into_iter().map(procfs::rss_bytes).sum()
    }

    /// Starts a peak-memory window on every gateway process (see [`Fleet::peak_rss`]).
    pub fn reset_peak_rss(&self) -> Result<(), ProcError> {
        self.pids().into_iter().try_for_each(procfs::reset_peak_rss)
    }

    /// Peak resident memory since [`Fleet::reset_peak_rss`], summed over the gateway processes
    /// (an upper bound of the summed peak: each process peaks on its own).
    pub fn peak_rss(&self) -> Result<u64, ProcError> {
        self.pids().into_iter().map(procfs::peak_rss_bytes).sum()
    }

    /// Resident memory of each gateway's process (0 when unreadable).
    pub fn rss_per_gateway(&self) -> Vec<u64> {
        self.gateways
            .iter()
            .map(|g| procfs::rss_bytes(g.pid).unwrap_or(0))
            .collect()
    }

    /// CPU used so far; an unreadable process counts 0 (it has exited, which the run reports
    /// in other ways).
    pub fn cpu(&self, ticks: u64) -> CpuSample {
        let cpu = |pid| procfs::cpu_seconds(pid, ticks).unwrap_or(0.0);
        let user = |pid| procfs::cpu_split(pid, ticks).map_or(0.0, |(user, _)| user);
        CpuSample {
            total: self.pids().into_iter().map(cpu).sum(),
            user: self.pids().into_iter().map(user).sum(),
            per_gateway: self.gateways.iter().map(|g| cpu(g.pid)).collect(),
            nats: self.nats.as_ref().and_then(|n| n.pid).map(cpu),
        }
    }

    /// Stops what the tool started: gateways first, so none sees NATS go away.
    pub async fn stop(self) {
        for gateway in self.gateways {
            gateway.stop().await;
        }
        if let Some(server) = self.nats.and_then(|n| n.process) {
            server.stop().await;
        }
    }
}
