import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("KITTY_IMAGES_DEVICE", "cpu")

PROJECT_ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory) -> dict[str, str]:
    from diffusers_runner.tiny_models import build_all

    return build_all(tmp_path_factory.mktemp("tiny-models"))
