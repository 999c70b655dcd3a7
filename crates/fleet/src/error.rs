//! What the fleet's records refuse, with the code the tower's API answers.

/// A request the inventory or a rollout refuses; nothing was changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error {
    /// Stable code: `BAD_FILTER`, `BAD_REQUEST`, `NOT_FOUND`, `CONFLICT`, `NO_SITES`.
    pub code: &'static str,
    /// One line for people.
    pub message: String,
}

/// A filter that does not parse.
pub const BAD_FILTER: &str = "BAD_FILTER";
/// A body that is not what the call takes.
pub const BAD_REQUEST: &str = "BAD_REQUEST";
/// An id that names nothing.
pub const NOT_FOUND: &str = "NOT_FOUND";
/// A write that collides with what is held (an id or a name taken).
pub const CONFLICT: &str = "CONFLICT";
/// A rollout whose selector matches no site.
pub const NO_SITES: &str = "NO_SITES";

impl Error {
    /// An error with this code.
    pub fn new(code: &'static str, message: impl Into<String>) -> Error {
        Error {
            code,
            message: message.into(),
        }
    }

    /// A `BAD_REQUEST`.
    pub fn bad(message: impl Into<String>) -> Error {
        Error::new(BAD_REQUEST, message)
    }
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.code, self.message)
    }
}

impl std::error::Error for Error {}
