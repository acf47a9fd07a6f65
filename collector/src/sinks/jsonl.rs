//! JSON lines: one alert object per line, appended to a file (rotated by size) or stdout.
//!
//! Rotation: before a line would take the file past `max_bytes`, `F` becomes `F.1`, `F.1`
//! becomes `F.2`, … and `F.<max_files>` is removed. A line is never split across files.
//! Idempotency: the alert uid (`metadata.uid`); a retry after a write error may repeat a line.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use futures::future::BoxFuture;
use futures::FutureExt;
use serde::Deserialize;

use super::{Build, Check, DeliveryError, Sink, SinkError, SinkSettings};
use crate::alert::Alert;

/// Rotated files kept when `max_files` is not set.
pub const DEFAULT_MAX_FILES: u32 = 5;

/// `kind = "jsonl"`: its own keys.
#[derive(Debug, Deserialize)]
pub struct Options {
    /// The file to append to, or `-` for stdout. Required.
    path: Option<PathBuf>,
    /// Rotate the file when it would grow past this size (bytes, or `"100MiB"`). Default: never.
    max_bytes: Option<bytesize::ByteSize>,
    /// Rotated files kept (`F.1` newest … `F.N`). Default [`DEFAULT_MAX_FILES`].
    max_files: Option<u32>,
}

impl Options {
    /// Options writing to `path`, never rotated (`--alerts-jsonl`).
    pub fn to_path(path: PathBuf) -> toml::Table {
        toml::Table::from_iter([(
            "path".to_owned(),
            toml::Value::String(path.to_string_lossy().into_owned()),
        )])
    }
}

impl super::Options for Options {
    fn check(&mut self, check: &mut Check) {
        check.required("path", &self.path);
        if self.path.as_deref() == Some(Path::new("-")) && self.max_bytes.is_some() {
            check.problem("`max_bytes` cannot rotate stdout (`path = \"-\"`)");
        }
        if self.max_files == Some(0) {
            check.problem("`max_files` must be at least 1");
        }
    }
}

impl Build for Options {
    fn build(&self, settings: &SinkSettings) -> Result<Arc<dyn Sink>, SinkError> {
        let path = self.path.clone().unwrap_or_default();
        let file = JsonlFile::open(
            &path,
            self.max_bytes.map_or(0, |size| size.as_u64()),
            self.max_files.unwrap_or(DEFAULT_MAX_FILES),
        )
        .map_err(|e| settings.error(e.to_string()))?;
        Ok(Arc::new(JsonlSink {
            name: settings.name.clone(),
            file: Arc::new(Mutex::new(file)),
        }))
    }
}

/// The JSON-lines file could not be opened, rotated or written.
#[derive(Debug, thiserror::Error)]
#[error("alerts JSONL {}: {source}", path.display())]
pub struct JsonlError {
    /// The output path (`-` for stdout).
    pub path: PathBuf,
    /// The I/O error.
    #[source]
    pub source: io::Error,
}

enum Output {
    Stdout,
    File { file: File, size: u64 },
}

/// An append-only JSON-lines output with size-based rotation.
pub struct JsonlFile {
    path: PathBuf,
    max_bytes: u64,
    max_files: u32,
    out: Output,
}

impl JsonlFile {
    /// Opens `path` for appending (created when missing; `-` is stdout). `max_bytes` 0 never
    /// rotates.
    pub fn open(path: &Path, max_bytes: u64, max_files: u32) -> Result<JsonlFile, JsonlError> {
        let out = if path == Path::new("-") {
            Output::Stdout
        } else {
            open_append(path)?
        };
        Ok(JsonlFile {
            path: path.to_path_buf(),
            max_bytes,
            max_files: max_files.max(1),
            out,
        })
    }

    /// Appends one JSON value as a line and flushes (blocking I/O).
    pub fn append(&mut self, value: &impl serde::Serialize) -> Result<(), JsonlError> {
        let mut line = serde_json::to_vec(value).map_err(|e| self.error(e.into()))?;
        line.push(b'\n');
        let len = line.len() as u64;
        if let Output::File { size, .. } = &self.out {
            if self.max_bytes > 0 && *size > 0 && size + len > self.max_bytes {
                self.rotate()?;
            }
        }
        match &mut self.out {
            Output::Stdout => {
                let mut stdout = io::stdout().lock();
                stdout.write_all(&line).and_then(|()| stdout.flush())
            }
            Output::File { file, size } => file
                .write_all(&line)
                .and_then(|()| file.flush())
                .map(|()| *size += len),
        }
        .map_err(|e| self.error(e))
    }

    fn rotate(&mut self) -> Result<(), JsonlError> {
        let numbered = |n: u32| PathBuf::from(format!("{}.{n}", self.path.display()));
        let _ = std::fs::remove_file(numbered(self.max_files));
        for n in (1..self.max_files).rev() {
            if numbered(n).exists() {
                std::fs::rename(numbered(n), numbered(n + 1)).map_err(|e| self.error(e))?;
            }
        }
        std::fs::rename(&self.path, numbered(1)).map_err(|e| self.error(e))?;
        self.out = open_append(&self.path)?;
        Ok(())
    }

    fn error(&self, source: io::Error) -> JsonlError {
        JsonlError {
            path: self.path.clone(),
            source,
        }
    }
}

fn open_append(path: &Path) -> Result<Output, JsonlError> {
    let err = |source| JsonlError {
        path: path.to_path_buf(),
        source,
    };
    let file = OpenOptions::new()
        .create(true)
        .append(true)
        .mode(crate::private_files::FILE_MODE)
        .open(path)
        .map_err(err)?;
    let size = file.metadata().map_err(err)?.len();
    Ok(Output::File { file, size })
}

/// A JSON-lines sink.
pub struct JsonlSink {
    name: String,
    file: Arc<Mutex<JsonlFile>>,
}

impl Sink for JsonlSink {
    fn name(&self) -> &str {
        &self.name
    }

    fn deliver<'a>(&'a self, alert: &'a Alert) -> BoxFuture<'a, Result<(), DeliveryError>> {
        let file = self.file.clone();
        let alert = alert.clone();
        async move {
            tokio::task::spawn_blocking(move || {
                file.lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .append(&alert)
            })
            .await
            .map_err(|e| DeliveryError::retryable(format!("write task: {e}")))?
            .map_err(|e| DeliveryError::retryable(e.to_string()))
        }
        .boxed()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rotation_keeps_whole_lines_and_max_files() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("alerts.jsonl");
        let mut file = JsonlFile::open(&path, 30, 2).unwrap();
        for n in 0..8 {
            file.append(&serde_json::json!({ "n": n, "pad": "xxxxxxxx" }))
                .unwrap();
        }
        let read = |p: &Path| std::fs::read_to_string(p).unwrap();
        for p in [
            path.clone(),
            dir.path().join("alerts.jsonl.1"),
            dir.path().join("alerts.jsonl.2"),
        ] {
            let text = read(&p);
            assert!(text.ends_with('\n'));
            for line in text.lines() {
                serde_json::from_str::<serde_json::Value>(line).unwrap();
            }
        }
        assert!(!dir.path().join("alerts.jsonl.3").exists());
        assert!(read(&path).contains("\"n\":7"));
    }

    #[test]
    fn unwritable_path_is_named_in_the_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("missing-dir").join("alerts.jsonl");
        let err = JsonlFile::open(&path, 0, 1).err().expect("open must fail");
        assert!(
            err.to_string().contains("missing-dir/alerts.jsonl"),
            "{err}"
        );
    }
}
