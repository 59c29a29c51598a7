//! One module per CLI verb.

pub mod gen;
pub mod normalize;
pub mod scan;
pub mod rules;
