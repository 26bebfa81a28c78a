//! tl-runtime
