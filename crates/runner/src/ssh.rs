//! The node's SSH server: read-only git over SSH (`git clone ssh://git@node:port/<key>/<slug>.git`)
//! next to the HTTP clone server, over the same copies and with the same access answer.
//!
//! Any key the client proves it holds gets through authentication; what it may do is decided
//! per command. Only `git-upload-pack '<key>/<slug>.git'` runs (the core's
//! [`mirrorfarm_core::ssh::upload_pack_target`] says which commands are); the node forwards the
//! key to the edge (`POST …/nodes/clone-access` with `sshKey`), which answers for the key's owner
//! with a signed REPO_READ decision, and then pipes the channel through `git upload-pack`.
//! Shells, pushes and every other program are refused with a message on the channel's stderr.
//! The host key is an Ed25519 key made on first start and kept in the data directory
//! (`ssh_host_ed25519_key`, OpenSSH format, mode 600).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use russh::keys::PrivateKey;
use russh::keys::ssh_key::LineEnding;
use russh::keys::ssh_key::private::{Ed25519Keypair, KeypairData};
use russh::server::{Auth, ChannelOpenHandle, Msg, Server as _, Session, VerifiedPublicKey};
use russh::{Channel, ChannelId};
use tokio::io::AsyncWriteExt;
use tracing::{info, warn};

use crate::edge::{EdgeClient, EdgeError};

/// The host key's file in the data directory.
const HOST_KEY_FILE: &str = "ssh_host_ed25519_key";

/// Why the SSH server could not start.
#[derive(Debug, thiserror::Error)]
pub(crate) enum SshServerError {
    /// The host key could not be made, read or written.
    #[error("SSH host key {path}: {message}")]
    HostKey {
        /// The key's file.
        path: PathBuf,
        /// What went wrong.
        message: String,
    },
    /// The address could not be bound or served.
    #[error("SSH server: {0}")]
    Listen(String),
}

/// The node's host key: read from the data directory, or made (from the system's random source)
/// and written there on first start.
fn host_key(data_dir: &Path) -> Result<PrivateKey, SshServerError> {
    let path = data_dir.join(HOST_KEY_FILE);
    let failed = |message: String| SshServerError::HostKey { path: path.clone(), message };
    if path.exists() {
        let text = std::fs::read_to_string(&path).map_err(|e| failed(e.to_string()))?;
        return PrivateKey::from_openssh(text).map_err(|e| failed(e.to_string()));
    }
    let mut seed = [0u8; 32];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut seed)
        .map_err(|_| failed("no random bytes".into()))?;
    let key = PrivateKey::new(KeypairData::Ed25519(Ed25519Keypair::from_seed(&seed)), "mirrorfarm node host key")
        .map_err(|e| failed(e.to_string()))?;
    let text = key.to_openssh(LineEnding::LF).map_err(|e| failed(e.to_string()))?;
    std::fs::create_dir_all(data_dir).map_err(|e| failed(e.to_string()))?;
    write_private(&path, text.as_bytes()).map_err(|e| failed(e.to_string()))?;
    info!(path = %path.display(), "made the SSH host key");
    Ok(key)
}

/// Writes a file only its owner may read.
pub(crate) fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    #[cfg(unix)]
    use std::os::unix::fs::OpenOptionsExt;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    options.mode(0o600);
    options.open(path)?.write_all(bytes)
}

/// Binds `addr` and serves git over SSH of the copies under `data_dir` on a thread of its own,
/// for as long as the process runs. Returns the bound address.
pub(crate) fn spawn(addr: &str, edge: EdgeClient, data_dir: PathBuf) -> Result<std::net::SocketAddr, SshServerError> {
    let key = host_key(&data_dir)?;
    let listener = std::net::TcpListener::bind(addr).map_err(|e| SshServerError::Listen(format!("{addr}: {e}")))?;
    listener.set_nonblocking(true).map_err(|e| SshServerError::Listen(e.to_string()))?;
    let bound = listener.local_addr().map_err(|e| SshServerError::Listen(e.to_string()))?;
    let config = Arc::new(russh::server::Config {
        keys: vec![key],
        auth_rejection_time: std::time::Duration::from_millis(300),
        auth_rejection_time_initial: Some(std::time::Duration::ZERO),
        inactivity_timeout: Some(std::time::Duration::from_secs(600)),
        // As the HTTP clone server: no Nagle delay between a pack's small writes.
        nodelay: true,
        ..Default::default()
    });
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| SshServerError::Listen(e.to_string()))?;
    let mut server = Node { edge, repos: Arc::new(data_dir.join("repos")) };
    std::thread::Builder::new()
        .name("ssh-server".into())
        .spawn(move || {
            runtime.block_on(async move {
                let listener = match tokio::net::TcpListener::from_std(listener) {
                    Ok(l) => l,
                    Err(e) => return warn!(error = %e, "SSH server stopped"),
                };
                if let Err(e) = server.run_on_socket(config, &listener).await {
                    warn!(error = %e, "SSH server stopped");
                }
            });
        })
        .map_err(|e| SshServerError::Listen(e.to_string()))?;
    info!(address = %bound, "serving read-only git over SSH");
    Ok(bound)
}

