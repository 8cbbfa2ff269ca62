"""cft-ray eval stage."""
