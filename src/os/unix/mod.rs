//! Unix-specific networking, like `std::os::unix`.

pub mod net;
