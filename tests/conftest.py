import os
import sys
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


# the digits helpers live in bench/digits_mlp.py (scikit-learn is imported only when used)
sys.path.insert(0, str(ROOT / "bench"))


@pytest.fixture(scope="session")
def digits_split():
    """The digits train/test split (skips without scikit-learn)."""
    pytest.importorskip("sklearn", reason="the digits data ship with scikit-learn")
    import digits_mlp

    return digits_mlp.load_split()


@pytest.fixture(scope="session")
def digits_model():
    """The trained MLP of data/digits-mlp.npz."""
    import digits_mlp

    import gbdnn

    return gbdnn.load(digits_mlp.MODEL_PATH)
