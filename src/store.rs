//! The daemon's state on disk: one JSON file, `state.json`, in a directory that one daemon at a
//! time may use.
//!
//! The file is `{"schema":1,"state":...}`, written whole on every save: a temporary file in the
//! same directory, fsynced, renamed over `state.json`, then the directory fsynced, so a crash
//! leaves either the old file or the new one, never a mix. The temporary file a crash may leave
//! behind is never read.
//!
//! Loading is strict: the file must hold exactly one JSON object and nothing else, not even a
//! trailing newline (the daemon never writes one), so that damage shows up as an error naming
//! the file, the field and the reason instead of a daemon quietly running on half a state.
//! Loading never modifies anything: a file the daemon refuses stays as it was for the user to
//! look at.
//!
//! The directory itself carries the lock (an exclusive `flock` on its descriptor, held as long
//! as the [`Store`] lives), so there is no lock file to go stale and nothing in the directory
//! but the state.

use std::fs::{DirBuilder, File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use nix::errno::Errno;
use nix::fcntl::{Flock, FlockArg};
use serde_json::Value;

/// The version of the file's layout this daemon writes and the newest it reads. A file with a
/// greater one was written by a newer netyard and is refused rather than misread.
pub const SCHEMA: u32 = 1;

const STATE_FILE: &str = "state.json";
/// Where a save writes before renaming. A fixed name: saves are serialised (one daemon per
/// directory, one save at a time within it), and a crash leaves at most this one file.
const TMP_FILE: &str = "state.json.tmp";

/// An open, locked state directory.
#[derive(Debug)]
pub struct Store {
    dir: PathBuf,
    /// The directory's descriptor: its flock is the daemon's claim on the directory, and it is
    /// what a save fsyncs after the rename so the new directory entry is durable.
    lock: Flock<File>,
    /// Serialises save and clear: two concurrent saves would otherwise write the same
    /// temporary file.
    writing: Mutex<()>,
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error(
        "state directory {} is in use by another netyard daemon (stop it, or give this one \
         another --state-dir)",
        dir.display()
    )]
    Locked { dir: PathBuf },
    #[error("{context} {}: {source}", path.display())]
    Io {
        path: PathBuf,
        /// What was being done, as a gerund: "reading", "creating".
        context: String,
        source: std::io::Error,
    },
    /// `field` is a JSON path within the state (`networks.lab.subnet`), `schema` or `state`
    /// for the envelope, or empty when the file as a whole is at fault.
    #[error(
        "state file {} is corrupt{}: {reason}",
        path.display(),
        if field.is_empty() { String::new() } else { format!(" at {field}") }
    )]
    Corrupt {
        path: PathBuf,
        field: String,
        reason: String,
    },
    #[error(
        "state file {} has schema {found}, newer than this netyard supports ({supported}): \
         it was written by a newer version; run that one, or move the file away to start empty",
        path.display()
    )]
    NewerSchema {
        path: PathBuf,
        found: u32,
        supported: u32,
    },
}

/// What `save` writes; `load` reads the same shape through a [`Value`] so that the schema is
/// known before the state is parsed.
#[derive(serde::Serialize)]
struct Envelope<'a, T> {
    schema: u32,
    state: &'a T,
}

