"""Pruning torch.nn.Module parameters with torch.nn.utils.prune masks."""

import numpy as np
import pytest

from gbdnn.prune import MagnitudePruner, magnitude_prune

torch = pytest.importorskip("torch", reason="torch is an optional extra: pip install gbdnn[torch]")
from torch.nn.utils import prune as torch_prune  # noqa: E402


@pytest.fixture
def net():
    torch.manual_seed(0)
    return torch.nn.Sequential(
        torch.nn.Linear(12, 16), torch.nn.ReLU(), torch.nn.Dropout(0.1), torch.nn.Linear(16, 4)
    )


def test_masks_follow_torch_conventions(net):
    before = [p.detach().clone() for p in net.parameters()]
    pruned = magnitude_prune(net, 0.75)
    assert pruned is not net
    for p, q in zip(before, net.parameters(), strict=True):  # the caller's module is untouched
        assert torch.equal(p, q)
    assert not torch_prune.is_pruned(net)
    for name in ("0", "3"):
        layer, original = dict(pruned.named_modules())[name], dict(net.named_modules())[name]
        mask = layer.weight_mask.numpy().astype(bool)
        assert mask.shape == original.weight.shape  # torch's (out, in)
        assert mask.sum() == original.weight.numel() - round(0.75 * original.weight.numel())
        # the same mask as gbdnn computes on the (in, out) weight
        ours = magnitude_prune(original.weight.detach().numpy().T.astype(np.float64), 0.75)
        np.testing.assert_array_equal(mask.T, ours.toarray() != 0)
        np.testing.assert_array_equal(layer.weight.detach().numpy()[~mask], 0)


def test_global_scope_exclusion_inplace_and_forward(net):
    x = torch.randn(5, 12)
    out = MagnitudePruner(0.5, scope="global", exclude=["3"]).fit_transform(net, inplace=True)
    assert out is net
    assert torch_prune.is_pruned(net) and not hasattr(net[3], "weight_mask")
    assert int(net[0].weight_mask.sum()) == 96
    net.eval()
    expected = torch.relu(x @ (net[0].weight_orig * net[0].weight_mask).T + net[0].bias)
    expected = expected @ net[3].weight.T + net[3].bias
    torch.testing.assert_close(net(x), expected)
    # pruning again (a schedule's next step) replaces the old mask
    MagnitudePruner(0.75, exclude=["3"]).fit_transform(net, inplace=True)
    assert int(net[0].weight_mask.sum()) == 48


def test_n_m_on_torch_runs_along_the_input_dimension(net):
    pruned = magnitude_prune(net, n_m=(2, 4))
    mask = pruned[0].weight_mask.numpy()  # (out=16, in=12)
    assert (mask.reshape(16, 3, 4).sum(axis=2) == 2).all()
