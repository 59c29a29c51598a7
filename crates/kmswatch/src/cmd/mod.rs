//! One module per CLI verb.

pub mod bench;
pub mod gen;
pub mod normalize;
pub mod respond;
pub mod rules;
pub mod run;
pub mod scan;
pub mod validate;
