//! Entering container namespaces and configuring their interfaces. HELPER-3 fills this in.
