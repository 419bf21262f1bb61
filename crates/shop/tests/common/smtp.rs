//! A real SMTP server on a loopback port, small enough to steer: it can refuse the first
//! transactions (451, a temporary refusal), refuse them all, or take its time before
//! accepting a message. It records every message it accepts.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};

#[derive(Debug, Clone, Default)]
pub struct Behaviour {
    /// Refuse this many transactions with 451 before accepting.
    pub refuse_first: usize,
    /// Refuse every transaction.
    pub refuse_all: bool,
    /// Wait this long before answering the end of DATA.
    pub delay: Duration,
}

#[derive(Debug, Clone)]
pub struct Mail {
    pub from: String,
    pub to: Vec<String>,
    pub data: String,
}

#[derive(Debug, Default)]
struct State {
    transactions: usize,
    accepted: Vec<Mail>,
}

#[derive(Clone)]
pub struct SmtpSink {
    pub port: u16,
    state: Arc<Mutex<State>>,
    task: Arc<tokio::task::JoinHandle<()>>,
}

impl SmtpSink {
    pub async fn start(behaviour: Behaviour) -> Self {
        Self::start_on(0, behaviour).await
    }

    pub async fn start_on(port: u16, behaviour: Behaviour) -> Self {
        let listener = TcpListener::bind(("127.0.0.1", port)).await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let state = Arc::new(Mutex::new(State::default()));
        let shared = state.clone();
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let (state, behaviour) = (shared.clone(), behaviour.clone());
                tokio::spawn(async move {
                    let _ = session(stream, state, behaviour).await;
                });
            }
        });
        SmtpSink {
            port,
            state,
            task: Arc::new(task),
        }
    }

    pub fn url(&self) -> String {
        format!("smtp://127.0.0.1:{}", self.port)
    }

    /// Messages accepted so far.
    pub fn accepted(&self) -> Vec<Mail> {
        self.state.lock().unwrap().accepted.clone()
    }

    /// Transactions begun (MAIL FROM), refused or not.
    pub fn transactions(&self) -> usize {
        self.state.lock().unwrap().transactions
    }

    pub fn stop(&self) {
        self.task.abort();
    }
}

async fn session(
    stream: TcpStream,
    state: Arc<Mutex<State>>,
    behaviour: Behaviour,
) -> std::io::Result<()> {
    let (read, mut write) = stream.into_split();
    let mut lines = BufReader::new(read);
    write.write_all(b"220 sink.test ESMTP ready\r\n").await?;
    let mut from = String::new();
    let mut to = Vec::new();
    let mut line = String::new();
    loop {
        line.clear();
        if lines.read_line(&mut line).await? == 0 {
            return Ok(());
        }
        let command = line.trim_end().to_ascii_uppercase();
        let reply: &[u8] = if command.starts_with("EHLO") {
            b"250-sink.test\r\n250 8BITMIME\r\n"
        } else if command.starts_with("HELO") {
            b"250 sink.test\r\n"
        } else if command.starts_with("MAIL FROM:") {
            let refuse = {
                let mut s = state.lock().unwrap();
                s.transactions += 1;
                behaviour.refuse_all || s.transactions <= behaviour.refuse_first
            };
            if refuse {
                b"451 4.3.0 try again later\r\n"
            } else {
                from = line.trim_end()[10..].trim().to_owned();
                to.clear();
                b"250 OK\r\n"
            }
        } else if command.starts_with("RCPT TO:") {
            to.push(
                line.trim_end()[8..]
                    .trim()
                    .trim_matches(['<', '>'])
                    .to_owned(),
            );
            b"250 OK\r\n"
        } else if command == "DATA" {
            write.write_all(b"354 end with <CRLF>.<CRLF>\r\n").await?;
            let mut data = String::new();
            loop {
                line.clear();
                if lines.read_line(&mut line).await? == 0 {
                    return Ok(());
                }
                if line == ".\r\n" {
                    break;
                }
                data.push_str(&line);
            }
            tokio::time::sleep(behaviour.delay).await;
            state.lock().unwrap().accepted.push(Mail {
                from: from.clone(),
                to: to.clone(),
                data,
            });
            b"250 OK queued\r\n"
        } else if command == "QUIT" {
            write.write_all(b"221 bye\r\n").await?;
            return Ok(());
        } else if command == "RSET" || command == "NOOP" {
            b"250 OK\r\n"
        } else {
            b"502 command not implemented\r\n"
        };
        write.write_all(reply).await?;
    }
}
