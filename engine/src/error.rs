//! The engine's error type. Every variant keeps its cause and says what a user can do.
//!
//! Kinesis exception names are assigned here, in one place (`Error::kinesis_name`), so that
//! front ends map errors without matching on messages.

use std::path::PathBuf;
use std::sync::Arc;

/// Result alias used throughout the engine.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in the engine.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An operating-system I/O call failed on `path`.
    #[error("I/O error on {path}: {source}")]
    Io {
        /// The file or directory the call was on.
        path: PathBuf,
        /// The operating system's error.
        #[source]
        source: std::io::Error,
    },

    /// Bytes on disk failed validation (checksum, magic, bounds, continuity).
    #[error("corrupt data in {path} at file offset {file_offset}: {reason}")]
    Corrupt {
        /// The damaged file.
        path: PathBuf,
        /// Byte within the file where validation failed.
        file_offset: u64,
        /// What failed validation.
        reason: String,
    },

    /// A commit cycle failed (write or fdatasync); the log refuses further writes because
    /// what is on disk is no longer known. Reopen the log to recover from what is durable.
    #[error("the log is stopped after a failed commit and takes no more writes: {reason}")]
    Poisoned {
        /// Why the commit failed.
        reason: Arc<str>,
    },

    /// The log was sealed (closed for writes, as a parent shard after a split or merge).
    #[error("the log is sealed and takes no more writes")]
    Sealed,

    /// The log or engine was shut down.
    #[error("the log is closed")]
    Closed,

    /// A caller-supplied argument is semantically invalid (`InvalidArgumentException`).
    /// The message is the one Kinesis gives, where the spec knows it.
    #[error("{0}")]
    InvalidArgument(String),

    /// A request member violates a length, range, pattern or enum constraint
    /// (`ValidationException`), or the operation is not allowed for the stream's mode.
    #[error("{0}")]
    Validation(String),

    /// The stream, shard or consumer does not exist (`ResourceNotFoundException`).
    #[error("{0}")]
    ResourceNotFound(String),

    /// The resource exists but is in the wrong state, or the name is taken
    /// (`ResourceInUseException`).
    #[error("{0}")]
    ResourceInUse(String),

    /// A quota or rate limit of the control plane (`LimitExceededException`).
    #[error("{0}")]
    LimitExceeded(String),

    /// A shard's write or read throughput limit (`ProvisionedThroughputExceededException`).
    /// Retry with backoff.
    #[error("{0}")]
    ProvisionedThroughputExceeded(String),

    /// A shard iterator older than five minutes (`ExpiredIteratorException`): get a new one.
    #[error("{0}")]
    ExpiredIterator(String),

    /// A paging token older than five minutes (`ExpiredNextTokenException`).
    #[error("{0}")]
    ExpiredNextToken(String),

    /// Configuration rejected at open.
    #[error("invalid configuration: {0}")]
    Config(String),

    /// Another process holds the data directory.
    #[error("the data directory {path} is in use by another process")]
    Locked {
        /// The locked directory.
        path: PathBuf,
    },
}

impl Error {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io { path: path.into(), source }
    }

    pub(crate) fn corrupt(
        path: impl Into<PathBuf>,
        file_offset: u64,
        reason: impl Into<String>,
    ) -> Self {
        Error::Corrupt { path: path.into(), file_offset, reason: reason.into() }
    }

    /// The name of the Kinesis exception a front end should answer with.
    pub fn kinesis_name(&self) -> &'static str {
        match self {
            Error::InvalidArgument(_) => "InvalidArgumentException",
            Error::Validation(_) => "ValidationException",
            Error::ResourceNotFound(_) => "ResourceNotFoundException",
            Error::ResourceInUse(_) | Error::Sealed | Error::Closed => "ResourceInUseException",
            Error::LimitExceeded(_) => "LimitExceededException",
            Error::ProvisionedThroughputExceeded(_) => "ProvisionedThroughputExceededException",
            Error::ExpiredIterator(_) => "ExpiredIteratorException",
            Error::ExpiredNextToken(_) => "ExpiredNextTokenException",
            Error::Io { .. }
            | Error::Corrupt { .. }
            | Error::Poisoned { .. }
            | Error::Config(_)
            | Error::Locked { .. } => "InternalFailure",
        }
    }

    /// Errors that do not need the caller to change anything may be retried.
    pub fn is_retryable(&self) -> bool {
        matches!(self, Error::Io { .. } | Error::ProvisionedThroughputExceeded(_))
    }
}

impl Clone for Error {
    /// Commit errors are delivered to every waiter of a cycle, so they must be cloneable;
    /// `io::Error` is not, so the clone keeps its kind and text.
    fn clone(&self) -> Self {
        match self {
            Error::Io { path, source } => Error::Io {
                path: path.clone(),
                source: match source.raw_os_error() {
                    Some(code) => std::io::Error::from_raw_os_error(code),
                    None => std::io::Error::new(source.kind(), source.to_string()),
                },
            },
            Error::Corrupt { path, file_offset, reason } => Error::Corrupt {
                path: path.clone(),
                file_offset: *file_offset,
                reason: reason.clone(),
            },
            Error::Poisoned { reason } => Error::Poisoned { reason: reason.clone() },
            Error::Sealed => Error::Sealed,
            Error::Closed => Error::Closed,
            Error::InvalidArgument(m) => Error::InvalidArgument(m.clone()),
            Error::Validation(m) => Error::Validation(m.clone()),
            Error::ResourceNotFound(m) => Error::ResourceNotFound(m.clone()),
            Error::ResourceInUse(m) => Error::ResourceInUse(m.clone()),
            Error::LimitExceeded(m) => Error::LimitExceeded(m.clone()),
            Error::ProvisionedThroughputExceeded(m) => {
                Error::ProvisionedThroughputExceeded(m.clone())
            }
            Error::ExpiredIterator(m) => Error::ExpiredIterator(m.clone()),
            Error::ExpiredNextToken(m) => Error::ExpiredNextToken(m.clone()),
            Error::Config(m) => Error::Config(m.clone()),
            Error::Locked { path } => Error::Locked { path: path.clone() },
        }
    }
}
