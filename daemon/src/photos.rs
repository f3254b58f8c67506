//! Photos attached to issues: content-addressed files under `<state_dir>/photos`, each named by
//! the SHA-256 of its bytes (`photos/ab/abcd…`), its type told by the bytes alone.
//!
//! A photo is written atomically (a temporary file in the same directory, fsync, rename, fsync of
//! the directory), so a name that exists always holds the whole photo; writing one that exists
//! already is a no-op. The functions here block: async callers use `spawn_blocking`.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use serde::Serialize;
use sha2::{Digest, Sha256};

/// A photo's name: the SHA-256 of its bytes, lowercase hex.
pub fn name_of(bytes: &[u8]) -> String {
    format!("{:x}", Sha256::digest(bytes))
}

/// How many photos an issue may carry and how large each may be.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PhotoLimits {
    pub max_photo_bytes: usize,
    pub max_photos: usize,
}

impl Default for PhotoLimits {
    fn default() -> PhotoLimits {
        PhotoLimits {
            max_photo_bytes: 10 << 20,
            max_photos: 8,
        }
    }
}

/// A stored photo.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Photo {
    /// SHA-256 of the bytes, 64 lowercase hex digits.
    pub hash: String,
    pub content_type: &'static str,
    pub size: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum PhotoError {
    #[error("the bytes are {found}, not a JPEG, PNG, WebP or HEIF image")]
    Unsupported { found: String },
    #[error("photo store: {0}")]
    Io(#[from] io::Error),
}

/// The image types taken, as the bytes tell them; `None` for anything else.
pub fn detect(bytes: &[u8]) -> Option<&'static str> {
    let kind = infer::get(bytes)?;
    match kind.mime_type() {
        "image/jpeg" => Some("image/jpeg"),
        "image/png" => Some("image/png"),
        // infer looks only at `WEBP` at offset 8; a WebP file is a RIFF container.
        "image/webp" if bytes.starts_with(b"RIFF") => Some("image/webp"),
        // An ISO BMFF `ftyp` box naming HEIC (`heic`, `heix`, or `mif1`/`msf1` with `heic`).
        "image/heif" => Some("image/heif"),
        _ => None,
    }
}

/// Reads the header of an image `detect` named, as far as its dimensions (with their
/// checksums, for PNG): bytes that only begin like an image (a PNG signature followed by a web
/// page, say) are refused. HEIF, which the decoder does not read, is taken on its container.
pub fn check_header(bytes: &[u8], detected: &str) -> Result<(u32, u32), String> {
    check_header_in(std::io::Cursor::new(bytes), detected)
}

/// `check_header` of an image read from `reader` (a received photo's file, say): as far as
/// its dimensions, not the whole image.
pub fn check_header_in(
    reader: impl std::io::BufRead + std::io::Seek,
    detected: &str,
) -> Result<(u32, u32), String> {
    let format = match detected {
        "image/png" => image::ImageFormat::Png,
        "image/jpeg" => image::ImageFormat::Jpeg,
        "image/webp" => image::ImageFormat::WebP,
        _ => return Ok((0, 0)),
    };
    let (w, h) = image::ImageReader::with_format(reader, format)
        .into_dimensions()
        .map_err(|e| e.to_string())?;
    if w == 0 || h == 0 {
        return Err(format!("it claims {w}×{h} pixels"));
    }
    Ok((w, h))
}

/// What the bytes are, for messages: a MIME type if recognised, else text or unknown data.
pub fn describe(bytes: &[u8]) -> String {
    if bytes.is_empty() {
        return "empty".into();
    }
    match infer::get(bytes) {
        Some(k) => k.mime_type().to_string(),
        None if std::str::from_utf8(bytes).is_ok() => "text".into(),
        None => "unrecognised data".into(),
    }
}

/// Whether a declared content type (a part's `Content-Type`) agrees with the detected one. No
/// declaration, or `application/octet-stream`, claims nothing and agrees with any image.
pub fn declared_agrees(declared: Option<&str>, detected: &'static str) -> bool {
    let Some(declared) = declared else {
        return true;
    };
    let essence = declared
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    let canonical = match essence.as_str() {
        "application/octet-stream" => return true,
        "image/jpg" | "image/pjpeg" => "image/jpeg",
        "image/heic" | "image/heic-sequence" | "image/heif-sequence" => "image/heif",
        other => other,
    };
    canonical == detected
}

