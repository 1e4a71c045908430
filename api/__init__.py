"""The control plane: a FastAPI application over the store and the broker."""
