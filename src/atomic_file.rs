//! Replacing a user's file safely: the one writer behind `setup-client
//! --write`, `import --write` and `install`.
//!
//! These commands rewrite files other programs read at any moment (a
//! client's config, the daemon's config, systemd units) and that can hold
//! tokens. So every write goes to a temporary file in the target's own
//! directory (`tempfile::NamedTempFile`, created 0600, so a secret is never
//! readable by others even for a moment), gets the intended permission bits,
//! is synced, and is renamed over the target (`persist`): a reader sees the
//! old file or the new one, never half of one, and a failed write leaves the
//! old file untouched and no temporary file behind. A symlinked target
//! (dotfiles) is written through, so the link stays.

use std::fs;
use std::io::{self, Write as _};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

/// The file a write to `path` should replace: `path` itself, or the file a
/// symlink (chain) points to, so the link survives.
pub fn resolve_symlink(path: &Path) -> io::Result<PathBuf> {
    match fs::symlink_metadata(path) {
        Ok(m) if m.file_type().is_symlink() => fs::canonicalize(path),
        _ => Ok(path.to_path_buf()),
    }
}

/// The permission bits of an existing `path`, or `None` when it does not exist.
pub fn existing_mode(path: &Path) -> io::Result<Option<u32>> {
    match fs::metadata(path) {
        Ok(m) => Ok(Some(m.permissions().mode() & 0o7777)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// Replaces `target` with `bytes`, with permission bits `mode` exactly (the
/// umask does not apply). `target`'s directory must exist.
pub fn write(target: &Path, bytes: &[u8], mode: u32) -> io::Result<()> {
    let dir = match target.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let mut tmp = tempfile::Builder::new()
        .prefix(".stdioproxy-")
        .suffix(".tmp")
        .tempfile_in(dir)?;
    tmp.write_all(bytes)?;
    tmp.as_file()
        .set_permissions(fs::Permissions::from_mode(mode))?;
    tmp.as_file().sync_all()?;
    tmp.persist(target).map_err(|e| e.error)?;
    // Make the rename durable; failing that is not worth an error.
    if let Ok(d) = fs::File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

/// Creates `dir` and its missing parents with mode 0700 (the directories
/// these files live in hold secrets too). Existing directories are left as
/// they are.
pub fn create_private_dir(dir: &Path) -> io::Result<()> {
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
}

/// Copies `bytes` (the previous content of `file`) to
/// `<file>.bak.<unix-seconds>` (with `.N` appended if that exists), with
/// permission bits `mode`. Returns the backup's path.
pub fn backup(file: &Path, bytes: &[u8], mode: u32) -> io::Result<PathBuf> {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let mut base = file.as_os_str().to_owned();
    base.push(format!(".bak.{secs}"));
    for n in 0..1000u32 {
        let mut candidate = base.clone();
        if n > 0 {
            candidate.push(format!(".{n}"));
        }
        let candidate = PathBuf::from(candidate);
        let opened = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode & 0o777)
            .open(&candidate);
        let mut f = match opened {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(with_path(e, "create the backup", &candidate)),
        };
        let written = f
            .write_all(bytes)
            .and_then(|()| f.set_permissions(fs::Permissions::from_mode(mode & 0o777)))
            .and_then(|()| f.sync_all());
        return match written {
            Ok(()) => Ok(candidate),
            Err(e) => {
                let _ = fs::remove_file(&candidate);
                Err(with_path(e, "write the backup", &candidate))
            }
        };
    }
    Err(io::Error::new(
        io::ErrorKind::AlreadyExists,
        format!(
            "cannot create a backup of {}: too many backups this second",
            file.display()
        ),
    ))
}

fn with_path(e: io::Error, action: &str, path: &Path) -> io::Error {
    io::Error::new(e.kind(), format!("cannot {action} {}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mode_of(p: &Path) -> u32 {
        fs::metadata(p).expect("metadata").permissions().mode() & 0o777
    }

    fn names(dir: &Path) -> Vec<String> {
        let mut v: Vec<String> = fs::read_dir(dir)
            .expect("read_dir")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    }

    #[test]
    fn writes_with_exact_mode_and_leaves_no_temporary_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let f = dir.path().join("a.json");
        write(&f, b"one", 0o640).expect("write");
        assert_eq!(fs::read_to_string(&f).expect("read"), "one");
        assert_eq!(mode_of(&f), 0o640);
        write(&f, b"two", 0o600).expect("rewrite");
        assert_eq!(fs::read_to_string(&f).expect("read"), "two");
        assert_eq!(mode_of(&f), 0o600);
        assert_eq!(names(dir.path()), vec!["a.json"]);
    }

    #[test]
    fn a_failed_write_keeps_the_old_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        // The target is a directory: the rename fails.
        let target = dir.path().join("d");
        fs::create_dir(&target).expect("mkdir");
        fs::write(target.join("x"), "keep").expect("write");
        assert!(write(&target, b"new", 0o600).is_err());
        assert_eq!(names(dir.path()), vec!["d"]);
        assert_eq!(fs::read_to_string(target.join("x")).expect("x"), "keep");
    }

    #[test]
    fn backups_are_numbered_within_a_second() {
        let dir = tempfile::tempdir().expect("tempdir");
        let f = dir.path().join("c.toml");
        let a = backup(&f, b"a", 0o600).expect("backup");
        let b = backup(&f, b"b", 0o640).expect("backup");
        assert_ne!(a, b);
        assert_eq!(fs::read_to_string(&a).expect("a"), "a");
        assert_eq!(fs::read_to_string(&b).expect("b"), "b");
        assert_eq!(mode_of(&b), 0o640);
        assert!(a.to_string_lossy().contains("c.toml.bak."));
    }

    #[test]
    fn private_dirs_and_symlinks() {
        let dir = tempfile::tempdir().expect("tempdir");
        let deep = dir.path().join("x/y");
        create_private_dir(&deep).expect("mkdir");
        assert_eq!(mode_of(&deep), 0o700);
        assert_eq!(mode_of(&dir.path().join("x")), 0o700);

        let real = dir.path().join("real");
        fs::write(&real, "r").expect("write");
        let link = dir.path().join("link");
        std::os::unix::fs::symlink(&real, &link).expect("symlink");
        let target = resolve_symlink(&link).expect("resolve");
        assert_eq!(target, fs::canonicalize(&real).expect("canonical"));
        write(&target, b"new", 0o600).expect("write");
        assert!(fs::symlink_metadata(&link)
            .expect("meta")
            .file_type()
            .is_symlink());
        assert_eq!(fs::read_to_string(&link).expect("read"), "new");
        assert_eq!(existing_mode(&dir.path().join("none")).expect("mode"), None);
        assert_eq!(existing_mode(&real).expect("mode"), Some(0o600));
    }
}
