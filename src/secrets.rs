//! The master key: the root of the keys sluice signs URLs with and encrypts secrets under.
//!
//! It comes from `SLUICE_MASTER_KEY` (32 bytes, base64) or, when that is unset, from the file
//! `master.key` in the data directory, created with mode 0600 on first start. Every process of
//! one deployment must use the same key, so multi-process deployments set the variable.
//!
//! [`SecretBox`] encrypts secrets that sluice must read back later (webhook signing secrets,
//! storage connection credentials) with ChaCha20-Poly1305 under a key derived from the master
//! key.

use std::path::Path;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, Mac};
use ring::aead::{Aad, CHACHA20_POLY1305, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use sha2::Sha256;

use crate::config::ConfigError;

/// The prefix of a sealed secret, naming the format so that it can change later.
const SEALED_PREFIX: &str = "v1:";

/// Encrypts and authenticates secrets at rest. Each purpose gets its own key, derived from the
/// master key, and each sealed value is bound to a context (such as the id of the record that
/// holds it), so that a sealed value copied to another record does not open.
pub struct SecretBox {
    key: LessSafeKey,
}

impl SecretBox {
    /// A box whose key is derived from `master_key` for `purpose`.
    pub fn new(master_key: &[u8; 32], purpose: &str) -> Self {
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(master_key)
            .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"));
        mac.update(purpose.as_bytes());
        let derived = mac.finalize().into_bytes();
        let key = UnboundKey::new(&CHACHA20_POLY1305, &derived)
            .unwrap_or_else(|_| unreachable!("a SHA-256 output is a ChaCha20 key"));
        Self { key: LessSafeKey::new(key) }
    }

    /// Encrypts `secret` for `context`; the result is text fit for a JSON record.
    pub fn seal(&self, secret: &str, context: &str) -> String {
        let nonce_bytes: [u8; NONCE_LEN] = rand::random();
        let mut sealed = secret.as_bytes().to_vec();
        let nonce = Nonce::assume_unique_for_key(nonce_bytes);
        // Sealing fails only for inputs of about 256 GiB, which no secret is.
        if self.key.seal_in_place_append_tag(nonce, Aad::from(context), &mut sealed).is_err() {
            sealed.clear();
        }
        let mut out = nonce_bytes.to_vec();
        out.extend(sealed);
        format!("{SEALED_PREFIX}{}", STANDARD.encode(out))
    }

    /// Decrypts a value [`seal`](Self::seal) made for the same context; `None` when it was
    /// made under another key or context, or was altered.
    pub fn open(&self, sealed: &str, context: &str) -> Option<String> {
        let raw = STANDARD.decode(sealed.strip_prefix(SEALED_PREFIX)?).ok()?;
        if raw.len() < NONCE_LEN {
            return None;
        }
        let (nonce, ciphertext) = raw.split_at(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce).ok()?;
        let mut buffer = ciphertext.to_vec();
        let plain = self.key.open_in_place(nonce, Aad::from(context), &mut buffer).ok()?;
        String::from_utf8(plain.to_vec()).ok()
    }
}

/// Seals again under `new` a value sealed under `old`, for rotating the master key. A value
/// that already opens under `new` is returned as it is, so that a rotation cut short can be run
/// again with the same keys. `None` when it opens under neither.
pub fn reseal(old: &SecretBox, new: &SecretBox, sealed: &str, context: &str) -> Option<String> {
    if let Some(plain) = old.open(sealed, context) {
        return Some(new.seal(&plain, context));
    }
    new.open(sealed, context).map(|_| sealed.to_string())
}

const KEY_FILE: &str = "master.key";

/// Loads the master key, creating the key file when neither it nor the variable exists.
///
/// # Errors
///
/// A variable that is not 32 bytes of base64, or a key file that cannot be read or written.
pub fn master_key(data_dir: &Path, from_env: Option<&str>) -> Result<[u8; 32], ConfigError> {
    if let Some(raw) = from_env {
        return decode(raw).ok_or_else(|| {
            ConfigError::new("SLUICE_MASTER_KEY", "expected 32 bytes encoded as base64")
        });
    }
    let path = data_dir.join(KEY_FILE);
    let file_error = |e: std::io::Error| {
        ConfigError::new("SLUICE_DATA_DIR", format!("cannot use {}: {e}", path.display()))
    };
    match std::fs::read_to_string(&path) {
        Ok(raw) => decode(raw.trim()).ok_or_else(|| {
            ConfigError::new(
                "SLUICE_DATA_DIR",
                format!("{} is not a sluice master key", path.display()),
            )
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            std::fs::create_dir_all(data_dir).map_err(file_error)?;
            let key: [u8; 32] = rand::random();
            write_private(&path, &STANDARD.encode(key)).map_err(file_error)?;
            Ok(key)
        }
        Err(e) => Err(file_error(e)),
    }
}

/// Replaces the key file in `data_dir` with `key`, for a rotation of a key that came from it.
///
/// # Errors
///
/// The file cannot be written.
pub fn replace_key_file(data_dir: &Path, key: &[u8; 32]) -> std::io::Result<()> {
    let path = data_dir.join(KEY_FILE);
    let staged = data_dir.join(format!("{KEY_FILE}.new"));
    match std::fs::remove_file(&staged) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
        _ => {}
    }
    write_private(&staged, &STANDARD.encode(key))?;
    std::fs::rename(&staged, &path)
}

/// Decodes a master key given as base64.
pub fn decode(raw: &str) -> Option<[u8; 32]> {
    STANDARD.decode(raw.trim()).ok()?.try_into().ok()
}

#[cfg(unix)]
fn write_private(path: &Path, contents: &str) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut file =
        std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(path)?;
    file.write_all(contents.as_bytes())
}

#[cfg(not(unix))]
fn write_private(path: &Path, contents: &str) -> std::io::Result<()> {
    std::fs::write(path, contents)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_file_is_created_once_with_private_mode() {
        let dir = tempfile::tempdir().unwrap();
        let first = master_key(dir.path(), None).unwrap();
        let second = master_key(dir.path(), None).unwrap();
        assert_eq!(first, second);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.path().join(KEY_FILE)).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }

    #[test]
    fn sealed_secrets_open_only_in_their_context() {
        let sealer = SecretBox::new(&[7u8; 32], "test");
        let sealed = sealer.seal("whsec_abc", "wh_1");
        assert!(!sealed.contains("whsec_abc"));
        assert_eq!(sealer.open(&sealed, "wh_1").as_deref(), Some("whsec_abc"));
        assert_eq!(sealer.open(&sealed, "wh_2"), None);
        assert_eq!(SecretBox::new(&[8u8; 32], "test").open(&sealed, "wh_1"), None);
        assert_eq!(SecretBox::new(&[7u8; 32], "other").open(&sealed, "wh_1"), None);
        assert_eq!(sealer.open("v1:garbage", "wh_1"), None);
    }

    #[test]
    fn variable_wins_and_is_checked() {
        let dir = tempfile::tempdir().unwrap();
        let key = STANDARD.encode([3u8; 32]);
        assert_eq!(master_key(dir.path(), Some(&key)).unwrap(), [3u8; 32]);
        let error = master_key(dir.path(), Some("short")).unwrap_err();
        assert_eq!(error.variable, "SLUICE_MASTER_KEY");
    }
}
