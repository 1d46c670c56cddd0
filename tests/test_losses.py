"""Losses by hand, their invariances, the no-cross-dataset-pairs rule, and gradients."""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F

from mmpiqa.labels import BATCH_KEYS
from mmpiqa.train import losses as L

EPS = 1e-8


def _phi(x: float) -> float:
    return 0.5 * (1.0 + math.erf(x / math.sqrt(2.0)))


def _pair_cost(t: float, p: float) -> float:
    return 1.0 - math.sqrt(t * p + EPS) - math.sqrt((1.0 - t) * (1.0 - p) + EPS)


# ------------------------------------------------------------------------------------------------ fidelity


def test_fidelity_two_items_by_hand():
    # s = [1, 0], mos = [0.8, 0.2]: one pair, target 1, p = Phi((1 - 0) / sqrt 2) = Phi(0.7071) = 0.76025
    # loss = 1 - sqrt(0.76025) - sqrt(0) = 1 - 0.87192 = 0.12808 (plus the eps terms)
    loss = L.fidelity_loss(torch.tensor([1.0, 0.0]), torch.tensor([0.8, 0.2]))
    assert _phi(1 / math.sqrt(2)) == pytest.approx(0.76025, abs=1e-5)
    assert loss.item() == pytest.approx(_pair_cost(1.0, _phi(1 / math.sqrt(2))), abs=1e-6)
    assert loss.item() == pytest.approx(0.12808, abs=2e-4)


def test_fidelity_three_items_with_a_tie_by_hand():
    # s = [0, 0, 1], mos = [0.5, 0.5, 0.2]
    # (0, 1): equal MOS -> t = 0.5, equal scores -> p = 0.5: cost 1 - 2 sqrt(0.25) = 0
    # (0, 2) and (1, 2): mos_i > mos_j -> t = 1, p = Phi(-1 / sqrt 2) = 0.23975: cost 1 - sqrt(0.23975) = 0.51036
    # mean over the 3 pairs: (0 + 2 * 0.51036) / 3 = 0.34024
    loss = L.fidelity_loss(torch.tensor([0.0, 0.0, 1.0]), torch.tensor([0.5, 0.5, 0.2]))
    expect = (_pair_cost(0.5, 0.5) + 2 * _pair_cost(1.0, _phi(-1 / math.sqrt(2)))) / 3
    assert loss.item() == pytest.approx(expect, abs=1e-6)
    assert loss.item() == pytest.approx(0.34024, abs=2e-4)


def test_fidelity_is_symmetric_in_pair_order_and_accepts_column_vectors():
    s, m = torch.tensor([0.3, -1.0, 2.0, 0.5]), torch.tensor([0.1, 0.9, 0.4, 0.4])
    perm = torch.tensor([2, 0, 3, 1])
    assert L.fidelity_loss(s, m).item() == pytest.approx(L.fidelity_loss(s[perm], m[perm]).item(), abs=1e-7)
    assert L.fidelity_loss(s[:, None], m[:, None]).item() == pytest.approx(L.fidelity_loss(s, m).item())


def test_fidelity_large_margin_reaches_its_minimum_and_scale_matters():
    mos = torch.tensor([0.1, 0.2, 0.3, 0.4, 0.5])
    ranks = torch.arange(5.0)
    values = [L.fidelity_loss(scale * ranks, mos).item() for scale in (0.1, 1.0, 10.0)]
    assert values[0] > values[1] > values[2]  # same order, larger score differences -> lower loss
    assert -2 * math.sqrt(EPS) - 1e-9 <= values[2] < 1e-3  # the minimum is about -2 sqrt(eps)
    assert L.fidelity_loss(-10.0 * ranks, mos).item() > 0.99  # perfectly reversed: the maximum (about 1)
    # the MOS scale does not matter, only its order
    assert L.fidelity_loss(ranks, mos).item() == pytest.approx(L.fidelity_loss(ranks, 100 * mos**2).item())


def test_fidelity_never_forms_cross_dataset_pairs():
    # dataset A: items 0, 2; dataset B: items 1, 3 (interleaved on purpose). In each dataset the scores are in
    # the right order by a margin of 1: pair (i, j) has mos_i < mos_j, so t = 0 and p = Phi(-1 / sqrt 2) = 0.23975,
    # and it costs 1 - sqrt(1 - 0.23975) = 0.12808; the mean over the two within-dataset pairs is the same.
    s = torch.tensor([0.0, 5.0, 1.0, 6.0])
    mos = torch.tensor([0.2, 0.1, 0.8, 0.9])
    group = torch.tensor([0, 1, 0, 1])
    within = _pair_cost(0.0, _phi(-1 / math.sqrt(2)))
    assert within == pytest.approx(0.12808, abs=2e-4)
    assert L.fidelity_loss(s, mos, group).item() == pytest.approx(within, abs=1e-6)
    # cross pairs would change the value a lot (item 0 vs 1: mos 0.2 > 0.1 but score 0 << 5 costs about 0.98)
    assert L.fidelity_loss(s, mos).item() > within + 0.2
    # string dataset names work the same; lists and tuples too
    assert L.fidelity_loss(s, mos, ["a", "b", "a", "b"]).item() == pytest.approx(within, abs=1e-6)
    assert L.fidelity_loss(s, mos, (3, 7, 3, 7)).item() == pytest.approx(within, abs=1e-6)