impl Store {
    /// Creates the directory (0700) if missing and takes an exclusive, non-blocking flock on the
    /// directory itself (no lock file: nothing extra in the directory). A second daemon on the
    /// same directory gets [`StoreError::Locked`] naming it.
    pub fn open(dir: &Path) -> Result<Store, StoreError> {
        let io = |context: &str| {
            let context = context.to_string();
            move |source| StoreError::Io {
                path: dir.to_path_buf(),
                context,
                source,
            }
        };
        // Parents made on the way get 0700 too: they are new, and ours.
        DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(io("creating"))?;
        // O_DIRECTORY: a plain file at that path is an error here, not a lock on the wrong
        // thing.
        let file = OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_DIRECTORY)
            .open(dir)
            .map_err(io("opening"))?;
        let lock = match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
            Ok(lock) => lock,
            Err((_, Errno::EWOULDBLOCK)) => {
                return Err(StoreError::Locked {
                    dir: dir.to_path_buf(),
                })
            }
            Err((_, errno)) => return Err(io("locking")(std::io::Error::from(errno))),
        };
        Ok(Store {
            dir: dir.to_path_buf(),
            lock,
            writing: Mutex::new(()),
        })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The state file's path (what errors name).
    pub fn path(&self) -> PathBuf {
        self.dir.join(STATE_FILE)
    }

    /// `dir/state.json`; `Ok(None)` when absent. Never modifies any file.
    pub fn load<T: serde::de::DeserializeOwned>(&self) -> Result<Option<T>, StoreError> {
        let path = self.path();
        let bytes = match std::fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(source) => {
                return Err(StoreError::Io {
                    path,
                    context: "reading".into(),
                    source,
                })
            }
        };
        decode(&path, &bytes).map(Some)
    }

    /// Atomically replaces `state.json`: writes a temporary file in the same directory, fsyncs
    /// it, renames it over, fsyncs the directory.
    pub fn save<T: serde::Serialize>(&self, state: &T) -> Result<(), StoreError> {
        let path = self.path();
        let bytes = encode(state).map_err(|e| StoreError::Io {
            path: path.clone(),
            context: "encoding the state for".into(),
            source: e.into(),
        })?;
        let _writing = self.writing.lock().unwrap_or_else(|p| p.into_inner());
        let tmp = self.dir.join(TMP_FILE);
        let r = self.write_tmp(&tmp, &bytes).and_then(|()| {
            std::fs::rename(&tmp, &path).map_err(|source| StoreError::Io {
                path: path.clone(),
                context: format!("renaming {} to", tmp.display()),
                source,
            })
        });
        if r.is_err() {
            // Best effort: a leftover is harmless (load never reads it, the next save replaces
            // it), only untidy.
            let _ = std::fs::remove_file(&tmp);
        }
        r?;
        self.sync_dir()
    }

    /// Removes `state.json` (system reset). Absent already is fine.
    pub fn clear(&self) -> Result<(), StoreError> {
        let _writing = self.writing.lock().unwrap_or_else(|p| p.into_inner());
        for name in [STATE_FILE, TMP_FILE] {
            let path = self.dir.join(name);
            match std::fs::remove_file(&path) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(source) => {
                    return Err(StoreError::Io {
                        path,
                        context: "removing".into(),
                        source,
                    })
                }
            }
        }
        self.sync_dir()
    }

    /// Writes `bytes` to a new `tmp` (0600: the state names namespaces and addresses of every
    /// container) and fsyncs it, so the rename that follows publishes complete data.
    fn write_tmp(&self, tmp: &Path, bytes: &[u8]) -> Result<(), StoreError> {
        let io = |context: &'static str| {
            move |source| StoreError::Io {
                path: tmp.to_path_buf(),
                context: context.into(),
                source,
            }
        };
        // A crash's leftover goes first, so that create_new (O_EXCL, which never follows a
        // symlink) can make a fresh file.
        match std::fs::remove_file(tmp) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(source) => return Err(io("removing")(source)),
        }
        let mut f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(tmp)
            .map_err(io("creating"))?;
        f.write_all(bytes).map_err(io("writing"))?;
        f.sync_all().map_err(io("syncing"))
    }

    /// Makes the directory's entries (a rename, a removal) durable.
    fn sync_dir(&self) -> Result<(), StoreError> {
        self.lock.sync_all().map_err(|source| StoreError::Io {
            path: self.dir.clone(),
            context: "syncing".into(),
            source,
        })
    }
}

/// Parses a whole state file: exactly one JSON object spanning every byte, with a known schema
/// and a state that deserialises as `T`.
/// The file's bytes for `state`: the envelope with the schema, pretty (for the user who looks
/// at the file), no trailing newline (load treats any byte after the object as damage).
pub fn encode<T: serde::Serialize>(state: &T) -> Result<Vec<u8>, serde_json::Error> {
    serde_json::to_vec_pretty(&Envelope {
        schema: SCHEMA,
        state,
    })
}

