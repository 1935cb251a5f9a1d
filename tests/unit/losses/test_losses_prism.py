"""PRISM/PASSION losses: pixel KL, prototype distillation, RP/omega, E^m state, combiner."""
import io
import math

import pytest
import torch

from helpers.losses import pair_rows
from nnunet_prism.losses import (DEFAULT_GAMMA, DEFAULT_LAMBDA_PIXEL, DEFAULT_LAMBDA_PROTO, DEFAULT_TEMPERATURE,
                                 PreferenceState, deep_supervision_weights, kl_divergence_map, pixel_distillation_loss,
                                 preference_mask, prism_distillation_loss, prototype_distillation, relative_preference)
from nnunet_prism.losses.preference import combine_distillation

SPATIAL = {2: (3, 4), 3: (2, 3, 2)}


def _gen(seed=0):
    return torch.Generator().manual_seed(seed)


def _label_target(b, spatial, num_classes, seed=0):
    return torch.randint(0, num_classes, (b, 1, *spatial), generator=_gen(seed))


def _region_target(b, spatial, r, seed=0):
    return (torch.rand(b, r, *spatial, generator=_gen(seed)) > 0.5).float()


def test_defaults_are_the_official_ones():
    assert (DEFAULT_TEMPERATURE, DEFAULT_LAMBDA_PIXEL, DEFAULT_LAMBDA_PROTO, DEFAULT_GAMMA) == \
        (4.0, 0.5, 0.1, 0.01)


# ---------------------------------------------------------------- pixel-wise distillation

@pytest.mark.parametrize("dims", [2, 3])
@pytest.mark.parametrize("region_based", [False, True])
@pytest.mark.parametrize("prob_floor", [None, 0.005])
def test_pixel_zero_when_student_equals_teacher(dims, region_based, prob_floor):
    b, m, c = 2, 3, 4
    teacher = torch.randn(b, c, *SPATIAL[dims], generator=_gen(1)) * 5
    student = teacher.unsqueeze(1).repeat(1, m, *[1] * (dims + 1))
    mask = torch.ones(b, m, dtype=torch.bool)
    rows, pairs = pair_rows(student, mask)
    per_mod, per_sample = pixel_distillation_loss(teacher, rows, mask, region_based=region_based,
                                                  prob_floor=prob_floor, return_per_sample=True, pairs=pairs)
    assert per_mod.shape == (m,) and per_sample.shape == (b, m)
    assert torch.allclose(per_mod, torch.zeros(m), atol=1e-6)
    assert torch.allclose(per_sample, torch.zeros(b, m), atol=1e-6)


def _softmax(v):
    e = [math.exp(x) for x in v]
    return [x / sum(e) for x in e]


def test_pixel_softmax_kl_known_value():
    """Two voxels, two classes, T = 2, computed by hand: T^2 * mean_i sum_c p_t log(p_t / p_s)."""
    T = 2.0
    t_logits = [(2.0, 0.0), (0.0, 0.0)]  # per voxel
    s_logits = [(0.0, 0.0), (0.0, 2.0)]
    kls = []
    for tl, sl in zip(t_logits, s_logits):
        pt, ps = _softmax([x / T for x in tl]), _softmax([x / T for x in sl])
        kls.append(sum(a * math.log(a / b) for a, b in zip(pt, ps)))
    expected_sum = T * T * sum(kls) / 2
    teacher = torch.tensor(t_logits).T.reshape(1, 2, 1, 2)           # (B, C, 1, 2): 2D, 2 voxels
    student = torch.tensor(s_logits).T.reshape(1, 1, 2, 1, 2)        # (B, M=1, C, 1, 2)
    mask = torch.ones(1, 1, dtype=torch.bool)
    rows, pairs = pair_rows(student, mask)
    got_sum = pixel_distillation_loss(teacher, rows, mask, temperature=T, class_reduction="sum", pairs=pairs)
    got_mean = pixel_distillation_loss(teacher, rows, mask, temperature=T, pairs=pairs)
    assert got_sum.item() == pytest.approx(expected_sum, rel=1e-5)
    assert got_mean.item() == pytest.approx(expected_sum / 2, rel=1e-5)  # mean over C = 2 classes
    # the KL map itself, summed over classes, is the per-voxel KL
    kl_map = kl_divergence_map(teacher, student[:, 0], temperature=T).sum(1).flatten()
    assert torch.allclose(kl_map, T * T * torch.tensor(kls), rtol=1e-5)


