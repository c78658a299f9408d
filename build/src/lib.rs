//! Builds.
