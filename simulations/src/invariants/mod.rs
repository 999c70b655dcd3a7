//! The site's promises, one file each, checked against the oracle as the run goes and
//! at its end.

pub mod clock;
pub mod convergence;
pub mod durability;
pub mod gc;
pub mod leaders;
pub mod reads;
