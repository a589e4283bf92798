"""Shared test setup: a non-interactive matplotlib backend (CI has no display)."""
import os

os.environ.setdefault("MPLBACKEND", "Agg")
