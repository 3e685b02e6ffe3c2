//! Published ports: supervisord accepts TCP connections on each host address
//! of a job's `ports` and relays them to the job's loopback port.
//!
//! The outbound sockets are created by one thread per container that has
//! entered the container's network namespace with setns, so no bridge,
//! veth pair or routable address is needed. A socket stays in the network
//! namespace it was created in, so the relay copies data from any thread.
//! Jobs with `"network": "host"` are reached on the host's own loopback.

use std::fs::File;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::mpsc as std_mpsc;
use std::time::Duration;

use corral_config::{Network, PortMapping};
use nix::sched::CloneFlags;
use tokio::sync::oneshot;
use tokio::task::{JoinHandle, JoinSet};

/// Time allowed for a connection inside the job's network namespace.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// An error binding a published port.
#[derive(Debug, thiserror::Error)]
pub enum PortError {
    #[error("invalid host address {address:?} in ports")]
    InvalidAddress { address: String },
    #[error("failed to listen on {address} for container port {container_port}")]
    Bind {
        address: SocketAddr,
        container_port: u16,
        #[source]
        source: io::Error,
    },
}

/// Host listeners of one container, bound before the container starts so a
/// taken address fails the start with a clear error.
#[derive(Debug)]
pub struct BoundPorts {
    listeners: Vec<(TcpListener, u16)>,
}

/// Binds every host address of `ports`.
pub fn bind(ports: &[PortMapping]) -> Result<BoundPorts, PortError> {
    let mut listeners = Vec::with_capacity(ports.len());
    for mapping in ports {
        let address: SocketAddr = mapping
            .host
            .parse()
            .map_err(|_| PortError::InvalidAddress {
                address: mapping.host.clone(),
            })?;
        let bind_error = |source| PortError::Bind {
            address,
            container_port: mapping.container,
            source,
        };
        let listener = TcpListener::bind(address).map_err(bind_error)?;
        listener.set_nonblocking(true).map_err(bind_error)?;
        listeners.push((listener, mapping.container));
    }
    Ok(BoundPorts { listeners })
}

impl BoundPorts {
    pub fn is_empty(&self) -> bool {
        self.listeners.is_empty()
    }
}

/// The running relay of one container. Dropping it closes the listeners
/// and every relayed connection.
#[derive(Debug)]
pub struct PortRelay {
    tasks: Vec<JoinHandle<()>>,
}

