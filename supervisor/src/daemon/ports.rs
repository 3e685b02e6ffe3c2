//! Published ports: supervisord accepts TCP connections on each host address
//! of a job's `ports` and relays them to the job's loopback port.
//!
//! The outbound sockets are created by one thread per container that has
//! entered the container's network namespace with setns, so no bridge,
//! veth pair or routable address is needed. A socket stays in the network
//! namespace it was created in, so the relay copies data from any thread.
//! Jobs with `"network": "host"` are reached on the host's own loopback.
//! A connection goes to the loopback address of the listener's family
//! first, and to the other family's when that one is refused.
//!
//! The relay counts the bytes it writes to each side in [`RelayTraffic`],
//! because its connections inside the job's namespace travel over `lo`,
//! whose counters show every byte as both received and sent.

use std::fs::File;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc as std_mpsc;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use corral_config::{Network, PortMapping};
use nix::sched::CloneFlags;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::{oneshot, watch};
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
    listening: Listening,
    traffic: Arc<RelayTraffic>,
}

/// Bytes the relay of one container carried, over all its connections
/// since the relay started. Each counter grows as the bytes are written,
/// so a long connection shows in it before it ends.
#[derive(Debug, Default)]
pub struct RelayTraffic {
    /// Bytes written to the job's sockets: what clients sent the job.
    received: AtomicU64,
    /// Bytes written to the clients' sockets: what the job sent back.
    sent: AtomicU64,
}

impl RelayTraffic {
    /// Returns the bytes received by the job and sent by it.
    pub fn bytes(&self) -> (u64, u64) {
        (
            self.received.load(Ordering::Relaxed),
            self.sent.load(Ordering::Relaxed),
        )
    }
}

/// The addresses a relay listens on, and the signal of their release.
#[derive(Debug, Clone)]
pub struct Listening {
    addresses: Vec<SocketAddr>,
    released: PortsReleased,
}

impl Listening {
    /// Returns whether one of the listeners keeps `address` from binding,
    /// until the release signal completes.
    pub fn blocks(&self, address: &SocketAddr) -> bool {
        self.addresses
            .iter()
            .any(|held| addresses_overlap(held, address))
    }

    pub fn released(&self) -> PortsReleased {
        self.released.clone()
    }
}

/// A signal that completes once every listener of a relay is closed. Each
/// accept loop owns a clone of the sending side, dropped with the loop.
#[derive(Debug, Clone)]
pub struct PortsReleased(watch::Receiver<()>);

impl PortsReleased {
    pub async fn wait(mut self) {
        while self.0.changed().await.is_ok() {}
    }
}

/// Returns whether a listener on `a` keeps another from binding `b`: the
/// same port on the same address, or on any address when either is a
/// wildcard.
pub fn addresses_overlap(a: &SocketAddr, b: &SocketAddr) -> bool {
    a.port() == b.port() && (a.ip() == b.ip() || a.ip().is_unspecified() || b.ip().is_unspecified())
}

/// Returns the host addresses of `ports` that parse. An address that does
/// not parse fails the launch with its own error.
pub fn host_addresses(ports: &[PortMapping]) -> Vec<SocketAddr> {
    ports
        .iter()
        .filter_map(|mapping| mapping.host.parse().ok())
        .collect()
}

impl Drop for PortRelay {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

impl PortRelay {
    /// Stops accepting and returns a handle whose release signal completes
    /// once every listener is closed. Dropping the relay closes them too,
    /// but only when the runtime next polls the aborted tasks, so a new
    /// container that binds the same addresses has to wait for that signal
    /// first.
    pub fn close(mut self) -> ClosingRelay {
        for task in std::mem::take(&mut self.tasks) {
            task.abort();
        }
        ClosingRelay {
            listening: self.listening.clone(),
        }
    }

    pub fn listening(&self) -> &Listening {
        &self.listening
    }

    /// Returns the byte counters of this relay's connections.
    pub fn traffic(&self) -> Arc<RelayTraffic> {
        Arc::clone(&self.traffic)
    }
}

/// A relay being closed; see [`PortRelay::close`].
#[derive(Debug)]
pub struct ClosingRelay {
    listening: Listening,
}

impl ClosingRelay {
    /// Returns a signal that completes once every listener of the relay is
    /// closed. Tokio drops an aborted task's future, with its listener and
    /// its clone of the sending side, when the runtime polls the task.
    pub fn released(&self) -> PortsReleased {
        self.listening.released()
    }

