//! Supervisor library.