def test_pixel_bernoulli_kl_known_value():
    """One region, two voxels, T = 2: per voxel T^2 [p log(p/q) + (1-p) log((1-p)/(1-q))]."""
    T = 2.0
    t_logits, s_logits = [2.0, -1.0], [0.0, 1.0]

    def sig(x):
        return 1 / (1 + math.exp(-x))

    kls = []
    for tl, sl in zip(t_logits, s_logits):
        p, q = sig(tl / T), sig(sl / T)
        kls.append(p * math.log(p / q) + (1 - p) * math.log((1 - p) / (1 - q)))
    expected = T * T * sum(kls) / 2
    teacher = torch.tensor(t_logits).reshape(1, 1, 2, 1, 1)          # 3D: (B, R, 2, 1, 1)
    student = torch.tensor(s_logits).reshape(1, 1, 1, 2, 1, 1)
    mask = torch.ones(1, 1, dtype=torch.bool)
    rows, pairs = pair_rows(student, mask)
    got = pixel_distillation_loss(teacher, rows, mask, temperature=T, region_based=True, pairs=pairs)
    assert got.item() == pytest.approx(expected, rel=1e-5)


def test_pixel_official_clamp_matches_formula():
    T = 1.0
    teacher = torch.tensor([8.0, 0.0]).reshape(1, 2, 1, 1)
    student = torch.tensor([0.0, 8.0]).reshape(1, 1, 2, 1, 1)
    pt = [max(p, 0.005) for p in _softmax([8.0, 0.0])]
    ps = [max(p, 0.005) for p in _softmax([0.0, 8.0])]
    expected = sum(a * (math.log(a) - math.log(b)) for a, b in zip(pt, ps)) / 2
    mask = torch.ones(1, 1, dtype=torch.bool)
    rows, pairs = pair_rows(student, mask)
    got = pixel_distillation_loss(teacher, rows, mask, temperature=T, prob_floor=0.005, pairs=pairs)
    assert got.item() == pytest.approx(expected, rel=1e-5)


@pytest.mark.parametrize("region_based", [False, True])
def test_pixel_gradient_to_students_only_and_absent_modality(region_based):
    b, m, c = 3, 3, 2
    teacher = torch.randn(b, c, 4, 4, generator=_gen(2), requires_grad=True)
    student = torch.randn(b, m, c, 4, 4, generator=_gen(3), requires_grad=True)
    mask = torch.tensor([[1, 0, 0], [1, 1, 0], [0, 1, 0]], dtype=torch.bool)  # modality 2 absent
    rows, pairs = pair_rows(student, mask)
    per_mod, per_sample = pixel_distillation_loss(teacher, rows, mask, region_based=region_based,
                                                  return_per_sample=True, pairs=pairs)
    per_mod.sum().backward()
    assert teacher.grad is None
    assert per_mod[2].item() == 0.0
    assert torch.all(per_sample[~mask] == 0)
    assert torch.all(per_sample[mask] > 0)
    grad = student.grad
    for bi in range(b):
        for mi in range(m):
            if mask[bi, mi]:
                assert grad[bi, mi].abs().sum() > 0
            else:
                assert torch.all(grad[bi, mi] == 0)
    # per-modality value = mean over the samples where it is present
    assert per_mod[0].item() == pytest.approx(per_sample[:2, 0].mean().item(), rel=1e-6)
    assert per_mod[1].item() == pytest.approx(per_sample[1:, 1].mean().item(), rel=1e-6)


def test_pixel_empty_mask_gives_zero():
    teacher = torch.randn(2, 3, 4, 4)
    student = torch.randn(2, 2, 3, 4, 4, requires_grad=True)
    mask = torch.zeros(2, 2, dtype=torch.bool)
    rows, pairs = pair_rows(student, mask)
    loss = pixel_distillation_loss(teacher, rows, mask, pairs=pairs)
    assert torch.all(loss == 0)
    loss.sum().backward()  # still differentiable (trivially)


def test_pixel_deep_supervision_weighting():
    b, m, c = 2, 2, 3
    teachers = [torch.randn(b, c, 8, 8, generator=_gen(4)), torch.randn(b, c, 4, 4, generator=_gen(5)),
                torch.randn(b, c, 2, 2, generator=_gen(6))]
    students = [torch.randn(b, m, *t.shape[1:], generator=_gen(7 + i)) for i, t in enumerate(teachers)]
    mask = torch.tensor([[1, 1], [1, 0]], dtype=torch.bool)
    students, pairs = pair_rows(students, mask)
    single = [pixel_distillation_loss(t, s, mask, pairs=pairs) for t, s in zip(teachers, students)]
    # default: 1, 1/2, 1/4 normalised
    w = torch.tensor([1, 0.5, 0.25]) / 1.75
    expected = sum(wi * li for wi, li in zip(w, single))
    assert torch.allclose(pixel_distillation_loss(teachers, students, mask, pairs=pairs), expected, rtol=1e-5)
    # explicit weights are normalised; a zero weight skips its level (nnU-Net's last level)
    got = pixel_distillation_loss(teachers, students, mask, ds_weights=[2.0, 2.0, 0.0], pairs=pairs)
    assert torch.allclose(got, 0.5 * single[0] + 0.5 * single[1], rtol=1e-5)
    assert deep_supervision_weights(2, [0.75, 0.25]) == [0.75, 0.25]
    with pytest.raises(ValueError):
        pixel_distillation_loss(teachers, students[:2], mask, pairs=pairs)


