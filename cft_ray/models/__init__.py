"""Models: the offline tiny model and the vLLM generation actor shared by the data and eval stages."""
