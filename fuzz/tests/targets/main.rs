//! The fuzz targets, one test per parser of outside input (see the crate's documentation for
//! the harness). Each runs for `FUZZ_SECONDS` (default 4) after its corpus
//! (`fuzz/corpus/<target>/`) and fails with the saved input on a panic, a hang, a memory
//! overrun or a broken property.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is the failure report

mod config;
mod images;
mod patches;
mod proxy;
