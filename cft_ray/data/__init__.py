"""cft-ray data stage."""
