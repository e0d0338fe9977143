//! Platform-specific networking, laid out like `std::os`.

pub mod unix;
