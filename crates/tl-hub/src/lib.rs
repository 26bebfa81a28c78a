//! tl-hub
