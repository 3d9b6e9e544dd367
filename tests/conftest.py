import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CHALLENGE_DATA = Path(
    os.environ.get("GBDNN_CHALLENGE_DATA", ROOT.parent / "shared" / "data" / "graphchallenge")
)


@pytest.fixture(scope="session")
def challenge_dir() -> Path:
    """The real Graph Challenge data beside the project, or skip."""
    if not (CHALLENGE_DATA / "neuron1024").is_dir():
        pytest.skip(
            f"Graph Challenge data not found at {CHALLENGE_DATA} (set GBDNN_CHALLENGE_DATA)"
        )
    return CHALLENGE_DATA
