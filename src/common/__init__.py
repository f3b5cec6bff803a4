"""Shared helpers for the leukemia-classification reproductions."""
import os

# TensorFlow's C++ start-up chatter (CUDA probes, oneDNN notes) hides the notebooks'
# own output; keep warnings and errors. Set TF_CPP_MIN_LOG_LEVEL=0 to see it all.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
