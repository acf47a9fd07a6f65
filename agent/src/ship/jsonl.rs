//! `--events-jsonl`: every event as one JSON object per line.

use std::{
    fs::{File, OpenOptions},
    io::{BufWriter, Write},
    path::{Path, PathBuf},
};

use kestrel_proto::{Event, Gap};

/// Appends events to a file, one JSON object per line.
pub struct JsonlWriter {
    path: PathBuf,
    out: BufWriter<File>,
}

/// A JSON-lines file could not be opened or written.
#[derive(Debug, thiserror::Error)]
#[error("events file {path}: {source}")]
pub struct JsonlError {
    path: PathBuf,
    #[source]
    source: std::io::Error,
}

impl JsonlWriter {
    /// Opens `path` for appending, creating it if needed.
    pub fn create(path: &Path) -> Result<Self, JsonlError> {
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(|source| JsonlError {
                path: path.to_owned(),
                source,
            })?;
        Ok(Self {
            path: path.to_owned(),
            out: BufWriter::new(file),
        })
    }

    /// Writes one event (buffered; see [`JsonlWriter::flush`]).
    pub fn write(&mut self, event: &Event) -> Result<(), JsonlError> {
        serde_json::to_writer(&mut self.out, event)
            .map_err(std::io::Error::from)
            .and_then(|()| self.out.write_all(b"\n"))
            .map_err(|source| JsonlError {
                path: self.path.clone(),
                source,
            })
    }

    /// Writes one Gap record as `{"gap": {...}}` (buffered).
    pub fn write_gap(&mut self, gap: &Gap) -> Result<(), JsonlError> {
        serde_json::to_writer(&mut self.out, &serde_json::json!({ "gap": gap }))
            .map_err(std::io::Error::from)
            .and_then(|()| self.out.write_all(b"\n"))
            .map_err(|source| JsonlError {
                path: self.path.clone(),
                source,
            })
    }

    /// Pushes buffered lines to the file.
    pub fn flush(&mut self) -> Result<(), JsonlError> {
        self.out.flush().map_err(|source| JsonlError {
            path: self.path.clone(),
            source,
        })
    }
}