/// The server: one [`Connection`] per client.
struct Node {
    edge: EdgeClient,
    repos: Arc<PathBuf>,
}

impl russh::server::Server for Node {
    type Handler = Connection;

    fn new_client(&mut self, _peer: Option<std::net::SocketAddr>) -> Connection {
        Connection {
            edge: self.edge.clone(),
            repos: Arc::clone(&self.repos),
            key: None,
            channels: HashMap::new(),
            protocol: HashMap::new(),
        }
    }

    fn handle_session_error(&mut self, error: russh::Error) {
        tracing::debug!(error = %error, "SSH session ended with an error");
    }
}

/// One client's connection.
struct Connection {
    edge: EdgeClient,
    repos: Arc<PathBuf>,
    /// The key the client proved it holds (`<type> <base64>`).
    key: Option<String>,
    /// Session channels opened and not yet running a command.
    channels: HashMap<ChannelId, Channel<Msg>>,
    /// `GIT_PROTOCOL` per channel, as the client's `env` request set it.
    protocol: HashMap<ChannelId, String>,
}

/// Refuses what a channel asked for: the reason on its stderr, exit status 1, closed.
fn refuse(session: &mut Session, channel: ChannelId, message: &str) -> Result<(), russh::Error> {
    session.channel_success(channel)?;
    session.extended_data(channel, 1, format!("{message}\n").into_bytes())?;
    session.exit_status_request(channel, 1)?;
    session.eof(channel)?;
    session.close(channel)
}

impl russh::server::Handler for Connection {
    type Error = russh::Error;

    async fn auth_publickey(&mut self, _user: &str, key: VerifiedPublicKey<'_>) -> Result<Auth, Self::Error> {
        // Whose key it is, and what they may read, the edge answers per repository.
        let text = key.public_key.to_openssh().map_err(|e| russh::Error::from(russh::keys::Error::from(e)))?;
        self.key = Some(without_comment(&text));
        Ok(Auth::Accept)
    }

    async fn channel_open_session(
        &mut self,
        channel: Channel<Msg>,
        reply: ChannelOpenHandle,
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        self.channels.insert(channel.id(), channel);
        reply.accept().await;
        Ok(())
    }

    async fn env_request(
        &mut self,
        channel: ChannelId,
        name: &str,
        value: &str,
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        // Only the wire protocol version is taken (git sends it for protocol v2).
        if name == "GIT_PROTOCOL" && value.len() < 256 {
            self.protocol.insert(channel, value.to_owned());
            return session.channel_success(channel);
        }
        session.channel_failure(channel)
    }

    async fn pty_request(
        &mut self,
        channel: ChannelId,
        _term: &str,
        _col_width: u32,
        _row_height: u32,
        _pix_width: u32,
        _pix_height: u32,
        _modes: &[(russh::Pty, u32)],
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        session.channel_failure(channel)
    }

    async fn shell_request(&mut self, channel: ChannelId, session: &mut Session) -> Result<(), Self::Error> {
        refuse(
            session,
            channel,
            "This farm node serves read-only git over SSH: no shell. Clone with git clone ssh://…/<project>/<repo>.git.",
        )
    }

    async fn subsystem_request(
        &mut self,
        channel: ChannelId,
        name: &str,
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        let name: String = name.chars().take(64).collect();
        refuse(session, channel, &format!("This farm node serves read-only git over SSH: no {name:?} subsystem."))
    }