def test_fidelity_without_pairs_is_a_zero_with_grad():
    s = torch.tensor([0.2, 0.7, 0.1], requires_grad=True)
    loss = L.fidelity_loss(s, torch.tensor([0.1, 0.5, 0.9]), group=["a", "b", "c"])
    assert loss.item() == 0.0 and loss.requires_grad
    loss.backward()
    assert torch.equal(s.grad, torch.zeros(3))
    one = torch.tensor([0.5], requires_grad=True)
    L.fidelity_loss(one, torch.tensor([0.3])).backward()
    assert one.grad is not None


def test_fidelity_gradient_flows_in_the_right_direction():
    s = torch.tensor([0.0, 0.0], requires_grad=True)
    L.fidelity_loss(s, torch.tensor([0.9, 0.1])).backward()
    assert torch.isfinite(s.grad).all()
    assert s.grad[0] < 0 < s.grad[1]  # descending the gradient raises the better image's score
    s64 = torch.tensor([0.3, -0.2, 1.1, 0.4], dtype=torch.float64, requires_grad=True)
    mos = torch.tensor([0.2, 0.6, 0.6, 0.9], dtype=torch.float64)
    assert torch.autograd.gradcheck(lambda x: L.fidelity_loss(x, mos, [0, 0, 1, 1]), (s64,))


def test_fidelity_half_precision_input():
    s = torch.tensor([1.0, 0.0], dtype=torch.float16)
    assert L.fidelity_loss(s, [0.8, 0.2]).item() == pytest.approx(0.12808, abs=1e-3)


# -------------------------------------------------------------------------------------- other quality losses


def test_l1_mse_are_the_torch_ones():
    s, m = torch.tensor([0.1, 0.5, 0.9]), torch.tensor([0.2, 0.5, 0.6])
    assert L.l1_loss(s, m).item() == pytest.approx((0.1 + 0.0 + 0.3) / 3)
    assert L.mse_loss(s, m).item() == pytest.approx((0.01 + 0.0 + 0.09) / 3)
    assert L.l1_loss(s[:, None], m, group=[0, 0, 1]).item() == pytest.approx(F.l1_loss(s, m).item())
    with pytest.raises(ValueError, match="differ in length"):
        L.mse_loss(s, m[:2])


def test_plcc_loss_values_and_invariance():
    m = torch.tensor([0.1, 0.4, 0.3, 0.9])
    assert L.plcc_loss(2 * m + 3, m).item() == pytest.approx(0.0, abs=1e-6)
    assert L.plcc_loss(-m, m).item() == pytest.approx(1.0, abs=1e-6)
    s = torch.tensor([0.3, 0.1, 0.5, 0.7])
    assert L.plcc_loss(s, m).item() == pytest.approx(L.plcc_loss(10 * s - 4, m).item(), abs=1e-6)
    assert L.plcc_loss(torch.ones(4), m).item() == pytest.approx(0.5)  # constant prediction: r = 0, no nan


def test_plcc_loss_per_group_is_the_mean_of_group_losses():
    s = torch.tensor([0.1, 0.2, 0.3, 5.0, 4.0, 6.0])
    m = torch.tensor([0.3, 0.1, 0.5, 0.2, 0.6, 0.4])
    g = torch.tensor([0, 0, 0, 1, 1, 1])
    per_group = (L.plcc_loss(s[:3], m[:3]) + L.plcc_loss(s[3:], m[3:])) / 2
    assert L.plcc_loss(s, m, g).item() == pytest.approx(per_group.item(), abs=1e-6)
    assert L.plcc_loss(s, m).item() != pytest.approx(per_group.item(), abs=1e-3)


def test_registry():
    assert set(L.QUALITY_LOSSES) == {"fidelity", "l1", "mse", "plcc"}
    assert L.get_quality_loss("fidelity") is L.fidelity_loss
    with pytest.raises(ValueError, match="unknown quality loss 'srcc'"):
        L.get_quality_loss("srcc")


# ------------------------------------------------------------------------------------------- classification


def test_distortion_loss_ignores_unknown():
    logits = torch.tensor([[2.0, 0.0, -1.0], [0.0, 1.0, 0.0], [5.0, -5.0, 0.0]], requires_grad=True)
    target = torch.tensor([0, -1, 2])
    expect = F.cross_entropy(logits[[0, 2]], target[[0, 2]])
    assert L.distortion_loss(logits, target).item() == pytest.approx(expect.item())
    L.distortion_loss(logits, target).backward()
    assert torch.equal(logits.grad[1], torch.zeros(3))  # the unknown row gets no gradient


