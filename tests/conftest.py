"""Shared test setup: a non-interactive matplotlib backend for this process only.

Not through MPLBACKEND: nbval's kernels inherit the environment and must keep the inline backend.
"""
import matplotlib

matplotlib.use("Agg")
