"""The canonical PyTorch version of the model (arrives with the torch_ref issue)."""
