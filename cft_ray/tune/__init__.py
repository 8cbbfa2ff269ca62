"""cft-ray tune stage."""
