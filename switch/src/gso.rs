//! Software GSO segmentation and checksum completion. HELPER-1 fills this in.