    pub fn listening(&self) -> &Listening {
        &self.listening
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
    let traffic = Arc::new(RelayTraffic::default());
    let (release, released) = watch::channel(());
    let release = Arc::new(release);
    let mut tasks = Vec::new();
    let mut addresses = Vec::new();
    for (listener, container_port) in ports.listeners {
        if let Ok(address) = listener.local_addr() {
            addresses.push(address);
        }
        let listener = match tokio::net::TcpListener::from_std(listener) {
            Ok(listener) => listener,
            Err(error) => {
                tracing::error!(job, container_id, %error, "failed to register a port listener");
                continue;
            }
        };
        let connector = connector.clone();
        let traffic = Arc::clone(&traffic);
        let job = job.to_string();
        let container_id = container_id.to_string();
        let owned = HeldListener {
            listener,
            _release: Arc::clone(&release),
            job: job.clone(),
            container_id: container_id.clone(),
        };
        tasks.push(tokio::spawn(async move {
            // Moves the whole value in, release signal included. Naming only
            // the listener field would capture just that field.
            let owned = owned;
            accept_loop(
                &owned.listener,
                container_port,
                connector,
                traffic,
                job,
                container_id,
            )
            .await;
        }));
    }
    PortRelay {
        tasks,
        listening: Listening {
            addresses,
            released: PortsReleased(released),
        },
        traffic,
    }
}

/// A listener and its share of the relay's release signal. The drop shuts
/// the socket down, and the fields drop in order after that, so the socket
/// is closed before a waiter learns that it is.
struct HeldListener {
    listener: tokio::net::TcpListener,
    _release: Arc<watch::Sender<()>>,
    job: String,
    container_id: String,
}

impl Drop for HeldListener {
    /// Takes the socket out of the listening state before its descriptor
    /// closes. A monitor that another launch spawns starts with a copy of
    /// every descriptor of supervisord and keeps it until it executes, so
    /// closing this descriptor alone can leave the socket listening while
    /// the job's next container binds the same address. A socket that is
    /// shut down keeps its address, but it no longer keeps a socket with
    /// SO_REUSEADDR, which std sets on listeners, from binding it.
    fn drop(&mut self) {
        let shut_down =
            nix::sys::socket::shutdown(self.listener.as_raw_fd(), nix::sys::socket::Shutdown::Read);
        if let Err(error) = shut_down {
            let host = self.listener.local_addr().ok();
            tracing::warn!(
                job = %self.job,
                container_id = %self.container_id,
                host = host.map(tracing::field::display),
                %error,
                "failed to shut down a port listener; the next start may find its address in use"
            );
        }
    }
}

async fn accept_loop(
    listener: &tokio::net::TcpListener,
    container_port: u16,
    connector: Connector,
    traffic: Arc<RelayTraffic>,
    job: String,
    container_id: String,
) {
    let local = listener.local_addr().ok();
    let warnings = Arc::new(WarnLimit::default());
    // Connections end with the loop, when the relay is dropped.
    let mut connections = JoinSet::new();
    loop {
        let (inbound, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(error) => {
                tracing::warn!(job, container_id, host = local.map(tracing::field::display), %error, "failed to accept a connection");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let targets = loopback_targets(local, container_port);
        let connector = connector.clone();
        let traffic = Arc::clone(&traffic);
        let job = job.clone();
        let container_id = container_id.clone();
        let warnings = warnings.clone();
        connections.spawn(async move {
            let outbound = match connect_first(&connector, targets).await {
                Ok(outbound) => outbound,
                Err(error) => {
                    if let Some(suppressed) = warnings.allow() {
                        tracing::warn!(
                            job,
                            container_id,
                            %peer,
                            host = local.map(tracing::field::display),
                            container_port,
                            suppressed,
                            %error,
                            "failed to connect a published port to the job"
                        );
                    }
                    return;
                }
            };
            if let Err(error) = relay(inbound, outbound, traffic).await {
                tracing::debug!(job, container_id, %peer, container_port, %error, "relayed connection ended with an error");
            }
        });
        // Finished connections are collected so the set does not grow.
        while connections.try_join_next().is_some() {}
    }
}

/// Returns the job's loopback addresses to try for a connection accepted
/// on `local`: the loopback of the same family first, then the other one.
/// A service bound to 127.0.0.1 then gets connections published on
/// `[::1]`, and one bound to ::1 those published on 127.0.0.1.
fn loopback_targets(local: Option<SocketAddr>, container_port: u16) -> [SocketAddr; 2] {
    let v4 = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), container_port);
    let v6 = SocketAddr::new(IpAddr::V6(Ipv6Addr::LOCALHOST), container_port);
    match local {
        Some(SocketAddr::V6(_)) => [v6, v4],
        _ => [v4, v6],
    }
}

/// Connects to the first target that accepts. Only a refused connection
/// (nothing listens there) moves on to the next; other errors, such as a
/// timeout, end the attempt. The error returned names each target tried.
async fn connect_first(connector: &Connector, targets: [SocketAddr; 2]) -> io::Result<TcpStream> {
    let mut failures = Vec::new();
    for target in targets {
        match connector.connect(target).await {
            Ok(stream) => return Ok(stream),
            Err(error) => {
                let refused = error.kind() == io::ErrorKind::ConnectionRefused;
                failures.push(format!("{target}: {error}"));
                if !refused {
                    break;
                }
            }
        }
    }
    Err(io::Error::other(failures.join("; ")))
}

/// Minimum time between two warnings about failed connections of one
/// published port. A client can connect at will, so each warning is
/// followed by this quiet time.
const WARN_INTERVAL: Duration = Duration::from_secs(10);

/// Rate limit of the warnings of one published port.
#[derive(Debug, Default)]
struct WarnLimit {
    /// When the last warning was logged and how many were suppressed since.
    state: std::sync::Mutex<(Option<std::time::Instant>, u64)>,
}

impl WarnLimit {
    /// Returns the number of warnings suppressed since the last one when a
    /// warning may be logged now, or `None` when it is suppressed.
    fn allow(&self) -> Option<u64> {
        let mut state = self
            .state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let (last, suppressed) = &mut *state;
        if last.is_some_and(|last| last.elapsed() < WARN_INTERVAL) {
            *suppressed += 1;
            return None;
        }
        *last = Some(std::time::Instant::now());
        Some(std::mem::take(suppressed))
    }
}

async fn relay(
    inbound: tokio::net::TcpStream,
    outbound: TcpStream,
    traffic: Arc<RelayTraffic>,
) -> io::Result<()> {
    outbound.set_nonblocking(true)?;
    let outbound = tokio::net::TcpStream::from_std(outbound)?;
    let mut inbound = CountWrites {
        stream: inbound,
        traffic: Arc::clone(&traffic),
        direction: Direction::OutOfJob,
    };
    let mut outbound = CountWrites {
        stream: outbound,
        traffic,
        direction: Direction::IntoJob,
    };
    tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await?;
    Ok(())
}

/// Direction of the bytes written to a [`CountWrites`] stream, which
/// selects the counter of [`RelayTraffic`] they add to.
#[derive(Debug, Clone, Copy)]
enum Direction {
    IntoJob,
    OutOfJob,
}

/// A stream that adds every byte written to it to one counter of a
/// [`RelayTraffic`]. Reads pass through uncounted, because the other
/// side's writes count the same bytes.
struct CountWrites {
    stream: tokio::net::TcpStream,
    traffic: Arc<RelayTraffic>,
    direction: Direction,
}

impl CountWrites {
    fn count(&self, written: &Poll<io::Result<usize>>) {
        if let Poll::Ready(Ok(bytes)) = written {
            let counter = match self.direction {
                Direction::IntoJob => &self.traffic.received,
                Direction::OutOfJob => &self.traffic.sent,
            };
            counter.fetch_add(*bytes as u64, Ordering::Relaxed);
        }
    }
}

impl AsyncRead for CountWrites {
    fn poll_read(
        mut self: Pin<&mut Self>,
        context: &mut Context<'_>,
        buffer: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_read(context, buffer)
    }
}

impl AsyncWrite for CountWrites {
    fn poll_write(
        mut self: Pin<&mut Self>,
        context: &mut Context<'_>,
        buffer: &[u8],
    ) -> Poll<io::Result<usize>> {
        let written = Pin::new(&mut self.stream).poll_write(context, buffer);
        self.count(&written);
        written
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        context: &mut Context<'_>,
        buffers: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let written = Pin::new(&mut self.stream).poll_write_vectored(context, buffers);
        self.count(&written);
        written
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, context: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(context)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, context: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(context)
    }
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
    fn overlap_counts_wildcards() {
        let address = |text: &str| text.parse::<SocketAddr>().unwrap();
        assert!(addresses_overlap(
            &address("127.0.0.1:80"),
            &address("127.0.0.1:80")
        ));
        assert!(addresses_overlap(
            &address("0.0.0.0:80"),
            &address("127.0.0.1:80")
        ));
        assert!(addresses_overlap(
            &address("127.0.0.1:80"),
            &address("[::]:80")
        ));
        assert!(!addresses_overlap(
            &address("127.0.0.1:80"),
            &address("127.0.0.2:80")
        ));
        assert!(!addresses_overlap(
            &address("127.0.0.1:80"),
            &address("127.0.0.1:81")
        ));
    }