# ---------------------------------------------------------------- prototype distillation

def _reference_proto(tf, sf, class_masks_bool):
    """Naive loops: per present class, cosine maps of every voxel, mean over voxels and classes."""
    tf, sf = tf.flatten(1), sf.flatten(1)
    cm = class_masks_bool.flatten(1)
    sq, ab, k_used = 0.0, 0.0, 0
    for k in range(cm.shape[0]):
        sel = cm[k]
        if not sel.any():
            continue
        ct, cs = tf[:, sel].mean(1), sf[:, sel].mean(1)
        st = torch.nn.functional.cosine_similarity(tf, ct[:, None], dim=0, eps=1e-8)
        ss = torch.nn.functional.cosine_similarity(sf, cs[:, None], dim=0, eps=1e-8)
        sq += ((ss - st) ** 2).mean().item()
        ab += (ss - st).abs().mean().item()
        k_used += 1
    return sq / k_used, ab / k_used


@pytest.mark.parametrize("dims", [2, 3])
@pytest.mark.parametrize("region_based", [False, True])
def test_proto_zero_when_student_equals_teacher(dims, region_based):
    b, m, f = 2, 3, 5
    spatial = SPATIAL[dims]
    tf = torch.randn(b, f, *spatial, generator=_gen(8))
    sf = tf.unsqueeze(1).repeat(1, m, *[1] * (dims + 1))
    target = _region_target(b, spatial, 3) if region_based else _label_target(b, spatial, 4)
    mask = torch.ones(b, m, dtype=torch.bool)
    rows, pairs = pair_rows(sf, mask)
    res = prototype_distillation(tf, rows, target, mask, region_based, pairs=pairs)
    assert res.loss.shape == res.gap.shape == res.valid.shape == (b, m)
    assert torch.all(res.valid)
    assert torch.allclose(res.loss, torch.zeros(b, m), atol=1e-10)
    assert torch.allclose(res.gap, torch.zeros(b, m), atol=1e-6)


@pytest.mark.parametrize("dims", [2, 3])
@pytest.mark.parametrize("region_based", [False, True])
def test_proto_matches_naive_reference(dims, region_based):
    b, m, f = 2, 2, 4
    spatial = SPATIAL[dims]
    tf = torch.randn(b, f, *spatial, generator=_gen(9))
    sf = torch.randn(b, m, f, *spatial, generator=_gen(10))
    if region_based:
        target = _region_target(b, spatial, 3, seed=11)
        cms = target.bool()
    else:
        target = _label_target(b, spatial, 3, seed=11)
        cms = torch.stack([target[:, 0] == k for k in range(3)], 1)
    mask = torch.ones(b, m, dtype=torch.bool)
    rows, pairs = pair_rows(sf, mask)
    res = prototype_distillation(tf, rows, target, mask, region_based, pairs=pairs)
    for bi in range(b):
        for mi in range(m):
            sq, ab = _reference_proto(tf[bi], sf[bi, mi], cms[bi])
            assert res.loss[bi, mi].item() == pytest.approx(sq, rel=1e-4, abs=1e-7)
            assert res.gap[bi, mi].item() == pytest.approx(ab, rel=1e-4, abs=1e-7)


