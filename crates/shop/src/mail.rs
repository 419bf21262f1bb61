//! Outgoing email: over SMTP when `SMTP_URL` is set, otherwise written as `.eml` files into
//! `SHOP_MAIL_DIR`, which is what a developer reads on the embedded default.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use keel::jobs::JobError;
use lettre::message::header::ContentType;
use lettre::message::Mailbox;
use lettre::transport::smtp::AsyncSmtpTransport;
use lettre::{AsyncFileTransport, AsyncTransport, Message, Tokio1Executor};

/// The subject of the mail every new user gets.
pub const WELCOME_SUBJECT: &str = "Welcome to our service!";

/// Why the mailer could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum MailSetupError {
    #[error("invalid SMTP_URL: {0}")]
    SmtpUrl(#[from] lettre::transport::smtp::Error),
    #[error("cannot create the mail folder {path}: {source}")]
    Folder {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("invalid sender address {0:?}")]
    From(String),
}

/// Where mail goes.
#[derive(Clone)]
pub struct Mailer {
    from: Mailbox,
    transport: Transport,
}

#[derive(Clone)]
enum Transport {
    Smtp(AsyncSmtpTransport<Tokio1Executor>),
    /// Files are written two at a time: files created in one folder from many threads at once
    /// queue on the folder's lock in the kernel, spinning.
    Files(
        AsyncFileTransport<Tokio1Executor>,
        Arc<tokio::sync::Semaphore>,
    ),
}

/// `.eml` files written at once.
const FILE_WRITERS: usize = 2;

impl std::fmt::Debug for Mailer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let transport = match self.transport {
            Transport::Smtp(_) => "smtp",
            Transport::Files(..) => "files",
        };
        f.debug_struct("Mailer")
            .field("from", &self.from.to_string())
            .field("transport", &transport)
            .finish()
    }
}

impl Mailer {
    /// SMTP to `smtp_url` when given (`smtp://[user:pass@]host[:port]`), else files in `dir`.
    pub fn new(smtp_url: Option<&str>, dir: &Path, from: &str) -> Result<Self, MailSetupError> {
        let from: Mailbox = from
            .parse()
            .map_err(|_| MailSetupError::From(from.to_owned()))?;
        let transport = match smtp_url {
            Some(url) => {
                Transport::Smtp(AsyncSmtpTransport::<Tokio1Executor>::from_url(url)?.build())
            }
            None => {
                std::fs::create_dir_all(dir).map_err(|source| MailSetupError::Folder {
                    path: dir.to_owned(),
                    source,
                })?;
                Transport::Files(
                    AsyncFileTransport::new(dir),
                    Arc::new(tokio::sync::Semaphore::new(FILE_WRITERS)),
                )
            }
        };
        Ok(Mailer { from, transport })
    }

    /// Sends the welcome mail to a new user. SMTP answers that say "never" (5xx) make the job
    /// dead at once; anything else (refused connection, 4xx, timeout) is worth a retry.
    pub async fn send_welcome(&self, to: &str, username: &str) -> Result<(), JobError> {
        let to: Mailbox = to
            .parse()
            .map_err(|e| JobError::permanent(format!("invalid recipient: {e}")))?;
        let message = Message::builder()
            .from(self.from.clone())
            .to(to)
            .subject(WELCOME_SUBJECT)
            .header(ContentType::TEXT_PLAIN)
            .body(format!(
                "Hello {username},\n\nwelcome to our service! Your account is ready.\n"
            ))
            .map_err(|e| JobError::permanent(format!("cannot build the message: {e}")))?;
        match &self.transport {
            Transport::Smtp(smtp) => match smtp.send(message).await {
                Ok(_) => Ok(()),
                Err(err) if err.is_permanent() => Err(JobError::permanent(format!("SMTP: {err}"))),
                Err(err) => Err(JobError::retry(format!("SMTP: {err}"))),
            },
            Transport::Files(files, writers) => {
                let _turn = writers
                    .acquire()
                    .await
                    .map_err(|_| JobError::retry("the mailer is shutting down"))?;
                files
                    .send(message)
                    .await
                    .map(drop)
                    .map_err(|err| JobError::retry(format!("writing the .eml file: {err}")))
            }
        }
    }
}