/// Checks and parses a state file's bytes; `path` is what errors name.
pub fn decode<T: serde::de::DeserializeOwned>(path: &Path, bytes: &[u8]) -> Result<T, StoreError> {
    let corrupt = |field: &str, reason: String| StoreError::Corrupt {
        path: path.to_path_buf(),
        field: field.to_string(),
        reason,
    };
    // serde_json skips whitespace around a value; the file we write has none, so any is damage.
    if bytes.first().is_some_and(u8::is_ascii_whitespace) {
        return Err(corrupt("", "whitespace before the JSON object".into()));
    }
    let mut values = serde_json::Deserializer::from_slice(bytes).into_iter::<Value>();
    let value = match values.next() {
        None => return Err(corrupt("", "the file is empty".into())),
        Some(Err(e)) => return Err(corrupt("", e.to_string())),
        Some(Ok(v)) => v,
    };
    let end = values.byte_offset();
    if end != bytes.len() {
        return Err(corrupt(
            "",
            format!(
                "{} unexpected byte(s) after the JSON object (at offset {end})",
                bytes.len() - end
            ),
        ));
    }
    let Value::Object(mut top) = value else {
        return Err(corrupt(
            "",
            format!("expected a JSON object, found {}", kind(&value)),
        ));
    };
    // The schema first: a newer file's state may not parse at all, and "newer schema" is the
    // useful thing to say about it.
    let schema = match top.remove("schema") {
        None => return Err(corrupt("schema", "missing".into())),
        Some(v) => match v.as_u64().and_then(|n| u32::try_from(n).ok()) {
            Some(n) => n,
            None => {
                return Err(corrupt(
                    "schema",
                    format!("expected a schema number, found {v}"),
                ))
            }
        },
    };
    if schema > SCHEMA {
        return Err(StoreError::NewerSchema {
            path: path.to_path_buf(),
            found: schema,
            supported: SCHEMA,
        });
    }
    if schema == 0 {
        return Err(corrupt(
            "schema",
            "0 is no schema netyard ever wrote".into(),
        ));
    }
    let Some(state) = top.remove("state") else {
        return Err(corrupt("state", "missing".into()));
    };
    if let Some(extra) = top.keys().next() {
        return Err(corrupt(extra, "unexpected field".into()));
    }
    serde_path_to_error::deserialize(state).map_err(|e| {
        let field = match e.path().to_string() {
            // serde_path_to_error's name for the root.
            p if p == "." => "state".to_string(),
            p => p,
        };
        corrupt(&field, e.into_inner().to_string())
    })
}