def test_proto_absent_classes_skipped_and_background_only_sample_invalid():
    f, spatial = 3, (4, 4)
    tf = torch.randn(3, f, *spatial, generator=_gen(12))
    sf = torch.randn(3, 2, f, *spatial, generator=_gen(13), requires_grad=True)
    target = torch.zeros(3, 1, *spatial, dtype=torch.long)
    target[0, 0, :2] = 2            # sample 0: classes 0 and 2 of 4 (1 and 3 absent)
    target[1] = 1                   # sample 1: only class 1 (background absent)
    # sample 2: background only -> no foreground
    mask = torch.ones(3, 2, dtype=torch.bool)
    rows, pairs = pair_rows(sf, mask)
    res = prototype_distillation(tf, rows, target, mask, num_classes=4, pairs=pairs)
    assert torch.isfinite(res.loss).all() and torch.isfinite(res.gap).all()
    assert res.valid.tolist() == [[True, True], [True, True], [False, False]]
    assert torch.all(res.loss[2] == 0) and torch.all(res.gap[2] == 0)
    # declaring more classes than occur changes nothing (absent ones are skipped, not averaged)
    res3 = prototype_distillation(tf, rows, target, mask, num_classes=3, pairs=pairs)
    assert torch.allclose(res.loss, res3.loss) and torch.allclose(res.gap, res3.gap)
    sq, _ = _reference_proto(tf[0], sf[0, 1].detach(),
                             torch.stack([target[0, 0] == k for k in range(4)]))
    assert res.loss[0, 1].item() == pytest.approx(sq, rel=1e-4)
    res.loss.sum().backward()
    assert torch.isfinite(sf.grad).all()
    assert torch.all(sf.grad[2] == 0)
    # without background: sample 1's only class is foreground, so it stays valid
    nobg = prototype_distillation(tf, rows, target, mask, num_classes=4, include_background=False, pairs=pairs)
    assert nobg.valid[1].all() and not nobg.valid[2].any()


def test_proto_empty_region_sample_and_zero_features():
    tf = torch.zeros(2, 3, 2, 2, 2)  # all-zero features: cosine eps path, no NaN
    sf = torch.zeros(2, 2, 3, 2, 2, 2, requires_grad=True)
    target = torch.zeros(2, 3, 2, 2, 2)
    target[0, 0, 0] = 1
    mask = torch.ones(2, 2, dtype=torch.bool)
    rows, pairs = pair_rows(sf, mask)
    res = prototype_distillation(tf, rows, target, mask, region_based=True, pairs=pairs)
    assert res.valid.tolist() == [[True, True], [False, False]]
    res.loss.sum().backward()
    assert torch.isfinite(sf.grad).all()


@pytest.mark.parametrize("region_based", [False, True])
def test_proto_gradient_and_absent_modality(region_based):
    b, m, f, spatial = 2, 3, 4, (3, 3, 3)
    tf = torch.randn(b, f, *spatial, generator=_gen(14), requires_grad=True)
    sf = torch.randn(b, m, f, *spatial, generator=_gen(15), requires_grad=True)
    target = _region_target(b, spatial, 2, seed=16) if region_based else _label_target(b, spatial, 3, 16)
    mask = torch.tensor([[1, 0, 1], [1, 0, 0]], dtype=torch.bool)
    rows, pairs = pair_rows(sf, mask)
    res = prototype_distillation(tf, rows, target, mask, region_based, pairs=pairs)
    assert not res.gap.requires_grad
    res.loss.sum().backward()
    assert tf.grad is None
    assert torch.all(res.loss[~mask] == 0) and torch.all(res.gap[~mask] == 0)
    assert not res.valid[~mask].any()
    assert torch.all(sf.grad[~mask] == 0)
    assert sf.grad[0, 0].abs().sum() > 0 and sf.grad[0, 2].abs().sum() > 0


def test_proto_shape_errors_are_clear():
    tf = torch.randn(1, 2, 4, 4)
    sf = torch.randn(1, 1, 2, 4, 4)
    mask = torch.ones(1, 1, dtype=torch.bool)
    rows, pairs = pair_rows(sf, mask)
    with pytest.raises(ValueError, match="spatial size"):
        prototype_distillation(tf, rows, torch.zeros(1, 1, 2, 2, dtype=torch.long), mask, pairs=pairs)


# ---------------------------------------------------------------- RP, omega, E^m

def test_relative_preference_and_omega_on_hand_made_gap():
    gap = torch.tensor([[1.0, 2.0, 3.0, 9.0],     # all present: mean 3.75
                        [2.0, 4.0, 0.0, 7.0],     # modality 2 absent: mean over 0, 1, 3 = 13/3
                        [0.0, 0.0, 0.0, 0.0],     # mean 0 -> undefined
                        [5.0, 0.0, 0.0, 0.0]])    # only modality 0 present: RP = 0
    mask = torch.tensor([[1, 1, 1, 1], [1, 1, 0, 1], [1, 1, 1, 1], [1, 0, 0, 0]], dtype=torch.bool)
    valid = mask.clone()
    valid[1, 3] = False                           # e.g. invalid entry excluded from the mean
    rp, rp_valid = relative_preference(gap, mask, valid)
    exp0 = [1 - g / 3.75 for g in (1.0, 2.0, 3.0, 9.0)]
    assert rp[0].tolist() == pytest.approx(exp0)
    assert rp[1, :2].tolist() == pytest.approx([1 - 2 / 3, 1 - 4 / 3])
    assert rp_valid.tolist() == [[True] * 4, [True, True, False, False], [False] * 4,
                                 [True, False, False, False]]
    assert rp[1, 2] == 0 and rp[1, 3] == 0 and torch.all(rp[2] == 0) and rp[3, 0] == 0
    omega = preference_mask(rp, rp_valid)
    assert omega.tolist() == [[0, 0, 0, 1], [0, 1, 0, 0], [0, 0, 0, 0], [0, 0, 0, 0]]