    #[tokio::test]
    async fn release_completes_once_listeners_close() {
        let bound = bind(&[mapping("127.0.0.1:0", 8080)]).unwrap();
        let address = bound.listeners[0].0.local_addr().unwrap();
        let relay = start_relay(bound, Network::Host, "web", "web-1", Path::new("/none"));
        assert!(relay.listening().blocks(&address));
        let released = relay.listening().released();
        let waiting = tokio::spawn(released.wait());
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(
            !waiting.is_finished(),
            "released while the listener is open"
        );
        drop(relay.close());
        tokio::time::timeout(Duration::from_secs(5), waiting)
            .await
            .expect("the release never came")
            .unwrap();
        TcpListener::bind(address).expect("the address is free again");
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
    async fn relay_counts_each_direction() {
        let backend = TcpListener::bind("127.0.0.1:0").unwrap();
        let backend_port = backend.local_addr().unwrap().port();
        let server = std::thread::spawn(move || {
            for _ in 0..2 {
                let (mut stream, _) = backend.accept().unwrap();
                let mut request = vec![0u8; 1000];
                stream.read_exact(&mut request).unwrap();
                stream.write_all(b"ok\n").unwrap();
            }
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
        let traffic = relay.traffic();

        for connection in 1..=2u64 {
            tokio::task::spawn_blocking(move || {
                let mut client = TcpStream::connect(public).unwrap();
                client.write_all(&[7u8; 1000]).unwrap();
                let mut reply = [0u8; 3];
                client.read_exact(&mut reply).unwrap();
            })
            .await
            .unwrap();
            // The relay adds to a counter just after its write returns, so
            // the client may read the reply a moment before that.
            let expected = (1000 * connection, 3 * connection);
            let deadline = std::time::Instant::now() + Duration::from_secs(5);
            while traffic.bytes() != expected && std::time::Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            assert_eq!(traffic.bytes(), expected, "after connection {connection}");
        }
        server.join().unwrap();
    }

    #[tokio::test]
    async fn closed_relay_frees_its_address() {
        let ports = bind(&[mapping("127.0.0.1:0", 9)]).unwrap();
        let public = ports.listeners[0].0.local_addr().unwrap().to_string();
        let relay = start_relay(
            ports,
            Network::Host,
            "web",
            "web-00000000",
            Path::new("/none"),
        );
        // Let the accept loop take over the listener.
        tokio::task::yield_now().await;

        let closing = relay.close();
        assert!(
            bind(&[mapping(&public, 9)]).is_err(),
            "the listener closed before the runtime polled its task"
        );
        closing.released().wait().await;
        let again = bind(&[mapping(&public, 9)]);
        assert!(again.is_ok(), "{:?}", again.err());
    }

    #[tokio::test]
    async fn closed_relay_frees_address_held_elsewhere() {
        let ports = bind(&[mapping("127.0.0.1:0", 9)]).unwrap();
        let public = ports.listeners[0].0.local_addr().unwrap().to_string();
        // A shut-down listener keeps only sockets without SO_REUSEADDR from
        // binding its address, and std sets the option on every listener.
        let reuse = nix::sys::socket::sockopt::ReuseAddr;
        assert!(nix::sys::socket::getsockopt(&ports.listeners[0].0, reuse).unwrap());
        // The copy that a process spawned meanwhile keeps until it executes.
        let copy = ports.listeners[0].0.try_clone().unwrap();
        let relay = start_relay(
            ports,
            Network::Host,
            "web",
            "web-00000000",
            Path::new("/none"),
        );
        tokio::task::yield_now().await;

        let closing = relay.close();
        closing.released().wait().await;
        let again = bind(&[mapping(&public, 9)]);
        assert!(again.is_ok(), "{:?}", again.err());
        drop(copy);
    }

    /// Publishes `host` for `port` of the host's network, connects to it
    /// and reads until the relay closes the connection. Returns the
    /// published address and what was read.
    async fn read_through_relay(host: &str, port: u16) -> (SocketAddr, io::Result<Vec<u8>>) {
        let ports = bind(&[mapping(host, port)]).unwrap();
        let public = ports.listeners[0].0.local_addr().unwrap();
        let _relay = start_relay(
            ports,
            Network::Host,
            "web",
            "web-00000000",
            Path::new("/none"),
        );
        let reply = tokio::task::spawn_blocking(move || {
            let mut client = TcpStream::connect(public).unwrap();
            client
                .set_read_timeout(Some(Duration::from_secs(10)))
                .unwrap();
            let mut reply = Vec::new();
            client.read_to_end(&mut reply).map(|_| reply)
        })
        .await
        .unwrap();
        (public, reply)
    }

    #[tokio::test]
    async fn ipv6_port_reaches_ipv4_service() {
        if TcpListener::bind("[::1]:0").is_err() {
            eprintln!("SKIP ipv6_port_reaches_ipv4_service: no IPv6 loopback");
            return;
        }
        let backend = TcpListener::bind("127.0.0.1:0").unwrap();
        let backend_port = backend.local_addr().unwrap().port();
        // Nothing may listen on the same port of ::1, or the relay would
        // rightly connect there.
        if TcpListener::bind(("::1", backend_port)).is_err() {
            eprintln!("SKIP ipv6_port_reaches_ipv4_service: port {backend_port} is taken on ::1");
            return;
        }
        let server = std::thread::spawn(move || {
            let (mut stream, _) = backend.accept().unwrap();
            stream.write_all(b"v4").unwrap();
        });

        let (_, reply) = read_through_relay("[::1]:0", backend_port).await;
        assert_eq!(reply.unwrap(), b"v4");
        server.join().unwrap();
    }

    /// A log writer that collects every line in memory.
    #[derive(Clone, Default)]
    struct CapturedLog(Arc<std::sync::Mutex<Vec<u8>>>);

    impl Write for CapturedLog {
        fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(bytes);
            Ok(bytes.len())
        }

        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[tokio::test]
    async fn failed_connect_logs_plain_host_address() {
        // A port that nothing listens on, on either loopback address.
        let closed_port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let log = CapturedLog::default();
        let writer = log.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(move || writer.clone())
            .with_ansi(false)
            .finish();
        let _guard = tracing::subscriber::set_default(subscriber);

        let (public, reply) = read_through_relay("127.0.0.1:0", closed_port).await;
        assert_eq!(reply.unwrap(), b"", "the relay passed data from nowhere");

        let text = String::from_utf8(log.0.lock().unwrap().clone()).unwrap();
        assert!(
            text.contains("failed to connect a published port"),
            "no warning logged: {text}"
        );
        assert!(text.contains(&format!("host={public}")), "{text}");
        assert!(!text.contains("Some("), "{text}");
    }

    #[test]
    fn targets_prefer_the_listener_family() {
        let v6: SocketAddr = "[::1]:8080".parse().unwrap();
        let v4: SocketAddr = "127.0.0.1:8080".parse().unwrap();
        let [first, second] = loopback_targets(Some(v6), 80);
        assert_eq!(first, "[::1]:80".parse().unwrap());
        assert_eq!(second, "127.0.0.1:80".parse().unwrap());
        let [first, second] = loopback_targets(Some(v4), 80);
        assert_eq!(first, "127.0.0.1:80".parse().unwrap());
        assert_eq!(second, "[::1]:80".parse().unwrap());
    }

    #[test]
    fn warnings_are_rate_limited() {
        let limit = WarnLimit::default();
        assert_eq!(limit.allow(), Some(0));
        assert_eq!(limit.allow(), None);
        assert_eq!(limit.allow(), None);
        limit.state.lock().unwrap().0 =
            Some(std::time::Instant::now() - WARN_INTERVAL - Duration::from_millis(1));
        assert_eq!(limit.allow(), Some(2));
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