impl Drop for PortRelay {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

/// The network namespace outbound connections of a container start from.
#[derive(Debug, Clone)]
enum Target {
    /// The host's network namespace.
    Host,
    /// The namespace of the process in the pid file, once it exists.
    Container { pid_file: PathBuf },
}

/// Starts relaying the bound ports of container `container_id`. The
/// container's init PID is read from `pid_file` at the first connection.
pub fn start_relay(
    ports: BoundPorts,
    network: Network,
    job: &str,
    container_id: &str,
    pid_file: &Path,
) -> PortRelay {
    let target = match network {
        Network::Host => Target::Host,
        Network::None | Network::Loopback => Target::Container {
            pid_file: pid_file.to_path_buf(),
        },
    };
    let connector = Connector::new(target);
    let mut tasks = Vec::new();
    for (listener, container_port) in ports.listeners {
        let listener = match tokio::net::TcpListener::from_std(listener) {
            Ok(listener) => listener,
            Err(error) => {
                tracing::error!(job, container_id, %error, "failed to register a port listener");
                continue;
            }
        };
        let connector = connector.clone();
        let job = job.to_string();
        let container_id = container_id.to_string();
        tasks.push(tokio::spawn(async move {
            accept_loop(listener, container_port, connector, job, container_id).await;
        }));
    }
    PortRelay { tasks }
}

async fn accept_loop(
    listener: tokio::net::TcpListener,
    container_port: u16,
    connector: Connector,
    job: String,
    container_id: String,
) {
    let local = listener.local_addr().ok();
    // Connections end with the loop, when the relay is dropped.
    let mut connections = JoinSet::new();
    loop {
        let (inbound, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(error) => {
                tracing::warn!(job, container_id, ?local, %error, "failed to accept a connection");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let loopback = match local.map(|address| address.ip()) {
            Some(IpAddr::V6(_)) => IpAddr::V6(Ipv6Addr::LOCALHOST),
            _ => IpAddr::V4(Ipv4Addr::LOCALHOST),
        };
        let target = SocketAddr::new(loopback, container_port);
        let connector = connector.clone();
        let job = job.clone();
        let container_id = container_id.clone();
        connections.spawn(async move {
            if let Err(error) = relay(inbound, target, &connector).await {
                tracing::debug!(job, container_id, %peer, %target, %error, "relayed connection ended with an error");
            }
        });
        // Finished connections are collected so the set does not grow.
        while connections.try_join_next().is_some() {}
    }
}

async fn relay(
    mut inbound: tokio::net::TcpStream,
    target: SocketAddr,
    connector: &Connector,
) -> io::Result<()> {
    let outbound = connector.connect(target).await?;
    outbound.set_nonblocking(true)?;
    let mut outbound = tokio::net::TcpStream::from_std(outbound)?;
    tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await?;
    Ok(())
}

type ConnectRequest = (SocketAddr, oneshot::Sender<io::Result<TcpStream>>);

/// Creates outbound sockets in the container's network namespace.
#[derive(Debug, Clone)]
struct Connector {
    target: Target,
    thread: std::sync::Arc<std::sync::Mutex<Option<std_mpsc::Sender<ConnectRequest>>>>,
}

impl Connector {
    fn new(target: Target) -> Self {
        Connector {
            target,
            thread: Default::default(),
        }
    }

    async fn connect(&self, address: SocketAddr) -> io::Result<TcpStream> {
        let pid_file = match &self.target {
            Target::Host => {
                return tokio::task::spawn_blocking(move || {
                    TcpStream::connect_timeout(&address, CONNECT_TIMEOUT)
                })
                .await
                .map_err(io::Error::other)?;
            }
            Target::Container { pid_file } => pid_file,
        };
        let sender = self.namespace_thread(pid_file)?;
        let (reply, response) = oneshot::channel();
        sender
            .send((address, reply))
            .map_err(|_| io::Error::other("the namespace connector thread ended"))?;
        response
            .await
            .map_err(|_| io::Error::other("the namespace connector thread ended"))?
    }

    /// Returns the channel of the thread inside the container's network
    /// namespace, starting the thread at the first connection.
    fn namespace_thread(&self, pid_file: &Path) -> io::Result<std_mpsc::Sender<ConnectRequest>> {
        let mut thread = self
            .thread
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(sender) = thread.as_ref() {
            return Ok(sender.clone());
        }
        let pid = std::fs::read_to_string(pid_file)
            .ok()
            .and_then(|text| text.trim().parse::<i32>().ok())
            .ok_or_else(|| {
                io::Error::new(
                    io::ErrorKind::NotFound,
                    format!(
                        "the container is not running yet (no pid in {})",
                        pid_file.display()
                    ),
                )
            })?;
        let namespace = File::open(format!("/proc/{pid}/ns/net"))?;
        let (sender, requests) = std_mpsc::channel::<ConnectRequest>();
        std::thread::Builder::new()
            .name(format!("netns-{pid}"))
            .spawn(move || serve_connects(namespace, requests))?;
        *thread = Some(sender.clone());
        Ok(sender)
    }
}

/// Enters the network namespace and connects for each request until every
/// sender is gone. The thread is never used for anything else, so it may
/// stay in the container's namespace.
fn serve_connects(namespace: File, requests: std_mpsc::Receiver<ConnectRequest>) {
    let entered = nix::sched::setns(&namespace, CloneFlags::CLONE_NEWNET).map_err(io::Error::from);
    drop(namespace);
    for (address, reply) in requests {
        let result = match &entered {
            Ok(()) => TcpStream::connect_timeout(&address, CONNECT_TIMEOUT),
            Err(error) => Err(io::Error::new(
                error.kind(),
                format!("failed to enter the container's network namespace: {error}"),
            )),
        };
        let _ = reply.send(result);
    }
}

#[cfg(test)]
mod tests {
    use std::io::{Read, Write};

    use super::*;

    fn mapping(host: &str, container: u16) -> PortMapping {
        PortMapping {
            host: host.to_string(),
            container,
        }
    }

    #[test]
    fn bind_reports_taken_address() {
        let taken = TcpListener::bind("127.0.0.1:0").unwrap();
        let address = taken.local_addr().unwrap().to_string();
        let error = bind(&[mapping(&address, 80)]).unwrap_err();
        let message = error.to_string();
        assert!(message.contains(&address), "{message}");
        assert!(message.contains("container port 80"), "{message}");
        assert!(matches!(
            bind(&[mapping("not-an-address", 80)]),
            Err(PortError::InvalidAddress { .. })
        ));
    }

    #[tokio::test]
    async fn host_network_relays_to_loopback() {
        let backend = TcpListener::bind("127.0.0.1:0").unwrap();
        let backend_port = backend.local_addr().unwrap().port();
        let server = std::thread::spawn(move || {
            let (mut stream, _) = backend.accept().unwrap();
            let mut request = [0u8; 4];
            stream.read_exact(&mut request).unwrap();
            stream.write_all(b"pong").unwrap();
            request
        });

        let ports = bind(&[mapping("127.0.0.1:0", backend_port)]).unwrap();
        let public = ports.listeners[0].0.local_addr().unwrap();
        let relay = start_relay(
            ports,
            Network::Host,
            "web",
            "web-00000000",
            Path::new("/none"),
        );

        let reply = tokio::task::spawn_blocking(move || {
            let mut client = TcpStream::connect(public).unwrap();
            client.write_all(b"ping").unwrap();
            let mut reply = [0u8; 4];
            client.read_exact(&mut reply).unwrap();
            reply
        })
        .await
        .unwrap();
        assert_eq!(&reply, b"pong");
        assert_eq!(&server.join().unwrap(), b"ping");

        drop(relay);
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(
            TcpStream::connect(public).is_err(),
            "the listener outlived the relay"
        );
    }

    #[tokio::test]
    async fn missing_pid_file_fails_connect() {
        let connector = Connector::new(Target::Container {
            pid_file: PathBuf::from("/nonexistent/web.pid"),
        });
        let error = connector
            .connect("127.0.0.1:80".parse().unwrap())
            .await
            .unwrap_err();
        assert!(error.to_string().contains("not running yet"), "{error}");
    }
}
