"""Shared fixtures: where the real data lives, and offline settings for every test."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

PROJECT_ROOT = Path(__file__).resolve().parents[1]


def shared_data_dir() -> Path:
    """``$MFLLM_DATA`` if set, else ``../shared/data`` beside the project."""
    return Path(os.environ.get("MFLLM_DATA", PROJECT_ROOT.parent / "shared" / "data"))


def require_data(*parts: str) -> Path:
    """The path under the shared data folder, or skip the test saying what is missing."""
    path = shared_data_dir().joinpath(*parts)
    if not path.exists():
        pytest.skip(
            f"real data not found at {path}; set MFLLM_DATA to the folder described in "
            "shared/data/README.md to run this test"
        )
    return path


@pytest.fixture(scope="session")
def rumoureval_dir() -> Path:
    return require_data("rumoureval2019", "rumoureval-2019-training-data")


@pytest.fixture(scope="session")
def pheme_annotations() -> Path:
    return require_data(
        "pheme_rumour_scheme_annotations", "annotations", "en-scheme-annotations.json"
    )


@pytest.fixture(scope="session")
def ced_archive() -> Path:
    return require_data("ced_weibo", "CED_Dataset.tar.xz")


@pytest.fixture(scope="session")
def ced_sample_dir() -> Path:
    return require_data("ced_weibo", "sample")
