"""Long-lived Stable Diffusion runner driven by the kitty-images server over NDJSON on stdin/stdout."""

__version__ = "0.1.0"
