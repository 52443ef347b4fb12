//! Delivers a leased mail over SMTP with `lettre`: plain, STARTTLS (opportunistic or required) or
//! SMTPS, through rustls, trusting the web's roots plus any the node is given
//! (`MIRRORFARM_MAIL_CA_FILE`, for a mail server with a private CA).

use std::path::Path;
use std::time::Duration;

use lettre::message::{Mailbox, MultiPart};
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Certificate, Tls, TlsParameters};
use lettre::{Message, SmtpTransport, Transport};
use mirrorfarm_core::mail::{LeasedMail, MailProtocol};

/// How long one SMTP conversation may stall.
const SMTP_TIMEOUT: Duration = Duration::from_secs(30);

/// Why a mail was not delivered. The text never carries the password.
#[derive(Debug, thiserror::Error)]
pub(crate) enum MailError {
    /// An address the message builder refused.
    #[error("{0:?} is not an address a mail can be sent to: {1}")]
    Address(String, String),
    /// The message could not be put together.
    #[error("the message could not be built: {0}")]
    Message(String),
    /// The extra root certificates could not be read.
    #[error("the mail CA file {0} could not be used: {1}")]
    CaFile(String, String),
    /// The TLS settings could not be built.
    #[error("TLS for {0} could not be set up: {1}")]
    Tls(String, String),
    /// The server could not be reached, refused the mail, or the conversation failed.
    #[error("{0}")]
    Smtp(String),
}

fn mailbox(address: &str) -> Result<Mailbox, MailError> {
    address.parse::<Mailbox>().map_err(|e| MailError::Address(address.to_owned(), e.to_string()))
}

/// Sends `mail` and answers the server's final reply (`250 …`).
pub(crate) fn send(mail: &LeasedMail, ca_file: Option<&Path>) -> Result<String, MailError> {
    let mut message = Message::builder().from(mailbox(&mail.from)?).subject(mail.subject.clone());
    for to in &mail.to {
        message = message.to(mailbox(to)?);
    }
    let message = message
        .multipart(MultiPart::alternative_plain_html(mail.text.clone(), mail.html.clone()))
        .map_err(|e| MailError::Message(e.to_string()))?;

    let server = &mail.server;
    let mut tls = TlsParameters::builder(server.hostname.clone());
    if let Some(path) = ca_file {
        let shown = path.display().to_string();
        let pem = std::fs::read(path).map_err(|e| MailError::CaFile(shown.clone(), e.to_string()))?;
        let certificate = Certificate::from_pem(&pem).map_err(|e| MailError::CaFile(shown, e.to_string()))?;
        tls = tls.add_root_certificate(certificate);
    }
    let tls = tls.build_rustls().map_err(|e| MailError::Tls(server.hostname.clone(), e.to_string()))?;
    let mode = match (server.protocol, server.use_start_tls, server.require_start_tls) {
        (MailProtocol::Smtps, _, _) => Tls::Wrapper(tls),
        (MailProtocol::Smtp, true, true) => Tls::Required(tls),
        (MailProtocol::Smtp, true, false) => Tls::Opportunistic(tls),
        (MailProtocol::Smtp, false, _) => Tls::None,
    };
    let mut transport = SmtpTransport::builder_dangerous(server.hostname.as_str())
        .port(server.port)
        .tls(mode)
        .timeout(Some(SMTP_TIMEOUT));
    if let Some(user) = &server.username {
        transport = transport.credentials(Credentials::new(user.clone(), server.password.clone().unwrap_or_default()));
    }
    let reply = transport
        .build()
        .send(&message)
        .map_err(|e| MailError::Smtp(format!("{}:{}: {e}", server.hostname, server.port)))?;
    Ok(format!("{} {}", reply.code(), reply.message().collect::<Vec<_>>().join(" ")))
}