def test_distortion_loss_all_unknown_and_bad_targets():
    logits = torch.randn(2, 3, requires_grad=True)
    loss = L.distortion_loss(logits, [-1, -1])
    assert loss.item() == 0.0
    loss.backward()
    with pytest.raises(ValueError, match="out of range"):
        L.distortion_loss(logits, [0, 3])
    with pytest.raises(ValueError, match="2 samples"):
        L.distortion_loss(logits, [0, 1, 2])


def test_scene_loss_softmax_by_hand_and_unknown_rows():
    # logits [0, 0, log 3] -> softmax [0.2, 0.2, 0.6]; labels {0, 2} -> target [0.5, 0, 0.5]
    # loss = -(0.5 log 0.2 + 0.5 log 0.6) = 1.0601
    logits = torch.tensor([[0.0, 0.0, math.log(3.0)], [9.0, 1.0, 0.0]])
    labels = torch.tensor([[1, 0, 1], [0, 0, 0]])  # the second row is unknown and skipped
    expect = -(0.5 * math.log(0.2) + 0.5 * math.log(0.6))
    assert L.scene_loss(logits, labels).item() == pytest.approx(expect, abs=1e-6)
    assert L.scene_loss(logits, labels, mode="bce").item() == pytest.approx(
        F.binary_cross_entropy_with_logits(logits[:1], labels[:1].float()).item()
    )
    with pytest.raises(ValueError, match="mode"):
        L.scene_loss(logits, labels, mode="focal")
    with pytest.raises(ValueError, match="do not match"):
        L.scene_loss(logits, labels[:, :2])
    zero = L.scene_loss(logits.requires_grad_(), torch.zeros(2, 3))
    assert zero.item() == 0.0 and zero.requires_grad


# ------------------------------------------------------------------------------------------------- total


def _batch(n=6):
    g = torch.Generator().manual_seed(0)
    return {
        BATCH_KEYS["mos"]: torch.rand(n, generator=g),
        BATCH_KEYS["group"]: torch.tensor([0, 0, 0, 1, 1, 1])[:n],
        BATCH_KEYS["scene"]: torch.eye(4)[torch.arange(n) % 4],
        BATCH_KEYS["distortion"]: torch.tensor([0, 1, -1, 2, 2, -1])[:n],
    }


def test_total_loss_is_the_weighted_sum_and_all_branches_get_gradients():
    batch = _batch()
    score = torch.randn(6, requires_grad=True)
    scene = torch.randn(6, 4, requires_grad=True)
    dist = torch.randn(6, 3, requires_grad=True)
    weights = {"quality": 1.0, "scene": 0.5, "distortion": 0.25, "quality_loss": "fidelity"}
    loss, parts = L.total_loss(score, scene, dist, batch, weights)
    q = L.fidelity_loss(score, batch["mos"], batch[BATCH_KEYS["group"]])
    sc = L.scene_loss(scene, batch[BATCH_KEYS["scene"]])
    d = L.distortion_loss(dist, batch[BATCH_KEYS["distortion"]])
    assert loss.item() == pytest.approx((q + 0.5 * sc + 0.25 * d).item(), abs=1e-6)
    assert set(parts) == {"quality", "scene", "distortion", "total"}
    assert parts["quality"] == pytest.approx(q.item()) and parts["total"] == pytest.approx(loss.item())
    assert all(isinstance(v, float) for v in parts.values())
    loss.backward()
    for t in (score, scene, dist):
        assert t.grad is not None and t.grad.abs().sum() > 0


def test_total_loss_skips_missing_branches_and_zero_weights():
    batch = _batch()
    batch.pop(BATCH_KEYS["scene"])  # not needed: the scene branch is absent
    score = torch.randn(6, 1, requires_grad=True)
    _, parts = L.total_loss(score, None, torch.randn(6, 3), batch, SimpleNamespace(quality_loss="l1"))
    assert set(parts) == {"quality", "distortion", "total"}
    assert parts["quality"] == pytest.approx(L.l1_loss(score, batch["mos"]).item())
    _, parts = L.total_loss(score, None, torch.randn(6, 3), batch, L.LossWeights(distortion=0.0))
    assert set(parts) == {"quality", "total"}
    _, parts = L.total_loss(score, None, None, batch, None)  # default weights
    assert parts["quality"] == pytest.approx(
        L.fidelity_loss(score, batch["mos"], batch[BATCH_KEYS["group"]]).item()
    )


def test_total_loss_errors():
    batch = _batch()
    score = torch.randn(6)
    with pytest.raises(ValueError, match="no branch"):
        L.total_loss(None, None, None, batch, {})
    with pytest.raises(ValueError, match="unknown loss weight"):
        L.total_loss(score, None, None, batch, {"qualty": 1.0})
    with pytest.raises(ValueError, match="unknown quality loss"):
        L.total_loss(score, None, None, batch, {"quality_loss": "huber"})
    no_scene = {k: v for k, v in batch.items() if k != BATCH_KEYS["scene"]}
    with pytest.raises(KeyError, match="scene"):
        L.total_loss(score, torch.randn(6, 4), None, no_scene, {})
