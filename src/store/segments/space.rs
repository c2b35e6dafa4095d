//! How much the spill may still write: the filesystem's free space (`statvfs`, one of the
//! extension's two `unsafe` calls, with `geteuid` in `owner`) minus the reserve left to the
//! function.

use std::io;
use std::path::Path;

/// Free space left to the function: at least this much...
pub const RESERVE_MIN_BYTES: u64 = 32 * 1024 * 1024;
/// ...or one part in this many of the filesystem, whichever is larger.
pub const RESERVE_DIVISOR: u64 = 10;

/// Size and free space of a filesystem, in bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FsSpace {
    pub total: u64,
    /// Free to unprivileged users (`f_bavail`): what the function could still write.
    pub available: u64,
}

/// Reads a filesystem's free space: [`statvfs`] in production, a script in tests.
pub type Probe = Box<dyn FnMut(&Path) -> io::Result<FsSpace> + Send>;

/// What the store leaves free for the function: a tenth of the filesystem, at least
/// 32 MiB (Lambda's `/tmp` is 512 MiB to 10 GiB: 51 MiB to 1 GiB stay free).
pub fn reserve(total: u64) -> u64 {
    (total / RESERVE_DIVISOR).max(RESERVE_MIN_BYTES)
}

/// Bytes the store may still write on a filesystem in this state.
pub fn writable_room(space: FsSpace) -> u64 {
    space.available.saturating_sub(reserve(space.total))
}

/// The size and free space of the filesystem holding `path`, from `statvfs(3)`.
#[allow(unsafe_code)]
#[allow(clippy::useless_conversion)] // the field types are narrower than u64 on some targets
pub fn statvfs(path: &Path) -> io::Result<FsSpace> {
    use std::os::unix::ffi::OsStrExt;
    let c_path = std::ffi::CString::new(path.as_os_str().as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "path contains a NUL byte"))?;
    let mut buf = std::mem::MaybeUninit::<libc::statvfs>::zeroed();
    // SAFETY: `c_path` is NUL-terminated and outlives the call; `buf` is writable memory of
    // the size and alignment of `struct statvfs`. The struct holds only integers, for which
    // all-zero bytes are valid, so it is initialised whatever the call writes into it.
    let buf = unsafe {
        if libc::statvfs(c_path.as_ptr(), buf.as_mut_ptr()) != 0 {
            return Err(io::Error::last_os_error());
        }
        buf.assume_init()
    };
    let block = u64::from(if buf.f_frsize != 0 {
        buf.f_frsize
    } else {
        buf.f_bsize
    });
    Ok(FsSpace {
        total: u64::from(buf.f_blocks).saturating_mul(block),
        available: u64::from(buf.f_bavail).saturating_mul(block),
    })
}
