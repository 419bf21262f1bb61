//! WebSocket load tool: many `/ws/events` clients, domain events published at a steady rate,
//! delivery latency and memory per connection. Run through `bench/ws.sh`, which raises the
//! file-descriptor limit and builds in release mode.
//!
//! `ws_load CONNECTIONS RATE SECONDS [SAMPLE]`
//!
//! It starts `target/release/shop` on a fresh database in a temporary folder, connects
//! CONNECTIONS clients to `/ws/events`, measures the server's resident memory before and after
//! (idle connections), then creates RATE users per second for SECONDS over HTTP. Each creation
//! is a `user.created` event broadcast to every client. SAMPLE clients (default 200) parse each
//! event and record the time from the `POST /users` being sent to the event's receipt: the
//! latency a client sees, HTTP, SQLite commit and broadcast included. The other clients count
//! frames.
//!
//! With `REDIS_URL` set it starts two instances sharing that Redis (each on its own SQLite
//! file): the users are created on the first, the clients listen on the second, so every event
//! crosses through Redis. `bench/ws.sh cross` runs it both ways to give what Redis adds.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::Message;

struct Shared {
    started: Instant,
    /// Send time of user `n`, in µs since `started`.
    sent: Vec<OnceLock<u64>>,
    /// Time the response to user `n`'s POST arrived: the event goes out after it.
    answered: Vec<OnceLock<u64>>,
    latencies_us: Mutex<Vec<u64>>,
    /// Receipt minus `answered`: the broadcast alone.
    fanout_us: Mutex<Vec<u64>>,
    frames: AtomicU64,
    closed: AtomicU64,
}

fn arg(n: usize, default: u64) -> u64 {
    std::env::args()
        .nth(n)
        .map(|a| a.parse().expect("numeric arguments"))
        .unwrap_or(default)
}

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// CPU seconds (user and system) the process has used: /proc reports them in USER_HZ ticks,
/// which Linux fixes at 100 a second.
fn cpu_secs(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name, which is in parentheses and may hold spaces.
    let after = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<u64>().ok())
            .unwrap_or(0)
    };
    // utime and stime are the 14th and 15th fields; the 3rd is the first after the name.
    (ticks(11) + ticks(12)) as f64 / 100.0
}

async fn client(url: String, shared: Arc<Shared>, sampled: bool) {
    let config = WebSocketConfig::default().read_buffer_size(4096);
    let Ok((mut ws, _)) =
        tokio_tungstenite::connect_async_with_config(url, Some(config), false).await
    else {
        shared.closed.fetch_add(1, Ordering::Relaxed);
        return;
    };
    while let Some(Ok(frame)) = ws.next().await {
        let Message::Text(text) = frame else { continue };
        shared.frames.fetch_add(1, Ordering::Relaxed);
        if !sampled {
            continue;
        }
        let now = shared.started.elapsed().as_micros() as u64;
        let event: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
        let seq = event["data"]["username"]
            .as_str()
            .and_then(|u| u.strip_prefix("load"))
            .and_then(|n| n.parse::<usize>().ok());
        if let Some(sent) = seq.and_then(|n| shared.sent.get(n)).and_then(OnceLock::get) {
            shared
                .latencies_us
                .lock()
                .expect("not poisoned")
                .push(now.saturating_sub(*sent));
        }
        if let Some(answered) = seq
            .and_then(|n| shared.answered.get(n))
            .and_then(OnceLock::get)
        {
            shared
                .fanout_us
                .lock()
                .expect("not poisoned")
                .push(now.saturating_sub(*answered));
        }
    }
    shared.closed.fetch_add(1, Ordering::Relaxed);
}

/// Starts `target/release/shop` on a fresh SQLite file in `dir`; returns it and its port.
fn start_shop(
    dir: &std::path::Path,
    redis: Option<&str>,
    prefix: &str,
    max_connections: u64,
) -> (std::process::Child, u16) {
    std::fs::create_dir_all(dir).expect("a temporary folder");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let target = std::env::var("CARGO_TARGET_DIR").unwrap_or_else(|_| "target".into());
    let mut command = std::process::Command::new(format!("{target}/release/shop"));
    command
        .env("SHOP_ADDR", format!("127.0.0.1:{port}"))
        .env(
            "DATABASE_URL",
            format!("sqlite://{}/shop.db", dir.display()),
        )
        .env("SHOP_MAIL_DIR", dir.join("mail"))
        .env("RUST_LOG", "error")
        .env("SHOP_MAX_CONNECTIONS", max_connections.to_string())
        .env("SHOP_REDIS_PREFIX", prefix)
        .env_remove("REDIS_URL")
        .stdout(std::process::Stdio::null());
    if let Some(redis) = redis {
        command.env("REDIS_URL", redis);
    }
    let child = command
        .spawn()
        .expect("target/release/shop (cargo build --release)");
    (child, port)
}

fn percentile(sorted: &[u64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i] as f64 / 1000.0
}

