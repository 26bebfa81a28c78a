//! tl-features
