//! One module per CLI verb.

pub mod gen;
pub mod normalize;
pub mod rules;
pub mod run;
pub mod scan;
pub mod validate;