    async fn exec_request(
        &mut self,
        channel: ChannelId,
        data: &[u8],
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        let command = String::from_utf8_lossy(data);
        let (key_name, slug) = match mirrorfarm_core::ssh::upload_pack_target(&command) {
            Ok(target) => target,
            Err(why) => return refuse(session, channel, &why.to_string()),
        };
        let (Some(open), Some(key)) = (self.channels.remove(&channel), self.key.clone()) else {
            return refuse(session, channel, "No session to run the command in.");
        };
        session.channel_success(channel)?;
        let protocol = self.protocol.remove(&channel).unwrap_or_default();
        let (edge, repos) = (self.edge.clone(), Arc::clone(&self.repos));
        tokio::spawn(async move {
            let (read, write) = open.split();
            let status = match serve(&edge, &repos, &key_name, &slug, key, &protocol, read, &write).await {
                Ok(status) => status,
                Err(message) => {
                    let _ = write.extended_data_bytes(1, format!("{message}\n").into_bytes()).await;
                    1
                }
            };
            let _ = write.exit_status(status).await;
            let _ = write.eof().await;
            let _ = write.close().await;
        });
        Ok(())
    }
}

/// `<type> <base64>` of an OpenSSH public key line (its comment dropped).
fn without_comment(text: &str) -> String {
    text.split(' ').take(2).collect::<Vec<_>>().join(" ")
}

/// Asks the edge whether `key` may read `key_name/slug`, then runs `git upload-pack` on its copy
/// with the channel as its stdin and stdout (its stderr to the channel's). The exit status, or
/// the message to show the client.
#[allow(clippy::too_many_arguments)] // one clone's whole context
async fn serve(
    edge: &EdgeClient,
    repos: &Path,
    key_name: &str,
    slug: &str,
    key: String,
    protocol: &str,
    mut read: russh::ChannelReadHalf,
    write: &russh::ChannelWriteHalf<Msg>,
) -> Result<u32, String> {
    let asked = {
        let (edge, key_name, slug) = (edge.clone(), key_name.to_owned(), slug.to_owned());
        tokio::task::spawn_blocking(move || edge.clone_access_by_key(&key_name, &slug, &key)).await
    };
    let id = match asked {
        Ok(Ok(id)) => id,
        Ok(Err(EdgeError::Status { status: 401, .. })) => {
            return Err(
                "Permission denied: this SSH key is not registered to any user (add it under your SSH keys).".into()
            );
        }
        Ok(Err(EdgeError::Status { status: 404, .. })) => {
            return Err(format!("Repository {key_name}/{slug} not found, or you may not read it."));
        }
        Ok(Err(e)) => {
            warn!(error = %e, "SSH clone access check failed");
            return Err("The farm could not check access; try again.".into());
        }
        Err(_) => return Err("The access check did not finish.".into()),
    };
    let dir = repos.join(format!("{id}.git"));
    if !dir.join("HEAD").exists() {
        return Err("This node holds no copy of that repository.".into());
    }
    info!(repository = id, "serving a clone over SSH");
    let mut child = tokio::process::Command::new("git")
        .arg("upload-pack")
        .arg("--strict")
        .arg(&dir)
        .env("GIT_PROTOCOL", protocol)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| {
            warn!(error = %e, "git upload-pack did not start");
            "The clone could not be served.".to_owned()
        })?;
    let (Some(mut stdin), Some(stdout), Some(stderr)) = (child.stdin.take(), child.stdout.take(), child.stderr.take())
    else {
        return Err("The clone could not be served.".into());
    };
    // The client's wants and haves, until it sends EOF (or upload-pack stops reading); the clone
    // is over when upload-pack's output is, whether or not the client has sent EOF by then.
    let feed = tokio::spawn(async move {
        let _ = tokio::io::copy(&mut read.make_reader(), &mut stdin).await;
        let _ = stdin.shutdown().await;
    });
    let answer = async {
        let _ = write.data(stdout).await;
    };
    let errors = async {
        let _ = write.extended_data(1, stderr).await;
    };
    tokio::join!(answer, errors);
    let status = child.wait().await;
    feed.abort();
    let code = status.ok().and_then(|s| s.code()).unwrap_or(1);
    Ok(u32::try_from(code).unwrap_or(1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_host_key_is_made_once_and_kept_private() {
        let dir = std::env::temp_dir().join(format!("mf-ssh-host-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let first = host_key(&dir).expect("made");
        let again = host_key(&dir).expect("read");
        assert_eq!(first.public_key(), again.public_key());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.join(HOST_KEY_FILE)).expect("file").permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_key_line_loses_its_comment() {
        assert_eq!(without_comment("ssh-ed25519 AAAA me@host"), "ssh-ed25519 AAAA");
    }
}
