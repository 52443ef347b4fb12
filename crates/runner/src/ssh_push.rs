//! Pushing to a mirror with its own SSH key: for one job, a private directory (mode 700, removed
//! afterwards) holds the key the edge leased (an OpenSSH private key file, mode 600) and the
//! target's known hosts, and git reaches the target through `GIT_SSH_COMMAND` with exactly that
//! key and those hosts. Host keys are always checked (`StrictHostKeyChecking=yes`); only a mirror
//! with no known hosts yet accepts the key its target offers (`accept-new`), which the node then
//! reports for the edge to keep. The seed never reaches a log line or a command line.

use std::path::PathBuf;

use mirrorfarm_core::nodes::LeasedSsh;
use russh::keys::PrivateKey;
use russh::keys::ssh_key::LineEnding;
use russh::keys::ssh_key::private::{Ed25519Keypair, KeypairData};

/// Why a job's SSH set-up failed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum SshPushError {
    /// The leased key is not a 32-byte seed in hex.
    #[error("the mirror's SSH key could not be read")]
    BadSeed,
    /// The job's private directory or files could not be written.
    #[error("the mirror's SSH key could not be written: {0}")]
    Io(#[from] std::io::Error),
}

/// One job's SSH key and known hosts on disk, removed when dropped.
pub(crate) struct SshSession {
    dir: PathBuf,
    key: PathBuf,
    known_hosts: PathBuf,
    learning: bool,
}

impl SshSession {
    /// Writes the key and known hosts of `leased` into a fresh private directory for job `job_id`.
    pub(crate) fn open(job_id: i64, leased: &LeasedSsh) -> Result<Self, SshPushError> {
        let mut seed = [0u8; 32];
        let decoded = mirrorfarm_core::hex::decode(&leased.private_seed).filter(|s| s.len() == 32);
        let Some(mut decoded) = decoded else { return Err(SshPushError::BadSeed) };
        seed.copy_from_slice(&decoded);
        decoded.fill(0);
        let key = PrivateKey::new(KeypairData::Ed25519(Ed25519Keypair::from_seed(&seed)), "mirrorfarm mirror");
        seed.fill(0);
        let text =
            key.map_err(|_| SshPushError::BadSeed)?.to_openssh(LineEnding::LF).map_err(|_| SshPushError::BadSeed)?;
        let mut nonce = [0u8; 8];
        ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut nonce)
            .map_err(|_| std::io::Error::other("no random bytes"))?;
        let dir =
            std::env::temp_dir().join(format!("mirrorfarm-ssh-{job_id}-{}", mirrorfarm_core::hex::encode(&nonce)));
        let mut builder = std::fs::DirBuilder::new();
        #[cfg(unix)]
        std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
        builder.create(&dir)?;
        // From here on the directory is removed on every path (the session's Drop).
        let session = Self {
            key: dir.join("id_ed25519"),
            known_hosts: dir.join("known_hosts"),
            learning: leased.known_hosts.as_deref().is_none_or(|h| h.trim().is_empty()),
            dir,
        };
        crate::ssh::write_private(&session.key, text.as_bytes())?;
        let hosts = leased.known_hosts.as_deref().unwrap_or_default();
        crate::ssh::write_private(&session.known_hosts, format!("{}\n", hosts.trim()).as_bytes())?;
        Ok(session)
    }

    /// `GIT_SSH_COMMAND`: this key only, these known hosts only, no configuration or agent of the
    /// machine's, never a prompt.
    pub(crate) fn command(&self) -> String {
        let checking = if self.learning { "accept-new" } else { "yes" };
        format!(
            "ssh -F /dev/null -i '{}' -o IdentitiesOnly=yes -o IdentityAgent=none -o BatchMode=yes \
             -o UserKnownHostsFile='{}' -o GlobalKnownHostsFile=/dev/null -o HashKnownHosts=no \
             -o StrictHostKeyChecking={checking}",
            self.key.display(),
            self.known_hosts.display()
        )
    }

    /// The `known_hosts` lines learned on this (first) push, if the mirror had none.
    pub(crate) fn learned(&self) -> Option<String> {
        if !self.learning {
            return None;
        }
        let text = std::fs::read_to_string(&self.known_hosts).ok()?;
        let lines: Vec<&str> = text.lines().map(str::trim).filter(|l| !l.is_empty()).collect();
        (!lines.is_empty()).then(|| lines.join("\n"))
    }
}

impl Drop for SshSession {
    fn drop(&mut self) {
        if let Err(e) = std::fs::remove_dir_all(&self.dir) {
            tracing::warn!(error = %e, "could not remove a job's SSH directory");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_key_is_private_checked_by_ssh_keygen_and_removed_afterwards() {
        let leased = LeasedSsh { private_seed: "07".repeat(32), known_hosts: None };
        let session = SshSession::open(1, &leased).expect("written");
        let dir = session.dir.clone();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = |p: &std::path::Path| std::fs::metadata(p).expect("exists").permissions().mode() & 0o777;
            assert_eq!((mode(&dir), mode(&session.key)), (0o700, 0o600));
        }
        let public = std::process::Command::new("ssh-keygen").arg("-y").arg("-f").arg(&session.key).output();
        if let Ok(out) = public {
            assert!(String::from_utf8_lossy(&out.stdout).starts_with("ssh-ed25519 "), "{out:?}");
        }
        assert!(session.command().contains("StrictHostKeyChecking=accept-new"));
        assert!(!session.command().contains("StrictHostKeyChecking=no"));
        assert_eq!(session.learned(), None);
        drop(session);
        assert!(!dir.exists());
        let pinned = LeasedSsh { private_seed: "07".repeat(32), known_hosts: Some("h ssh-ed25519 AAAA".into()) };
        assert!(SshSession::open(2, &pinned).expect("written").command().contains("StrictHostKeyChecking=yes"));
        assert!(matches!(
            SshSession::open(3, &LeasedSsh { private_seed: "zz".into(), known_hosts: None }),
            Err(SshPushError::BadSeed)
        ));
    }
}
