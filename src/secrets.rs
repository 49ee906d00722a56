//! The master key: the root of the keys sluice signs URLs with and encrypts secrets under.
//!
//! It comes from `SLUICE_MASTER_KEY` (32 bytes, base64) or, when that is unset, from the file
//! `master.key` in the data directory, created with mode 0600 on first start. Every process of
//! one deployment must use the same key, so multi-process deployments set the variable.

use std::path::Path;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;

use crate::config::ConfigError;

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

fn decode(raw: &str) -> Option<[u8; 32]> {
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
    fn variable_wins_and_is_checked() {
        let dir = tempfile::tempdir().unwrap();
        let key = STANDARD.encode([3u8; 32]);
        assert_eq!(master_key(dir.path(), Some(&key)).unwrap(), [3u8; 32]);
        let error = master_key(dir.path(), Some("short")).unwrap_err();
        assert_eq!(error.variable, "SLUICE_MASTER_KEY");
    }
}
