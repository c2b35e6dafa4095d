//! What in the spill directory is ours, and opening it without following links.
//!
//! "Ours" is decided from the inode (`lstat` while listing, `fstat` once opened), never
//! from a name: a regular file, owned by the effective user, that neither group nor others
//! may write, with one name (a second link could be a name someone else controls). The
//! directory must be a real directory owned by the effective user; it is set to 0700.
//! Segments are created 0600 with `O_CREAT|O_EXCL|O_NOFOLLOW` and opened with
//! `O_NOFOLLOW|O_NONBLOCK` (a FIFO planted under a segment's name cannot block the open).

use std::fs::{self, File, Metadata, OpenOptions};
use std::io;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;

/// The directory's mode: the extension's user only.
pub const DIR_MODE: u32 = 0o700;
/// A segment's mode: spilled telemetry is for the extension's user only.
pub const FILE_MODE: u32 = 0o600;

/// The effective user id: who "ours" means.
#[allow(unsafe_code)]
pub fn euid() -> u32 {
    // SAFETY: geteuid(2) takes no argument, touches no memory and cannot fail.
    unsafe { libc::geteuid() }
}

/// Whether an entry is ours to read, send and delete.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trust {
    Ours,
    /// A directory, a symbolic link, a FIFO...: not something we create.
    NotAFile,
    /// Owned by another user (the uid).
    Owner(u32),
    /// Group or others may write it (the mode): its content may not be ours.
    Writable(u32),
    /// It has this many names: another one may be in someone else's hands.
    Linked(u64),
}

impl Trust {
    /// The decision, from an inode's type, owner, mode and link count.
    pub fn judge(is_file: bool, uid: u32, mode: u32, nlink: u64, euid: u32) -> Trust {
        if !is_file {
            Trust::NotAFile
        } else if uid != euid {
            Trust::Owner(uid)
        } else if mode & 0o022 != 0 {
            Trust::Writable(mode & 0o7777)
        } else if nlink != 1 {
            Trust::Linked(nlink)
        } else {
            Trust::Ours
        }
    }

    pub fn of(meta: &Metadata, euid: u32) -> Trust {
        let is_file = meta.file_type().is_file();
        Trust::judge(is_file, meta.uid(), meta.mode(), meta.nlink(), euid)
    }

    pub fn describe(self) -> String {
        match self {
            Trust::Ours => "ours".into(),
            Trust::NotAFile => "not a regular file".into(),
            Trust::Owner(uid) => format!("owned by uid {uid}"),
            Trust::Writable(mode) => format!("writable by others (mode {mode:04o})"),
            Trust::Linked(n) => format!("has {n} hard links"),
        }
    }
}

/// Why the spill directory was refused.
#[derive(Debug)]
pub enum DirRefused {
    Symlink,
    NotADirectory,
    Owner(u32),
    Io(&'static str, io::Error),
}

/// Opens the spill directory, creating it (and missing parents) 0700; refuses a symbolic
/// link, anything but a directory, and a directory of another user; sets ours to 0700.
/// Returns its mode before, when that had to be tightened.
pub fn open_dir(dir: &Path, euid: u32) -> Result<Option<u32>, DirRefused> {
    match fs::symlink_metadata(dir) {
        Ok(m) if m.file_type().is_symlink() => return Err(DirRefused::Symlink),
        Ok(m) if !m.is_dir() => return Err(DirRefused::NotADirectory),
        Ok(_) => {}
        // Missing (or a parent is not a directory: creating says so best).
        Err(_) => fs::DirBuilder::new()
            .recursive(true)
            .mode(DIR_MODE)
            .create(dir)
            .map_err(|e| DirRefused::Io("create the directory", e))?,
    }
    // What was checked by name is checked again on the open directory itself: a link
    // swapped in meanwhile fails the open (ELOOP), and fstat/fchmod act on what we hold.
    let opened = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_DIRECTORY | libc::O_NOFOLLOW)
        .open(dir);
    let handle = opened.map_err(|e| match e.raw_os_error() {
        Some(libc::ELOOP) => DirRefused::Symlink,
        Some(libc::ENOTDIR) => DirRefused::NotADirectory,
        _ => DirRefused::Io("open the directory", e),
    })?;
    let meta = handle
        .metadata()
        .map_err(|e| DirRefused::Io("open the directory", e))?;
    if meta.uid() != euid {
        return Err(DirRefused::Owner(meta.uid()));
    }
    let mode = meta.mode() & 0o7777;
    if mode == DIR_MODE {
        return Ok(None);
    }
    handle
        .set_permissions(fs::Permissions::from_mode(DIR_MODE))
        .map_err(|e| DirRefused::Io("restrict the permissions of", e))?;
    Ok(Some(mode))
}

/// Opens an entry for reading if it is ours (checked on the open file); an entry that is
/// not ours gives an error of kind `PermissionDenied` naming why.
pub fn open_ours(path: &Path, euid: u32) -> io::Result<File> {
    let file = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(path)?;
    match Trust::of(&file.metadata()?, euid) {
        Trust::Ours => Ok(file),
        other => Err(not_ours(other)),
    }
}

pub fn not_ours(trust: Trust) -> io::Error {
    let why = format!("not this extension's file: {}", trust.describe());
    io::Error::new(io::ErrorKind::PermissionDenied, why)
}

/// Creates a new segment file, 0600; fails with `AlreadyExists` when the name is taken by
/// anything at all (a file, a directory, a link, dangling or not).
pub fn create(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(FILE_MODE)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)
}
