"""cft-ray teacher stage."""