def test_preference_state_paper_rule():
    state = PreferenceState([0.2, 0.5, 0.0])
    assert state.coefficients().tolist() == pytest.approx([1.25, 2.0, 1.0])
    rp = torch.tensor([[0.5, -1.0, 0.2], [0.1, 0.0, 9.0]])
    valid = torch.tensor([[1, 1, 1], [1, 0, 0]], dtype=torch.bool)
    state.update_batch(rp, valid)
    state.update_batch(torch.tensor([[0.3, -0.5, 0.0]]), torch.tensor([[1, 1, 0]], dtype=torch.bool))
    mean_rp = state.end_epoch(gamma=0.1)
    assert mean_rp.tolist() == pytest.approx([0.3, -0.75, 0.2])
    assert state.E.tolist() == pytest.approx([1.25 - 0.03, 2.0 + 0.075, 1.0 - 0.02])
    assert torch.all(state.rp_sum == 0) and torch.all(state.rp_count == 0)
    # an epoch without any valid RP leaves E unchanged
    before = state.E.clone()
    assert torch.all(state.end_epoch() == 0) and torch.equal(state.E, before)
    # E never goes negative by default
    low = PreferenceState([0.0])
    low.update_batch(torch.tensor([[0.9]]), torch.tensor([[True]]))
    low.end_epoch(gamma=10.0)
    assert low.E.item() == 0.0


def test_preference_state_official_rule():
    state = PreferenceState([0.2, 0.4, 0.6, 0.8], rule="official")
    fixed = torch.tensor([1 / 0.8, 1 / 0.6, 1 / 0.4, 1 / 0.2], dtype=torch.float64)
    assert torch.allclose(state.E, fixed)
    state.update_batch(torch.tensor([[0.5, 0.1, -0.2, -100.0]]), torch.ones(1, 4, dtype=torch.bool))
    state.end_epoch(gamma=0.1)
    beta = torch.tensor([0.95, 0.99, 1.02, 4.0], dtype=torch.float64)  # last one clamped to 4
    beta = 2.0 * beta / beta.norm()                                     # sqrt(M) = 2 for M = 4
    assert torch.allclose(state.beta, beta)
    assert state.beta.norm().item() == pytest.approx(2.0)
    assert torch.allclose(state.E, fixed * beta)
    with pytest.raises(ValueError):
        PreferenceState([0.2], rule="nope")
    with pytest.raises(ValueError):
        PreferenceState([1.0])


@pytest.mark.parametrize("rule", ["paper", "official"])
def test_preference_state_round_trip_is_exact(rule):
    state = PreferenceState([0.1, 0.3, 0.7], rule=rule, gamma=0.05)
    state.update_batch(torch.tensor([[0.3, -0.2, 0.1]]), torch.ones(1, 3, dtype=torch.bool))
    state.end_epoch()
    state.update_batch(torch.tensor([[0.1, -0.4, 0.7]]), torch.tensor([[1, 1, 0]], dtype=torch.bool))
    buffer = io.BytesIO()
    torch.save(state.state_dict(), buffer)
    buffer.seek(0)
    restored = PreferenceState([0.0, 0.0, 0.0])
    restored.load_state_dict(torch.load(buffer, weights_only=True))
    for key in ("E", "beta", "fixed", "rp_sum", "rp_count"):
        assert torch.equal(getattr(state, key), getattr(restored, key))
    assert (restored.rule, restored.gamma, restored.epochs) == (rule, 0.05, 1)
    assert torch.equal(state.end_epoch(), restored.end_epoch())
    assert torch.equal(state.E, restored.E)
    with pytest.raises(ValueError):
        PreferenceState([0.0, 0.0]).load_state_dict(state.state_dict())