#[tokio::main]
async fn main() {
    let connections = arg(1, 10_000);
    let rate = arg(2, 1000).max(1);
    let seconds = arg(3, 10);
    let sample = arg(4, 200).min(connections);
    let events = rate * seconds;

    let dir = std::env::temp_dir().join(format!("shop-ws-load-{}", std::process::id()));
    let redis = std::env::var("REDIS_URL").ok();
    let prefix = format!("ws-load:{}:", std::process::id());
    // Room for every client and the HTTP connections that publish the events.
    let max_connections = connections + 1_000;
    let (mut shop, port) = start_shop(&dir.join("a"), redis.as_deref(), &prefix, max_connections);
    let mut listening = redis
        .as_deref()
        .map(|redis| start_shop(&dir.join("b"), Some(redis), &prefix, max_connections));
    let http = reqwest::Client::new();
    let base = format!("http://127.0.0.1:{port}");
    for port in [Some(port), listening.as_ref().map(|(_, port)| *port)]
        .into_iter()
        .flatten()
    {
        for _ in 0..200 {
            if http
                .get(format!("http://127.0.0.1:{port}/healthz"))
                .send()
                .await
                .is_ok()
            {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    if listening.is_some() {
        println!("two instances through Redis: events created on one, clients on the other");
    }

    let shared = Arc::new(Shared {
        started: Instant::now(),
        sent: (0..events).map(|_| OnceLock::new()).collect(),
        answered: (0..events).map(|_| OnceLock::new()).collect(),
        latencies_us: Mutex::new(Vec::with_capacity((events * sample) as usize)),
        fanout_us: Mutex::new(Vec::with_capacity((events * sample) as usize)),
        frames: AtomicU64::new(0),
        closed: AtomicU64::new(0),
    });

    let (clients_pid, clients_port) = match &listening {
        Some((child, port)) => (child.id(), *port),
        None => (shop.id(), port),
    };
    let rss_before = rss_kib(clients_pid);
    let url = format!("ws://127.0.0.1:{clients_port}/ws/events");
    let connecting = Instant::now();
    let mut tasks = Vec::with_capacity(connections as usize);
    for n in 0..connections {
        tasks.push(tokio::spawn(client(
            url.clone(),
            shared.clone(),
            n < sample,
        )));
        // Let the server keep up with handshakes rather than flood its backlog.
        if n % 200 == 199 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    let rss_idle = rss_kib(clients_pid);
    let refused = shared.closed.load(Ordering::Relaxed);
    println!(
        "connections: {} open of {connections} in {:.1} s",
        connections - refused,
        connecting.elapsed().as_secs_f64()
    );
    println!(
        "server RSS: {rss_before} KiB before, {rss_idle} KiB with the idle connections: {:.1} KiB per connection",
        (rss_idle.saturating_sub(rss_before)) as f64 / (connections - refused).max(1) as f64
    );

    // Publish: one POST /users per tick, each answered on its own task.
    let cpu_before = cpu_secs(clients_pid);
    let own_cpu_before = cpu_secs(std::process::id());
    let publishing = Instant::now();
    let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / rate as f64));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let mut posts = Vec::with_capacity(events as usize);
    for seq in 0..events as usize {
        tick.tick().await;
        let (http, shared, base) = (http.clone(), shared.clone(), base.clone());
        posts.push(tokio::spawn(async move {
            let _ = shared.sent[seq].set(shared.started.elapsed().as_micros() as u64);
            let body = serde_json::json!({"email": format!("load{seq}@example.com"), "username": format!("load{seq}")});
            let ok = http
                .post(format!("{base}/users"))
                .json(&body)
                .send()
                .await
                .map(|r| r.status().as_u16() == 201)
                .unwrap_or(false);
            let _ = shared.answered[seq].set(shared.started.elapsed().as_micros() as u64);
            ok
        }));
    }
    let mut created = 0;
    for post in posts {
        created += u64::from(post.await.unwrap_or(false));
    }
    let publish_secs = publishing.elapsed().as_secs_f64();
    let expected = created * (connections - refused);
    let deadline = Instant::now() + Duration::from_secs(15);
    while shared.frames.load(Ordering::Relaxed) < expected && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let delivered = shared.frames.load(Ordering::Relaxed);
    let delivery_secs = publishing.elapsed().as_secs_f64();
    let cpu = cpu_secs(clients_pid) - cpu_before;
    let own_cpu = cpu_secs(std::process::id()) - own_cpu_before;
    let mut latencies = shared.latencies_us.lock().expect("not poisoned").clone();
    latencies.sort_unstable();
    let mut fanout = shared.fanout_us.lock().expect("not poisoned").clone();
    fanout.sort_unstable();

    println!(
        "published: {created} events in {publish_secs:.1} s ({:.0}/s)",
        created as f64 / publish_secs
    );
    println!(
        "delivered: {delivered} of {expected} frames ({:.0} frames/s); clients closed by the server: {}",
        delivered as f64 / delivery_secs,
        shared.closed.load(Ordering::Relaxed) - refused
    );
    println!(
        "server CPU while publishing: {cpu:.2} s, {:.2} µs a frame delivered",
        cpu * 1e6 / delivered.max(1) as f64
    );
    // Both processes share the machine's cores: a broadcast cannot reach its last client before
    // the CPU it costs on both sides, spread over every core, has been spent.
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get()) as f64;
    let per_frame_us = (cpu + own_cpu) * 1e6 / delivered.max(1) as f64;
    println!(
        "load tool CPU: {own_cpu:.2} s, {:.2} µs a frame; one broadcast's CPU over {cores} cores: {:.1} ms",
        own_cpu * 1e6 / delivered.max(1) as f64,
        per_frame_us * (connections - refused) as f64 / cores / 1000.0
    );
    println!(
        "latency POST sent → event received ({} samples): p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        latencies.len(),
        percentile(&latencies, 0.50),
        percentile(&latencies, 0.99),
        percentile(&latencies, 1.0)
    );
    println!(
        "latency POST answered → event received: p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        percentile(&fanout, 0.50),
        percentile(&fanout, 0.99),
        percentile(&fanout, 1.0)
    );

    let _ = shop.kill();
    let _ = shop.wait();
    if let Some((child, _)) = listening.as_mut() {
        let _ = child.kill();
        let _ = child.wait();
    }
    for task in tasks {
        task.abort();
    }
    let _ = std::fs::remove_dir_all(&dir);
}
