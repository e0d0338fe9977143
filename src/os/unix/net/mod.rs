//! Unix domain sockets with the API of `std::os::unix::net`.
