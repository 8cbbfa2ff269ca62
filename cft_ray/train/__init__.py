"""cft-ray train stage."""
