//! Nothing: this crate exists only for the lock file that names smallvec 1.6.0.
