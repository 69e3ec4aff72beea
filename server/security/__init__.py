"""Security and input hardening of the gRPC server: token authentication (`auth`), TLS (`tls`), and
INVALID_ARGUMENT for undecodable requests (`decode`). See docs/RELIABILITY.md."""
