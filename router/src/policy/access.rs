//! The access lists in the router: the file, its index, and changes made
//! through `postern access add|remove`.
//!
//! The router is the only writer of the file while postern runs: a change
//! is applied to a copy, written atomically, and only then swapped in for
//! lookups, so the lists in force and the file never disagree after an
//! answer. A reload reads the file again; a file that no longer parses
//! keeps the lists in force (the master refuses such a reload anyway).

use std::path::PathBuf;
use std::sync::{Arc, Mutex, RwLock};

use postern_shared::access::{AccessFile, AccessIndex, Action, Entry, Method, Pattern};

/// The lists in force and where they are kept.
pub struct Lists {
    /// What lookups use; replaced whole.
    index: RwLock<Arc<AccessIndex>>,
    /// The file's path and content; held while a change is written.
    file: Mutex<(PathBuf, AccessFile)>,
}

/// Why a change was not made.
#[derive(Debug, thiserror::Error)]
pub enum ChangeError {
    /// The request itself is wrong (a bad pattern, a duplicate).
    #[error("{0}")]
    Refused(String),
    /// No such entry to remove.
    #[error("no such entry")]
    NotFound,
    /// The file could not be written: nothing changed.
    #[error("cannot write {0}: {1}")]
    Io(String, std::io::Error),
}

impl Lists {
    /// Reads `path` (a missing file is empty lists). A file broken by hand
    /// since the master last checked it (a router restarted after an edit
    /// without a reload) does not empty the lists: the last good copy,
    /// kept beside it at every load and change, is served, and the error
    /// says so.
    pub fn load(path: PathBuf) -> Lists {
        let file = match AccessFile::load(&path) {
            Ok(f) => {
                keep_good_copy(&path, &f);
                f
            }
            Err(e) => match AccessFile::load(&good_copy(&path)) {
                Ok(f) if good_copy(&path).exists() => {
                    tracing::error!(
                        "access lists: {e}; serving the last good copy, {} (fix the file: postern check names the line)",
                        good_copy(&path).display()
                    );
                    f
                }
                _ => {
                    tracing::error!("access lists not loaded: {e}");
                    AccessFile::default()
                }
            },
        };
        log_loaded(&path, &file);
        Lists {
            index: RwLock::new(Arc::new(AccessIndex::new(&file))),
            file: Mutex::new((path, file)),
        }
    }

    /// Reads the file again (at a reload, possibly at a new path).
    pub fn reload(&self, path: PathBuf) {
        match AccessFile::load(&path) {
            Ok(file) => {
                keep_good_copy(&path, &file);
                log_loaded(&path, &file);
                let index = Arc::new(AccessIndex::new(&file));
                let mut held = self.file.lock().unwrap_or_else(|p| p.into_inner());
                *held = (path, file);
                *self.index.write().unwrap_or_else(|p| p.into_inner()) = index;
            }
            Err(e) => tracing::error!("access lists kept as they were: {e}"),
        }
    }

    /// The index in force.
    pub fn index(&self) -> Arc<AccessIndex> {
        self.index.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// The file's text as it stands.
    pub fn text(&self) -> String {
        self.file
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .1
            .to_text()
    }

    /// Adds an entry, persists it, then puts it in force.
    pub fn add(&self, entry: Entry) -> Result<(), ChangeError> {
        self.change(|f| f.add(entry).map_err(ChangeError::Refused))
    }

    /// Removes an entry, persists it, then puts it in force.
    pub fn remove(
        &self,
        action: Action,
        method: Method,
        pattern: &Pattern,
    ) -> Result<(), ChangeError> {
        self.change(|f| {
            if f.remove(action, method, pattern) {
                Ok(())
            } else {
                Err(ChangeError::NotFound)
            }
        })
    }

    fn change(
        &self,
        edit: impl FnOnce(&mut AccessFile) -> Result<(), ChangeError>,
    ) -> Result<(), ChangeError> {
        let mut held = self.file.lock().unwrap_or_else(|p| p.into_inner());
        let mut next = held.1.clone();
        edit(&mut next)?;
        next.save(&held.0)
            .map_err(|e| ChangeError::Io(held.0.display().to_string(), e))?;
        keep_good_copy(&held.0, &next);
        let index = Arc::new(AccessIndex::new(&next));
        held.1 = next;
        *self.index.write().unwrap_or_else(|p| p.into_inner()) = index;
        Ok(())
    }
}

/// Where the last good copy of `path` is kept: `.NAME.good` beside it.
fn good_copy(path: &std::path::Path) -> PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    path.with_file_name(format!(".{name}.good"))
}

/// Keeps a copy of lists known good; a failure only costs that copy.
fn keep_good_copy(path: &std::path::Path, file: &AccessFile) {
    if let Err(e) = file.save(&good_copy(path)) {
        tracing::debug!("access lists: no good copy kept: {e}");
    }
}

fn log_loaded(path: &std::path::Path, file: &AccessFile) {
    let count = |a: Action| file.entries.iter().filter(|e| e.action == a).count();
    tracing::info!(
        "access lists: {} accept and {} reject entries from {}",
        count(Action::Accept),
        count(Action::Reject),
        path.display()
    );
}