def test_preference_state_accumulators_for_ddp():
    a, b = PreferenceState([0.0, 0.5]), PreferenceState([0.0, 0.5])
    a.update_batch(torch.tensor([[0.2, -0.2]]), torch.ones(1, 2, dtype=torch.bool))
    b.update_batch(torch.tensor([[0.4, 0.0]]), torch.tensor([[1, 0]], dtype=torch.bool))
    reduced = a.accumulators() + b.accumulators()   # what all_reduce(SUM) gives
    assert reduced.shape == (2, 2)
    a.set_accumulators(reduced)
    assert a.end_epoch(gamma=1.0).tolist() == pytest.approx([0.3, -0.2])


# ---------------------------------------------------------------- combiner

@pytest.mark.parametrize("region_based", [False, True])
@pytest.mark.parametrize("dims", [2, 3])
def test_prism_distillation_loss_combines_terms(region_based, dims):
    b, m, c, f = 3, 3, 3, 4
    spatial = SPATIAL[dims]
    low = tuple(max(1, s // 2) for s in spatial)
    teacher_logits = [torch.randn(b, c, *spatial, generator=_gen(20)),
                      torch.randn(b, c, *low, generator=_gen(21))]
    student_logits = [torch.randn(b, m, c, *spatial, generator=_gen(22), requires_grad=True),
                      torch.randn(b, m, c, *low, generator=_gen(23), requires_grad=True)]
    tf = torch.randn(b, f, *spatial, generator=_gen(24), requires_grad=True)
    sf = torch.randn(b, m, f, *spatial, generator=_gen(25), requires_grad=True)
    target = _region_target(b, spatial, c, 26) if region_based else _label_target(b, spatial, c, 26)
    mask = torch.tensor([[1, 1, 1], [1, 0, 1], [0, 1, 0]], dtype=torch.bool)
    e = torch.tensor([1.0, 2.0, 0.5])
    student_rows, pairs = pair_rows(student_logits, mask)
    feature_rows, _ = pair_rows(sf, mask)
    total, stats = prism_distillation_loss(teacher_logits, student_rows, tf, feature_rows, [target], mask, e,
                                           region_based=region_based, pairs=pairs)
    _, pixel = pixel_distillation_loss(teacher_logits, student_rows, mask, region_based=region_based,
                                       return_per_sample=True, pairs=pairs)
    proto = prototype_distillation(tf, feature_rows, target, mask, region_based, pairs=pairs)
    rp, rp_valid = relative_preference(proto.gap, mask, proto.valid)
    omega = preference_mask(rp, rp_valid)
    expected = (0.5 * e * pixel + 0.1 * omega * proto.loss).sum(1).mean()
    assert total.item() == pytest.approx(expected.item(), rel=1e-5)
    assert torch.equal(stats["omega"], omega) and torch.equal(stats["rp"], rp)
    assert stats["pixel"].shape == stats["proto"].shape == stats["mean_rp"].shape == (m,)
    total.backward()
    assert tf.grad is None
    assert torch.all(student_logits[0].grad[~mask] == 0) and torch.all(sf.grad[~mask] == 0)
    assert student_logits[0].grad[mask].abs().sum() > 0


def test_everything_absent_still_differentiable():
    """A batch with no usable pair gives exact zeros that still carry a (zero) gradient."""
    tf = torch.randn(1, 2, 3, 3)
    sf = torch.randn(1, 2, 2, 3, 3, requires_grad=True)
    mask = torch.ones(1, 2, dtype=torch.bool)
    rows, pairs = pair_rows(sf, mask)
    res = prototype_distillation(tf, rows, torch.zeros(1, 1, 3, 3, dtype=torch.long), mask, pairs=pairs)
    assert not res.valid.any() and torch.all(res.loss == 0)
    res.loss.sum().backward()
    assert torch.all(sf.grad == 0)


def test_losses_are_float32_under_autocast():
    tl = torch.randn(2, 3, 4, 4, generator=_gen(30))
    sl = torch.randn(2, 2, 3, 4, 4, generator=_gen(31))
    tf = torch.randn(2, 5, 4, 4, generator=_gen(32))
    sf = tf.unsqueeze(1) + 1e-3 * torch.randn(2, 2, 5, 4, 4, generator=_gen(33))
    target = _label_target(2, (4, 4), 3, 34)
    mask = torch.ones(2, 2, dtype=torch.bool)
    sl, pairs = pair_rows(sl, mask)
    sf, _ = pair_rows(sf, mask)
    ref_pixel = pixel_distillation_loss(tl, sl, mask, pairs=pairs)
    ref_proto = prototype_distillation(tf, sf, target, mask, pairs=pairs)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        pixel = pixel_distillation_loss(tl.bfloat16(), sl.bfloat16(), mask, pairs=pairs)
        proto = prototype_distillation(tf, sf, target, mask, pairs=pairs)
    assert pixel.dtype == proto.loss.dtype == torch.float32
    assert torch.allclose(proto.loss, ref_proto.loss, rtol=1e-5, atol=1e-12)
    assert torch.allclose(pixel, ref_pixel, rtol=5e-2)  # only the bf16 inputs differ


def _dense_reference(teacher_logits, dense_logits, tf, dense_features, class_masks_bool, mask, e, region_based):
    """The objective on dense (B, M, ...) students, term by term: per present (n, m) the pixel KL
    (one level, weight 1) and the naive prototype terms, then the combiner."""
    b, m = mask.shape
    pixel, proto, gap = torch.zeros(b, m), torch.zeros(b, m), torch.zeros(b, m)
    foreground = class_masks_bool.flatten(2).any(-1)                  # (B, K)
    has_foreground = foreground.any(1) if region_based else foreground[:, 1:].any(1)
    valid = mask & has_foreground[:, None]
    for n in range(b):
        for k in range(m):
            if not mask[n, k]:
                continue
            pixel[n, k] = kl_divergence_map(teacher_logits[n:n + 1], dense_logits[n:n + 1, k],
                                            region_based=region_based).mean()
            if valid[n, k]:
                proto[n, k], gap[n, k] = _reference_proto(tf[n], dense_features[n, k], class_masks_bool[n])
    return combine_distillation(pixel, proto, gap, valid, mask, e)


@pytest.mark.parametrize("region_based", [False, True])
def test_prism_distillation_loss_on_pair_rows_equals_dense(region_based):
    """The trainer passes one student row per present pair (MultiModalOutput.students, in the
    network's modality-major order); the result equals the dense (B, M, ...) reference."""
    b, m, c, f = 3, 3, 3, 4
    spatial = SPATIAL[3]
    teacher_logits = [torch.randn(b, c, *spatial, generator=_gen(30))]
    dense_logits = torch.randn(b, m, c, *spatial, generator=_gen(31))
    tf = torch.randn(b, f, *spatial, generator=_gen(32))
    dense_features = torch.randn(b, m, f, *spatial, generator=_gen(33))
    target = _region_target(b, spatial, c, 34) if region_based else _label_target(b, spatial, c, 34)
    if not region_based:
        target[2] = 0  # sample 2 has no foreground: its pairs are skipped by the semantic term
    cms = target.bool() if region_based else torch.stack([target[:, 0] == k for k in range(c)], 1)
    mask = torch.tensor([[1, 1, 0], [1, 0, 1], [0, 1, 1]], dtype=torch.bool)
    e = torch.tensor([1.0, 2.0, 0.5])
    dense_total, dense_stats = _dense_reference(teacher_logits[0], dense_logits, tf, dense_features, cms, mask, e,
                                                region_based)
    rows_logits, pairs = pair_rows(dense_logits, mask)
    assert pairs[1].tolist() == [0, 0, 1, 1, 2, 2]  # modality-major, like the network
    rows_logits.requires_grad_()
    rows_features = pair_rows(dense_features, mask)[0].requires_grad_()
    total, stats = prism_distillation_loss(teacher_logits, [rows_logits], tf, rows_features, [target], mask, e,
                                           region_based=region_based, pairs=pairs)
    assert total.item() == pytest.approx(dense_total.item(), rel=1e-6)
    for key in ("pixel", "proto", "gap", "rp", "omega"):
        torch.testing.assert_close(stats[key], dense_stats[key])
    total.backward()
    assert rows_logits.grad.flatten(1).abs().sum(1).gt(0).all()
    with pytest.raises(ValueError, match="one row per present pair"):
        pixel_distillation_loss(teacher_logits, [rows_logits[1:]], mask, pairs=pairs)


def test_disjoint_region_classes_are_the_label_classes():
    """Region-based prototypes with ``region_classes="disjoint"`` equal label-based prototypes
    on the label map the nested regions come from (PASSION's classes: background, ED, NCR, ET)."""
    from nnunet_prism.losses.prototype import class_masks, prototype_distillation

    g = torch.Generator().manual_seed(3)
    labels = torch.randint(0, 4, (2, 1, 6, 6), generator=g)            # 0 bg, 1 NCR, 2 ED, 3 ET
    labels[1][labels[1] == 3] = 1                                      # sample 1 without ET
    regions = torch.cat([labels > 0, (labels == 1) | (labels == 3), labels == 3], 1).float()  # WT, TC, ET
    masks, foreground = class_masks(regions, True, region_classes="disjoint")
    assert masks.shape == (2, 8, 6, 6) and foreground.tolist() == [False] + [True] * 7
    assert torch.equal(masks.sum(1), torch.ones(2, 6, 6, dtype=torch.long)), "every voxel in exactly one class"
    for code, label in ((0, 0), (1, 2), (3, 1), (7, 3)):               # WT only = ED, WT+TC = NCR, all = ET
        assert torch.equal(masks[:, code], labels[:, 0] == label)
    teacher = torch.randn(2, 5, 6, 6, generator=g)
    students = torch.randn(4, 5, 6, 6, generator=g)
    pairs = (torch.tensor([0, 0, 1, 1]), torch.tensor([0, 1, 0, 1]))
    mask = torch.ones(2, 2, dtype=torch.bool)
    from_regions = prototype_distillation(teacher, students, regions, mask, True, region_classes="disjoint",
                                          pairs=pairs)
    from_labels = prototype_distillation(teacher, students, labels, mask, False, num_classes=4, pairs=pairs)
    torch.testing.assert_close(from_regions.loss, from_labels.loss)
    torch.testing.assert_close(from_regions.gap, from_labels.gap)
    per_region = prototype_distillation(teacher, students, regions, mask, True, pairs=pairs)
    assert not torch.allclose(per_region.loss, from_labels.loss), "one prototype per overlapping region differs"
    with pytest.raises(ValueError, match="region_classes"):
        class_masks(regions, True, region_classes="nested")


def test_region_kl_of_a_channel_depends_on_that_channel_only():
    """Region-based (nnU-Net's sigmoid WT/TC/ET) KL is one Bernoulli KL per channel: changing the
    TC and ET logits leaves the WT term unchanged (no softmax across overlapping regions)."""
    teacher = torch.randn(2, 3, 4, 5, 3, generator=_gen(40))
    student = torch.randn(2, 3, 4, 5, 3, generator=_gen(41))
    kl = kl_divergence_map(teacher, student, 4.0, region_based=True)
    changed_t, changed_s = teacher.clone(), student.clone()
    changed_t[:, 1:] += 5.0
    changed_s[:, 1:] -= 3.0
    kl_changed = kl_divergence_map(changed_t, changed_s, 4.0, region_based=True)
    torch.testing.assert_close(kl_changed[:, 0], kl[:, 0], rtol=0, atol=0)
    assert not torch.allclose(kl_changed[:, 1:], kl[:, 1:])


@pytest.mark.parametrize("region_classes", ["regions", "disjoint"])
def test_prism_objective_does_not_depend_on_the_order_of_region_channels(region_classes):
    """The same regions in another channel order (logits and target permuted alike, as another
    dataset.json order would give) give the same distillation terms, in 3d with deep supervision."""
    b, m, c, f = 3, 3, 3, 4
    spatial, low = (4, 6, 4), (2, 3, 2)
    teacher = [torch.randn(b, c, *spatial, generator=_gen(50)), torch.randn(b, c, *low, generator=_gen(51))]
    students = [torch.randn(b, m, c, *spatial, generator=_gen(52)), torch.randn(b, m, c, *low, generator=_gen(53))]
    tf, sf = torch.randn(b, f, *spatial, generator=_gen(54)), torch.randn(b, m, f, *spatial, generator=_gen(55))
    # nested regions as BraTS's WT > TC > ET
    wt = torch.rand(b, 1, *spatial, generator=_gen(56)) > 0.3
    tc = wt & (torch.rand(b, 1, *spatial, generator=_gen(57)) > 0.4)
    target = torch.cat([wt, tc, tc & (torch.rand(b, 1, *spatial, generator=_gen(58)) > 0.5)], 1).float()
    mask = torch.tensor([[1, 1, 1], [1, 0, 1], [0, 1, 1]], dtype=torch.bool)
    e = torch.tensor([2.2, 1.1, 3.3])

    def objective(order):
        rows, pairs = pair_rows([s[:, :, order] for s in students], mask)
        feature_rows, _ = pair_rows(sf, mask)
        return prism_distillation_loss([t[:, order] for t in teacher], rows, tf, feature_rows, [target[:, order]],
                                       mask, e, region_based=True, ds_weights=[2 / 3, 1 / 3], pairs=pairs,
                                       region_classes=region_classes)

    total, stats = objective([0, 1, 2])
    for order in ([2, 1, 0], [1, 2, 0]):
        other, other_stats = objective(order)
        assert other.item() == pytest.approx(total.item(), rel=1e-6)
        for key in ("pixel", "proto", "gap"):
            torch.testing.assert_close(other_stats[key], stats[key], rtol=1e-5, atol=1e-7)