/// "a string", "an array": for messages about the top-level value.
fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::sync::atomic::{AtomicU32, Ordering};

    use super::*;

    #[derive(Debug, PartialEq, serde::Serialize, serde::Deserialize)]
    struct Endpoint {
        ip: String,
    }

    #[derive(Debug, PartialEq, serde::Serialize, serde::Deserialize)]
    struct Network {
        subnet: String,
        endpoints: BTreeMap<String, Endpoint>,
    }

    #[derive(Debug, PartialEq, serde::Serialize, serde::Deserialize)]
    struct State {
        networks: BTreeMap<String, Network>,
    }

    fn sample() -> State {
        let mut endpoints = BTreeMap::new();
        endpoints.insert(
            "c1".to_string(),
            Endpoint {
                ip: "10.1.2.3".into(),
            },
        );
        let mut networks = BTreeMap::new();
        networks.insert(
            "lab".to_string(),
            Network {
                subnet: "10.1.2.0/24".into(),
                endpoints,
            },
        );
        State { networks }
    }

    /// A fresh directory under the system temp dir, removed on drop (even when the test
    /// fails).
    struct TempDir(PathBuf);

    impl TempDir {
        fn new() -> TempDir {
            static N: AtomicU32 = AtomicU32::new(0);
            let d = std::env::temp_dir().join(format!(
                "netyard-store-test-{}-{}",
                std::process::id(),
                N.fetch_add(1, Ordering::Relaxed)
            ));
            let _ = std::fs::remove_dir_all(&d);
            TempDir(d)
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn names(dir: &Path) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(dir)
            .expect("read_dir")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    }

    #[test]
    fn round_trip() {
        let t = TempDir::new();
        // A directory two levels down: open makes the parents too.
        let dir = t.0.join("var").join("netyard");
        let s = Store::open(&dir).expect("open");
        assert_eq!(s.dir(), dir);
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&dir).expect("stat").permissions().mode();
        assert_eq!(mode & 0o777, 0o700, "directory mode {mode:o}");
        s.save(&sample()).expect("save");
        assert_eq!(s.load::<State>().expect("load"), Some(sample()));
        let bytes = std::fs::read(s.path()).expect("read");
        assert!(bytes.starts_with(b"{") && bytes.ends_with(b"}"));
        assert_eq!(names(&dir), ["state.json"], "nothing else in the directory");
        let mode = std::fs::metadata(s.path())
            .expect("stat")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "file mode {mode:o}");
        // Saving again replaces it.
        let empty = State {
            networks: BTreeMap::new(),
        };
        s.save(&empty).expect("save");
        assert_eq!(s.load::<State>().expect("load"), Some(empty));
        // Clear removes it; clearing twice is fine.
        s.clear().expect("clear");
        s.clear().expect("clear again");
        assert_eq!(s.load::<State>().expect("load"), None);
        assert!(names(&dir).is_empty());
    }

    #[test]
    fn absent_file_is_none() {
        let t = TempDir::new();
        let s = Store::open(&t.0).expect("open");
        assert_eq!(s.load::<State>().expect("load"), None);
        // Loading created nothing.
        assert!(names(&t.0).is_empty());
    }

    #[test]
    fn second_open_is_locked_until_the_first_store_drops() {
        let t = TempDir::new();
        let first = Store::open(&t.0).expect("open");
        // flock belongs to the open file description, so a second open in this process
        // conflicts just as another daemon would.
        let err = Store::open(&t.0).expect_err("second open");
        assert!(
            matches!(&err, StoreError::Locked { dir } if dir == &t.0),
            "{err:?}"
        );
        let msg = err.to_string();
        assert!(msg.contains(&t.0.display().to_string()), "{msg}");
        drop(first);
        Store::open(&t.0).expect("open after the first store is gone");
    }

    #[test]
    fn a_plain_file_is_no_state_dir() {
        let t = TempDir::new();
        std::fs::create_dir_all(&t.0).expect("mkdir");
        let f = t.0.join("file");
        std::fs::write(&f, b"").expect("write");
        let err = Store::open(&f).expect_err("open a file");
        assert!(matches!(err, StoreError::Io { .. }), "{err:?}");
    }

    /// Writes `bytes` as the state file, expects load to refuse it as corrupt and leave it
    /// untouched; returns the error.
    fn corrupt(bytes: &[u8]) -> StoreError {
        let t = TempDir::new();
        let s = Store::open(&t.0).expect("open");
        std::fs::write(s.path(), bytes).expect("write");
        let err = s.load::<State>().expect_err("load must fail");
        assert!(
            matches!(&err, StoreError::Corrupt { path, .. } if path == &s.path()),
            "{err:?}"
        );
        assert_eq!(
            std::fs::read(s.path()).expect("read"),
            bytes,
            "load modified the file"
        );
        assert_eq!(names(&t.0), ["state.json"]);
        err
    }

    fn saved() -> Vec<u8> {
        let t = TempDir::new();
        let s = Store::open(&t.0).expect("open");
        s.save(&sample()).expect("save");
        std::fs::read(s.path()).expect("read")
    }

    fn field(e: &StoreError) -> &str {
        match e {
            StoreError::Corrupt { field, .. } => field,
            other => panic!("not corrupt: {other:?}"),
        }
    }

    #[test]
    fn any_appended_byte_is_corruption() {
        for tail in [&b"\n"[..], b"x", b" ", b"{}"] {
            let mut bytes = saved();
            bytes.extend_from_slice(tail);
            let e = corrupt(&bytes);
            assert_eq!(field(&e), "", "{e}");
            assert!(e.to_string().contains("after the JSON object"), "{e}");
        }
        let mut bytes = b"\n".to_vec();
        bytes.extend(saved());
        corrupt(&bytes);
    }

    #[test]
    fn truncation_and_wrong_shapes_are_corruption() {
        let full = saved();
        for n in [0, 1, full.len() / 2, full.len() - 1] {
            corrupt(&full[..n]);
        }
        assert!(corrupt(b"[1,2]").to_string().contains("found an array"));
        assert_eq!(field(&corrupt(br#"{"state":{"networks":{}}}"#)), "schema");
        assert_eq!(
            field(&corrupt(br#"{"schema":"1","state":{"networks":{}}}"#)),
            "schema"
        );
        assert_eq!(field(&corrupt(br#"{"schema":-1,"state":{}}"#)), "schema");
        assert_eq!(field(&corrupt(br#"{"schema":0,"state":{}}"#)), "schema");
        assert_eq!(field(&corrupt(br#"{"schema":1}"#)), "state");
        assert_eq!(
            field(&corrupt(br#"{"schema":1,"state":{"networks":{}},"x":1}"#)),
            "x"
        );
        assert_eq!(field(&corrupt(br#"{"schema":1,"state":[]}"#)), "state");
    }

    #[test]
    fn a_wrong_nested_type_names_its_path() {
        let e = corrupt(
            br#"{"schema":1,"state":{"networks":{"lab":{"subnet":"10.1.2.0/24","endpoints":{"c1":{"ip":7}}}}}}"#,
        );
        assert_eq!(field(&e), "networks.lab.endpoints.c1.ip", "{e}");
        let e = corrupt(br#"{"schema":1,"state":{"networks":{"lab":{"subnet":5}}}}"#);
        assert_eq!(field(&e), "networks.lab.subnet");
        let path = match &e {
            StoreError::Corrupt { path, .. } => path.display().to_string(),
            _ => unreachable!(),
        };
        assert_eq!(
            e.to_string(),
            format!(
                "state file {path} is corrupt at networks.lab.subnet: invalid type: \
                 integer `5`, expected a string"
            )
        );
    }

    #[test]
    fn a_newer_schema_is_refused_before_the_state_is_read() {
        let t = TempDir::new();
        let s = Store::open(&t.0).expect("open");
        // Its state would not parse as ours: the schema is what the error is about.
        let bytes = br#"{"schema":2,"state":{"something":"new"}}"#;
        std::fs::write(s.path(), bytes).expect("write");
        let err = s.load::<State>().expect_err("newer schema");
        assert!(
            matches!(
                err,
                StoreError::NewerSchema {
                    found: 2,
                    supported: SCHEMA,
                    ..
                }
            ),
            "{err:?}"
        );
        assert!(err.to_string().contains("schema 2"), "{err}");
        assert_eq!(std::fs::read(s.path()).expect("read"), bytes);
    }

    #[test]
    fn a_leftover_temporary_file_does_not_matter() {
        let t = TempDir::new();
        let s = Store::open(&t.0).expect("open");
        s.save(&sample()).expect("save");
        // A crash mid-save leaves a half-written temporary file: load ignores it...
        std::fs::write(t.0.join(TMP_FILE), b"{\"schema\":1,\"sta").expect("write");
        assert_eq!(s.load::<State>().expect("load"), Some(sample()));
        // ... and the next save replaces it and leaves only the state file.
        let empty = State {
            networks: BTreeMap::new(),
        };
        s.save(&empty).expect("save");
        assert_eq!(s.load::<State>().expect("load"), Some(empty));
        assert_eq!(names(&t.0), ["state.json"]);
        // A leftover alone (a crash during the very first save) is no state.
        s.clear().expect("clear");
        std::fs::write(t.0.join(TMP_FILE), b"garbage").expect("write");
        assert_eq!(s.load::<State>().expect("load"), None);
    }

    #[test]
    fn a_failed_save_keeps_the_old_state() {
        let t = TempDir::new();
        let s = Store::open(&t.0).expect("open");
        s.save(&sample()).expect("save");
        let before = std::fs::read(s.path()).expect("read");
        // A map with non-string keys cannot be JSON: the save fails before touching anything.
        let mut bad = BTreeMap::new();
        bad.insert(vec![1u8], 1u8);
        let err = s.save(&bad).expect_err("unencodable");
        assert!(matches!(err, StoreError::Io { .. }), "{err:?}");
        assert_eq!(std::fs::read(s.path()).expect("read"), before);
        assert_eq!(names(&t.0), ["state.json"]);
    }
}
