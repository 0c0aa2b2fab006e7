//! Empty: this package exists to build wasmedge_wasi_socket's own examples (see Cargo.toml).
