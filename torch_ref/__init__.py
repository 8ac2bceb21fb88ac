"""The canonical PyTorch version: what a PyTorch user would write, run on the same data, options and batches."""