/// Whether `s` is a photo name: 64 lowercase hex digits (so it never names another path).
pub fn is_hash(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// Names unique within the process for temporary files.
static TEMP_COUNTER: AtomicU64 = AtomicU64::new(0);

#[derive(Clone)]
pub struct PhotoStore {
    root: PathBuf,
}

impl PhotoStore {
    /// The store at `<state_dir>/photos`, created if absent. Photos a request was receiving
    /// when the daemon stopped (under `photos/.uploads`) are removed: nothing names them.
    pub fn open(state_dir: &Path) -> io::Result<PhotoStore> {
        let root = state_dir.join("photos");
        if !root.is_dir() {
            fs::create_dir_all(&root)?;
            sync_dir(state_dir)?;
        }
        let uploads = root.join(UPLOADS);
        if uploads.is_dir() {
            for e in fs::read_dir(&uploads)? {
                let _ = fs::remove_file(e?.path());
            }
        } else {
            fs::create_dir_all(&uploads)?;
        }
        Ok(PhotoStore { root })
    }

    /// The store at `<state_dir>/photos` as a reader beside the daemon sees it (`escalade
    /// backup`): nothing is created or removed, unlike `open`, which clears the uploads of the
    /// daemon that owns it.
    pub fn reader(state_dir: &Path) -> PhotoStore {
        PhotoStore {
            root: state_dir.join("photos"),
        }
    }

    /// Starts receiving a photo: a new file under `photos/.uploads`, removed when the upload is
    /// dropped unless `keep` took it.
    pub fn receive(&self) -> io::Result<Upload> {
        let path = self.root.join(UPLOADS).join(format!(
            "{}.{}",
            std::process::id(),
            TEMP_COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
        let file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)?;
        Ok(Upload {
            path,
            file: Some(file),
            hasher: Sha256::new(),
            size: 0,
            head: Vec::new(),
            kept: false,
        })
    }

    /// Moves a received photo into the store under its hash, durably (a no-op, the upload
    /// removed, if that photo is stored already).
    pub fn keep(&self, mut upload: Received) -> Result<Photo, PhotoError> {
        let photo = upload.photo.clone();
        let Some((dir, path)) = self.place(&photo.hash)? else {
            return Ok(photo);
        };
        fs::rename(&upload.upload.path, &path)?;
        upload.upload.kept = true;
        sync_dir(&dir)?;
        Ok(photo)
    }

    /// The directory and path a photo named `hash` goes to, the directory made (durably) if
    /// absent; `None` if that photo is stored already.
    fn place(&self, hash: &str) -> io::Result<Option<(PathBuf, PathBuf)>> {
        let dir = self.root.join(&hash[..2]);
        let path = dir.join(hash);
        if path.is_file() {
            return Ok(None);
        }
        if !dir.is_dir() {
            fs::create_dir_all(&dir)?;
            sync_dir(&self.root)?;
        }
        Ok(Some((dir, path)))
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Where the photo named `hash` lives; `None` unless `hash` is a photo name.
    pub fn path(&self, hash: &str) -> Option<PathBuf> {
        is_hash(hash).then(|| self.root.join(&hash[..2]).join(hash))
    }

    /// Stores `bytes` if they are a JPEG, PNG, WebP or HEIF image, durably, under their hash.
    pub fn put(&self, bytes: &[u8]) -> Result<Photo, PhotoError> {
        let content_type = detect(bytes).ok_or_else(|| PhotoError::Unsupported {
            found: describe(bytes),
        })?;
        let hash = name_of(bytes);
        let photo = Photo {
            hash,
            content_type,
            size: bytes.len() as u64,
        };
        let Some((dir, path)) = self.place(&photo.hash)? else {
            return Ok(photo);
        };
        let temp = dir.join(format!(
            ".{}.{}.{}.tmp",
            photo.hash,
            std::process::id(),
            TEMP_COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
        let written = (|| {
            let mut f = OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&temp)?;
            f.write_all(bytes)?;
            f.sync_all()?;
            fs::rename(&temp, &path)
        })();
        if let Err(e) = written {
            let _ = fs::remove_file(&temp);
            return Err(e.into());
        }
        sync_dir(&dir)?;
        Ok(photo)
    }

    /// Removes the photos no committed issue or resolution names (`named`) that were written
    /// more than `grace` ago, and temporary files as old: what a submission whose commit failed
    /// after its photos were kept, or a crash, leaves behind. The grace spares photos whose
    /// request is still committing. Returns how many files were removed (blocking).
    pub fn sweep(
        &self,
        named: &std::collections::HashSet<String>,
        grace: std::time::Duration,
    ) -> io::Result<usize> {
        let cutoff = std::time::SystemTime::now()
            .checked_sub(grace)
            .unwrap_or(std::time::UNIX_EPOCH);
        let mut removed = 0;
        for dir in fs::read_dir(&self.root)? {
            let dir = dir?;
            let name = dir.file_name();
            let name = name.to_string_lossy();
            if name.len() != 2 || !dir.file_type()?.is_dir() {
                continue;
            }
            for f in fs::read_dir(dir.path())? {
                let f = f?;
                let file = f.file_name();
                let file = file.to_string_lossy();
                let orphan = if is_hash(&file) {
                    !named.contains(file.as_ref())
                } else {
                    file.starts_with('.') && file.ends_with(".tmp")
                };
                if orphan && f.metadata()?.modified()? < cutoff {
                    fs::remove_file(f.path())?;
                    removed += 1;
                }
            }
        }
        Ok(removed)
    }

    /// Whether a photo named `hash` is stored.
    pub fn contains(&self, hash: &str) -> bool {
        self.path(hash).is_some_and(|p| p.is_file())
    }

    /// The photo named `hash` opened for reading, with its type and size, to be sent a chunk at
    /// a time; `None` if `hash` is not a photo name or no such photo is stored (blocking).
    pub fn open_photo(&self, hash: &str) -> io::Result<Option<(File, &'static str, u64)>> {
        use std::io::{Read, Seek};
        let Some(path) = self.path(hash) else {
            return Ok(None);
        };
        let mut f = match File::open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e),
        };
        let size = f.metadata()?.len();
        let mut head = Vec::with_capacity(HEAD);
        (&mut f).take(HEAD as u64).read_to_end(&mut head)?;
        f.rewind()?;
        let content_type = detect(&head).unwrap_or("application/octet-stream");
        Ok(Some((f, content_type, size)))
    }

    /// The bytes and type of the photo named `hash`; `None` if `hash` is not a photo name or no
    /// such photo is stored.
    pub fn get(&self, hash: &str) -> io::Result<Option<(Vec<u8>, &'static str)>> {
        let Some(path) = self.path(hash) else {
            return Ok(None);
        };
        match fs::read(&path) {
            Ok(bytes) => {
                let content_type = detect(&bytes).unwrap_or("application/octet-stream");
                Ok(Some((bytes, content_type)))
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }
}

/// Where photos being received are written, under the store's root.
const UPLOADS: &str = ".uploads";

/// A photo being received, written to its file as it arrives, hashed and measured on the way.
/// Dropped before `PhotoStore::keep`, its file is removed.
pub struct Upload {
    path: PathBuf,
    file: Option<File>,
    hasher: Sha256,
    size: u64,
    /// The first bytes, from which the type is told.
    head: Vec<u8>,
    kept: bool,
}

/// How many of a photo's first bytes are kept to tell its type.
const HEAD: usize = 4096;

impl Upload {
    /// Appends a chunk (blocking: a file write).
    pub fn write(&mut self, chunk: &[u8]) -> io::Result<()> {
        if self.head.len() < HEAD {
            let take = (HEAD - self.head.len()).min(chunk.len());
            self.head.extend_from_slice(&chunk[..take]);
        }
        self.hasher.update(chunk);
        self.size += chunk.len() as u64;
        self.file
            .as_mut()
            .expect("written before it is finished")
            .write_all(chunk)
    }

    pub fn size(&self) -> u64 {
        self.size
    }

    /// The first bytes received.
    pub fn head(&self) -> &[u8] {
        &self.head
    }

    /// Ends the upload: the file made durable, the type told by the bytes, the header read
    /// as far as the dimensions (blocking). `Err` says what the bytes are instead.
    pub fn finish(mut self) -> Result<Received, UploadError> {
        let file = self.file.take().expect("finished once");
        file.sync_all().map_err(UploadError::Io)?;
        drop(file);
        let Some(content_type) = detect(&self.head) else {
            return Err(UploadError::Unsupported(describe(&self.head)));
        };
        let reader = io::BufReader::new(File::open(&self.path).map_err(UploadError::Io)?);
        check_header_in(reader, content_type).map_err(|e| UploadError::NotImage {
            detected: content_type,
            error: e,
        })?;
        let hash = format!("{:x}", std::mem::take(&mut self.hasher).finalize());
        Ok(Received {
            photo: Photo {
                hash,
                content_type,
                size: self.size,
            },
            upload: self,
        })
    }
}

impl Drop for Upload {
    fn drop(&mut self) {
        if !self.kept {
            let _ = fs::remove_file(&self.path);
        }
    }
}

/// Why a received photo was refused.
#[derive(Debug, thiserror::Error)]
pub enum UploadError {
    #[error("its bytes are {0}")]
    Unsupported(String),
    #[error("it begins like {detected} but is not one: {error}")]
    NotImage {
        detected: &'static str,
        error: String,
    },
    #[error("photo store: {0}")]
    Io(io::Error),
}

/// A photo received whole and checked, not yet in the store.
pub struct Received {
    pub photo: Photo,
    upload: Upload,
}

/// Makes a directory's entries (a new file's name) durable.
fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    const PNG: &[u8] =
        b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR\0\0\0\x01\0\0\0\x01\x08\x06\0\0\0\x1f\x15\xc4\x89";
    const JPEG: &[u8] = b"\xff\xd8\xff\xe0\0\x10JFIF\0\x01\x01\0\0\x01\0\x01\0\0";

    fn ftyp(major: &[u8; 4], compatible: &[&[u8; 4]]) -> Vec<u8> {
        let len = 16 + 4 * compatible.len();
        let mut b = (len as u32).to_be_bytes().to_vec();
        b.extend_from_slice(b"ftyp");
        b.extend_from_slice(major);
        b.extend_from_slice(&[0, 0, 0, 0]);
        for c in compatible {
            b.extend_from_slice(*c);
        }
        b.extend_from_slice(&[0; 16]);
        b
    }

    #[test]
    fn the_type_comes_from_the_bytes() {
        assert_eq!(detect(PNG), Some("image/png"));
        assert_eq!(detect(JPEG), Some("image/jpeg"));
        assert_eq!(detect(b"RIFF\x10\0\0\0WEBPVP8 "), Some("image/webp"));
        assert_eq!(detect(b"XXXX\x10\0\0\0WEBPVP8 "), None);
        assert_eq!(
            detect(&ftyp(b"heic", &[b"mif1", b"heic"])),
            Some("image/heif")
        );
        assert_eq!(
            detect(&ftyp(b"mif1", &[b"mif1", b"heic"])),
            Some("image/heif")
        );
        assert_eq!(detect(&ftyp(b"avif", &[b"mif1", b"avif"])), None);
        assert_eq!(detect(&ftyp(b"isom", &[b"mp41"])), None);
        assert_eq!(detect(b"GIF89a\x01\0\x01\0"), None);
        assert_eq!(detect(b"just some text"), None);
        assert_eq!(detect(b""), None);
        assert_eq!(describe(b"just some text"), "text");
        assert_eq!(describe(b"GIF89a\x01\0\x01\0"), "image/gif");
        assert_eq!(describe(b"\xff\xfe\xfd"), "unrecognised data");
    }

    #[test]
    fn declared_types_must_agree() {
        assert!(declared_agrees(None, "image/png"));
        assert!(declared_agrees(
            Some("application/octet-stream"),
            "image/png"
        ));
        assert!(declared_agrees(Some("Image/PNG"), "image/png"));
        assert!(declared_agrees(Some("image/jpg"), "image/jpeg"));
        assert!(declared_agrees(Some("image/heic"), "image/heif"));
        assert!(!declared_agrees(Some("image/jpeg"), "image/png"));
        assert!(!declared_agrees(Some("text/plain"), "image/jpeg"));
    }

    #[test]
    fn photos_are_stored_once_by_hash_and_names_are_checked() {
        let dir = tempfile::tempdir().unwrap();
        let store = PhotoStore::open(dir.path()).unwrap();
        let p = store.put(PNG).unwrap();
        assert_eq!(p.content_type, "image/png");
        assert_eq!(p.size, PNG.len() as u64);
        let path = dir.path().join("photos").join(&p.hash[..2]).join(&p.hash);
        assert_eq!(fs::read(&path).unwrap(), PNG);
        assert_eq!(store.put(PNG).unwrap(), p);
        assert_eq!(fs::read_dir(path.parent().unwrap()).unwrap().count(), 1);
        assert!(store.contains(&p.hash));
        assert_eq!(
            store.get(&p.hash).unwrap(),
            Some((PNG.to_vec(), "image/png"))
        );

        assert!(matches!(
            store.put(b"hello"),
            Err(PhotoError::Unsupported { found }) if found == "text"
        ));
        let missing = "0".repeat(64);
        assert_eq!(store.get(&missing).unwrap(), None);
        for bad in [
            "../../etc/passwd",
            &p.hash.to_uppercase(),
            &p.hash[..63],
            "",
        ] {
            assert!(!is_hash(bad), "{bad}");
            assert_eq!(store.get(bad).unwrap(), None);
            assert!(!store.contains(bad));
        }
    }
}
