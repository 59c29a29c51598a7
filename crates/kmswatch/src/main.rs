//! # kmswatch
//!
//! The binary: command-line verbs over the library crates.

fn main() -> anyhow::Result<()> {
    Ok(())
}
