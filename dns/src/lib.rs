//! Embedded DNS resolver (127.0.0.11). Skeleton until the DNS issue lands.
