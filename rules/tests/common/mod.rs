//! What the rules crate's tests share: copies of a fixture directory to edit.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

/// Copies the directory `from` to `to` (created), recursively.
pub fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let dest = to.join(e.file_name());
        if e.path().is_dir() {
            copy_dir(&e.path(), &dest);
        } else {
            std::fs::copy(e.path(), dest).unwrap();
        }
    }
}

/// A copy of the rule directory `src` with `edits` applied: `(file, from, to)` replaces the
/// first occurrence of `from` (which must exist); an empty `from` appends `to` (to a new file,
/// if there is none).
pub fn edited(src: &str, edits: &[(&str, &str, &str)]) -> (tempfile::TempDir, PathBuf) {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("rules");
    copy_dir(Path::new(src), &dir);
    for (file, from, to) in edits {
        let p = dir.join(file);
        let text = std::fs::read_to_string(&p).unwrap_or_default();
        let new = if from.is_empty() {
            format!("{text}{to}")
        } else {
            assert!(text.contains(from), "{file} does not contain {from:?}");
            text.replacen(from, to, 1)
        };
        std::fs::write(&p, new).unwrap();
    }
    (tmp, dir)
}
