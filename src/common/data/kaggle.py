"""Kaggle datasets through ``kagglehub``, the maintained Kaggle client.

:func:`fetch_kaggle` downloads ``<owner>/<slug>`` into a folder when credentials
exist (``KAGGLE_USERNAME`` and ``KAGGLE_KEY``, ``KAGGLE_API_TOKEN``, or
``kaggle.json`` in ``$KAGGLE_CONFIG_DIR`` or ``~/.kaggle``), and otherwise returns
one line saying what to do. Inside a Kaggle notebook, attaching the dataset
("Add Input") is quicker than downloading it: it is then found under
``/kaggle/input`` without configuration (see :mod:`common.data.discover`).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path


@dataclass
class FetchOutcome:
    """``path`` where the files are, or None with ``message`` saying why and what to do."""

    path: Path | None
    message: str


def kaggle_credentials() -> str | None:
    """Where Kaggle credentials come from (a short description), or None when there are none."""
    if os.environ.get("KAGGLE_USERNAME") and os.environ.get("KAGGLE_KEY"):
        return "KAGGLE_USERNAME and KAGGLE_KEY"
    if os.environ.get("KAGGLE_API_TOKEN"):
        return "KAGGLE_API_TOKEN"
    folder = Path(os.environ.get("KAGGLE_CONFIG_DIR") or Path.home() / ".kaggle")
    for name in ("kaggle.json", "access_token"):
        if (folder / name).is_file():
            return str(folder / name)
    if "KAGGLE_KERNEL_RUN_TYPE" in os.environ:
        return "the Kaggle notebook session"
    return None


def fetch_kaggle(handle: str, dest: Path) -> FetchOutcome:
    """Download Kaggle dataset ``handle`` (``owner/slug``) into ``dest`` with kagglehub."""
    dest = Path(dest)
    source = kaggle_credentials()
    if source is None:
        return FetchOutcome(
            None,
            f"no Kaggle credentials: create an API token at kaggle.com/settings and save it as "
            f"~/.kaggle/kaggle.json (or set KAGGLE_USERNAME and KAGGLE_KEY), then rerun; "
            f"on Kaggle itself, attach {handle} with 'Add Input' instead",
        )
    try:
        import kagglehub
    except ImportError:
        return FetchOutcome(
            None,
            "kagglehub is not installed: pip install kagglehub (make setup installs it), "
            "then rerun",
        )
    try:
        path = kagglehub.dataset_download(handle, output_dir=str(dest))
    except Exception as exc:  # network, credentials, licence consent: kagglehub raises many types
        reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        return FetchOutcome(
            None,
            f"kagglehub could not download {handle} with credentials from {source}: {reason}; "
            f"check the token and that you accepted the dataset's terms on its Kaggle page",
        )
    return FetchOutcome(Path(path), f"downloaded {handle} with credentials from {source}")
