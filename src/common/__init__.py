"""Shared helpers for the leukemia-classification reproductions."""

import os

# TensorFlow's C++ start-up chatter (CUDA probes, oneDNN notes) hides the notebooks'
# own output; keep warnings and errors. Set TF_CPP_MIN_LOG_LEVEL=0 to see it all.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

# Notebook 04 trains each fine-tuned CNN in a child process (common.isolate) while the
# kernel keeps its own networks on the same GPU: neither may take the whole GPU up front
# (TensorFlow and JAX do by default). Set these to another value to keep the default.
os.environ.setdefault("TF_FORCE_GPU_ALLOW_GROWTH", "true")
os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")
