"""The pieces the trainers wire into nnU-Net's step, without nnU-Net's set-up: the unimodal losses
on student rows, the hard pseudo-Dice counts and PRISM's objective with nnU-Net's ignore label
(label maps and regions, whose last target channel is then the ignore mask), GMD's subset losses,
and the training cases' modality availability (recorded AND simulated ``missing_rates``)."""
import math
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from nnunetv2.training.loss.compound_losses import DC_and_BCE_loss
from nnunetv2.training.loss.deep_supervision import DeepSupervisionWrapper
from nnunetv2.training.loss.dice import MemoryEfficientSoftDiceLoss

from helpers.networks import nnunet_loss
from nnunet_prism.losses import prism_distillation_loss
from nnunet_prism.losses.unimodal import unimodal_losses
from nnunet_prism.modalities import AVAILABILITY_KEY, ModalityError, missing_rates, sample_availability
from nnunet_prism.networks import MultiModalOutput
from nnunet_prism.training.modality_masking import ModalityMaskingMixin
from nnunet_prism.training.pseudo_dice import hard_counts
from nnunet_prism.training.trainers.nnUNetTrainerGMD import subset_losses
from nnunet_prism.training.trainers.nnUNetTrainerPRISM import prism_objective


def _gen(seed):
    return torch.Generator().manual_seed(seed)


def _logits(sign_map):
    """+2 where ``sign_map`` is 1, -2 where it is 0 (sigmoid > 0.5 exactly where it is 1)."""
    return torch.tensor(sign_map, dtype=torch.float32) * 4 - 2


# -- hard pseudo-Dice counts with the ignore label -------------------------------------------------
def test_hard_counts_regions_exclude_the_ignore_channel_voxels():
    # one sample, 2 regions on 2x3 voxels (flattened below), last target channel = ignore mask
    predicted = [[1, 1, 0, 1, 1, 0],   # region A
                 [0, 0, 0, 1, 1, 1]]   # region B
    target = [[1, 0, 1, 1, 0, 1],      # region A
              [0, 0, 0, 1, 0, 0],      # region B
              [0, 0, 0, 1, 1, 1]]      # ignore: voxels 3, 4, 5
    logits = _logits(predicted).reshape(1, 2, 2, 3)
    target = torch.tensor(target, dtype=torch.float32).reshape(1, 3, 2, 3)
    regions = SimpleNamespace(has_regions=True, has_ignore_label=True, ignore_label=3, num_segmentation_heads=2)
    tp, fp, fn = hard_counts(logits, target, regions)
    # voxels 0-2 only: A: tp v0, fp v1, fn v2; B: nothing (counting 3-5 would give A 2/2/2, B 1/2/0)
    assert (tp.tolist(), fp.tolist(), fn.tolist()) == ([1, 0], [1, 0], [1, 0])
    without_ignore = SimpleNamespace(has_regions=True, has_ignore_label=False, num_segmentation_heads=2)
    tp, fp, fn = hard_counts(logits, target[:, :2], without_ignore)
    assert (tp.tolist(), fp.tolist(), fn.tolist()) == ([2, 1], [2, 2], [2, 0])


def test_hard_counts_labels_exclude_the_ignore_label_voxels():
    # labels 0 (background), 1, 2 and the ignore label 3 at voxels 3 and 4
    predicted = torch.tensor([1, 1, 2, 0, 2, 1])
    target = torch.tensor([1, 2, 2, 3, 3, 0]).reshape(1, 1, 2, 3)
    logits = torch.nn.functional.one_hot(predicted, 3).T.float().reshape(1, 3, 2, 3)
    labels = SimpleNamespace(has_regions=False, has_ignore_label=True, ignore_label=3, num_segmentation_heads=3)
    tp, fp, fn = hard_counts(logits, target, labels)
    # label 1: tp v0, fp v1 v5; label 2: tp v2, fn v1 (v4, ignored, would be a false positive)
    assert (tp.tolist(), fp.tolist(), fn.tolist()) == ([1, 1], [2, 0], [0, 1])
    assert target.flatten().tolist() == [1, 2, 2, 3, 3, 0], "the caller's target is not modified"


# -- unimodal losses on the student rows ----------------------------------------------------------
# modality-major rows of the mask [[1, 0, 1], [1, 0, 0], [0, 0, 1]]: modality 1 absent from the batch
MASK = torch.tensor([[True, False, True], [True, False, False], [False, False, True]])
MODALITIES, SAMPLES = torch.tensor([0, 0, 2, 2]), torch.tensor([0, 1, 0, 2])
ROWS = {0: [0, 1], 2: [2, 3]}  # student rows of each present modality, by hand


def _bce_levels():
    g = _gen(0)
    students = [torch.randn(4, 2, 4, 4, generator=g), torch.randn(4, 2, 2, 2, generator=g)]
    target = [(torch.rand(3, 2, 4, 4, generator=g) > 0.5).float(), (torch.rand(3, 2, 2, 2, generator=g) > 0.5).float()]
    return students, target


def test_unimodal_losses_equal_a_loop_over_each_modalitys_rows_with_deep_supervision():
    students, target = _bce_levels()
    bce = torch.nn.BCEWithLogitsLoss()
    loss = DeepSupervisionWrapper(bce, [0.75, 0.25])
    got = unimodal_losses(loss, students, SAMPLES, MODALITIES, 3, target, deep_supervision=True)
    for m, rows in ROWS.items():
        samples = SAMPLES[rows]
        expected = (0.75 * bce(students[0][rows], target[0][samples]) +
                    0.25 * bce(students[1][rows], target[1][samples]))
        assert got[m].item() == pytest.approx(expected.item(), rel=1e-6)
    assert torch.equal(got[1], torch.tensor(0.0)), "no sample has modality 1"
    assert got.shape == (3,)


def test_unimodal_losses_without_deep_supervision_use_the_full_resolution_unweighted():
    students, target = _bce_levels()
    bce = torch.nn.BCEWithLogitsLoss()
    wrapped = unimodal_losses(DeepSupervisionWrapper(bce, [0.75, 0.25]), students, SAMPLES, MODALITIES, 3, target)
    plain = unimodal_losses(bce, students[0], SAMPLES, MODALITIES, 3, target[0])
    for m, rows in ROWS.items():
        expected = bce(students[0][rows], target[0][SAMPLES[rows]]).item()
        assert wrapped[m].item() == pytest.approx(expected, rel=1e-6)
        assert plain[m].item() == pytest.approx(expected, rel=1e-6)
    assert wrapped[1].item() == plain[1].item() == 0.0


def test_unimodal_losses_with_region_target_and_ignore_channel_leave_ignored_voxels_out():
    # 2 samples, 2 regions on 1x3 voxels; target channels: region A, region B, ignore
    target = torch.tensor([[[1, 0, 1], [0, 0, 1], [0, 0, 1]],     # sample 0: voxel 2 ignored
                           [[1, 1, 0], [1, 0, 0], [1, 0, 0]]],    # sample 1: voxel 0 ignored
                          dtype=torch.float32).reshape(2, 3, 1, 3)
    samples, modalities = torch.tensor([0, 0, 1]), torch.tensor([0, 1, 1])  # mask [[1, 1, 0], [0, 1, 0]]
    students = torch.stack([torch.full((2, 1, 3), 2.0), torch.full((2, 1, 3), -2.0), torch.full((2, 1, 3), -2.0)])
    students[0, :, 0, 2] = 50.0  # at an ignored voxel: would cost 50 per region if it counted
    students[2, :, 0, 0] = -50.0
    bce_only = DC_and_BCE_loss({}, {"batch_dice": True, "do_bg": True, "smooth": 1e-5, "ddp": False},
                               weight_ce=1, weight_dice=0, use_ignore_label=True,
                               dice_class=MemoryEfficientSoftDiceLoss)
    got = unimodal_losses(bce_only, students, samples, modalities, 3, target)
    right, wrong = math.log1p(math.exp(-2)), math.log1p(math.exp(2))  # BCE of a logit +-2
    # nnU-Net divides the BCE summed over regions by the number of counted voxels.
    # modality 0 (+2, sample 0, voxels 0-1): A [1, 0] right + wrong, B [0, 0] 2 wrong
    # modality 1 (-2, samples 0 and 1, two voxels each): A [1, 0] wrong + right, B [0, 0] 2 right, twice
    expected = [(right + 3 * wrong) / 2, 2 * (3 * right + wrong) / 4, 0.0]
    assert got.tolist() == pytest.approx(expected, rel=1e-6)


# -- PRISM's objective drops the ignore channel of a region target ---------------------------------
def _hand_made_output(num_channels=2, features=4):
    """A MultiModalOutput of 2 samples, 3 modalities (mask [[1, 0, 1], [1, 1, 0]]), 2 levels."""
    g = _gen(5)
    mask = torch.tensor([[True, False, True], [True, True, False]])
    modalities, samples = mask.T.nonzero(as_tuple=True)  # modality-major, as the network orders them
    return MultiModalOutput(
        fused=[torch.randn(2, num_channels, 4, 4, generator=g), torch.randn(2, num_channels, 2, 2, generator=g)],
        fused_features=torch.randn(2, features, 4, 4, generator=g),
        students=[torch.randn(4, num_channels, 4, 4, generator=g), torch.randn(4, num_channels, 2, 2, generator=g)],
        student_features=torch.randn(4, features, 4, 4, generator=g),
        samples=samples, modalities=modalities, modality_mask=mask)


def test_prism_objective_drops_the_ignore_channel_of_a_region_target():
    out = _hand_made_output()
    g = _gen(6)
    regions = (torch.rand(2, 2, 4, 4, generator=g) > 0.5).float()
    ignore = torch.zeros(2, 1, 4, 4)
    ignore[0, 0, :2] = 1.0
    ignore[1, 0, :, 3] = 1.0
    target = [torch.cat([regions * (1 - ignore), ignore], 1), torch.zeros(2, 3, 2, 2)]
    coefficients, weights = torch.tensor([1.0, 2.0, 0.5]), [2 / 3, 1 / 3]
    manager = SimpleNamespace(has_regions=True, has_ignore_label=True, ignore_label=4, num_segmentation_heads=2)
    total, stats = prism_objective(out, target, coefficients, manager, weights, 4.0, 0.5, 0.1, None)
    expected, expected_stats = prism_distillation_loss(
        out.fused, out.students, out.fused_features, out.student_features, target[0][:, :2], out.modality_mask,
        coefficients, region_based=True, ds_weights=weights, temperature=4.0, lambda_pixel=0.5, lambda_proto=0.1,
        prob_floor=None, pairs=out.pairs)
    assert total.item() == expected.item()
    for key in ("pixel", "proto", "gap", "rp", "omega"):
        torch.testing.assert_close(stats[key], expected_stats[key], rtol=0, atol=0)
    # the ignore channel taken as a third region changes the prototype term
    kept = SimpleNamespace(has_regions=True, has_ignore_label=False, num_segmentation_heads=2)
    with_channel, _ = prism_objective(out, target, coefficients, kept, weights, 4.0, 0.5, 0.1, None)
    assert with_channel.item() != expected.item()


# -- GMD's subset losses ---------------------------------------------------------------------------
# 3 samples, 4 modalities; T2 (3) absent from the whole batch
GMD_MASK = torch.tensor([[True, True, False, False], [False, True, True, False], [True, False, False, False]])
GMD_SUBSETS = torch.tensor([[True, False, False, False],   # FLAIR: samples 0 and 2
                            [False, True, True, False],    # T1+T1c: samples 0 (T1) and 1 (both)
                            [True, True, True, True],      # all: every sample, its own modalities
                            [False, False, False, True]])  # T2: no sample -> None
# {subset: [(sample, modalities averaged)]}, by hand
GMD_FUSED = {0: [(0, [0]), (2, [0])], 1: [(0, [1]), (1, [1, 2])], 2: [(0, [0, 1]), (1, [1, 2]), (2, [0])]}


def _subset_case():
    g = _gen(7)
    per_modality = [torch.randn(3, 4, 3, 4, 4, 4, generator=g), torch.randn(3, 4, 3, 2, 2, 2, generator=g)]
    labels = torch.randint(0, 3, (3, 1, 4, 4, 4), generator=g)
    return per_modality, [labels, labels[:, :, ::2, ::2, ::2]]


def _hand_fused(level, entries):
    return torch.stack([sum(level[b, m] for m in ms) / len(ms) for b, ms in entries])


def test_subset_losses_are_the_loss_of_the_mean_of_present_logits_with_deep_supervision():
    per_modality, target = _subset_case()
    loss = nnunet_loss()
    got = subset_losses(loss, per_modality, target, GMD_MASK, GMD_SUBSETS)
    assert len(got) == 4 and got[3] is None
    for j, entries in GMD_FUSED.items():
        rows = [b for b, _ in entries]
        expected = loss([_hand_fused(level, entries) for level in per_modality], [t[rows] for t in target])
        assert got[j].item() == pytest.approx(expected.item(), rel=1e-5)


def test_subset_losses_without_deep_supervision():
    per_modality, target = _subset_case()
    loss = nnunet_loss().loss
    got = subset_losses(loss, per_modality[0], target[0], GMD_MASK, GMD_SUBSETS)
    assert got[3] is None
    for j, entries in GMD_FUSED.items():
        expected = loss(_hand_fused(per_modality[0], entries), target[0][[b for b, _ in entries]])
        assert got[j].item() == pytest.approx(expected.item(), rel=1e-5)
    assert subset_losses(loss, per_modality[0], target[0], GMD_MASK, GMD_SUBSETS[3:]) == [None]


# -- availability of the training cases: recorded (or from the data) AND simulated ----------------
NAMES = ["FLAIR", "T1", "T1c", "T2"]
RATES = [0.2, 0.4, 0.6, 0.8]
TRAIN = [f"case_{i:02d}" for i in (7, 3, 9, 0, 5, 1, 8, 2, 6, 4)]  # nnU-Net's split, not sorted
VAL = ["case_10", "case_11"]


class MaskingStub(ModalityMaskingMixin):
    """What the mixin needs of a trainer: dataset_json, do_split, fold, the hyperparameters, device,
    and the preprocessed data's non-zero channels (``data``: {case: (M,) bool}, default all)."""

    def __init__(self, record=None, rates=None, seed=0, data=None):
        self.dataset_json = {"channel_names": {str(i): n for i, n in enumerate(NAMES)}}
        if record is not None:
            self.dataset_json[AVAILABILITY_KEY] = record
        self.missing_rates, self.missing_seed, self.modality_dropout = rates, seed, 0.0
        self.device, self.fold, self.data = torch.device("cpu"), 0, data or {}

    def do_split(self):
        return list(TRAIN), list(VAL)

    def preprocessed_availability(self, keys):
        return np.array([self.data.get(k, [True] * 4) for k in keys], dtype=bool).reshape(len(keys), 4)


def test_simulated_missing_rates_are_sample_availability_over_the_sorted_training_cases():
    stub = MaskingStub(rates=RATES, seed=3)
    table = stub._availability_table()
    assert list(table) == sorted(TRAIN)
    simulated = sample_availability(len(TRAIN), RATES, 3)
    np.testing.assert_array_equal(np.stack(list(table.values())), simulated)
    assert missing_rates(np.stack(list(table.values()))).tolist() == missing_rates(simulated).tolist() == \
        pytest.approx(RATES, abs=1e-12)
    mask = stub.case_availability(["case_04", "case_00"])
    assert mask.dtype == torch.bool and mask.tolist() == simulated[[4, 0]].tolist()
    assert torch.equal(stub.training_modality_mask(["case_04"]), mask[:1]), "p = 0: no dropout"


def test_recorded_absence_stays_absent_and_validation_cases_are_not_simulated():
    record = {"case_00": [0, 1, 1, 1], "case_01": [1, 1, 1, 0], "case_05": [1, 0, 1, 1],
              "case_10": [0, 1, 0, 1]}  # the other cases: from the data
    data = {"case_02": [True, True, False, True], "case_11": [False, False, True, True]}
    stub = MaskingStub(record=record, rates=RATES, seed=3, data=data)
    table = np.stack(list(stub._availability_table().values()))
    simulated = sample_availability(len(TRAIN), RATES, 3)
    genuine = np.array([record.get(k, data.get(k, [1] * 4)) for k in sorted(TRAIN)], dtype=bool)
    assert (genuine & simulated).any(axis=1).all(), "no case left empty: the AND alone"
    np.testing.assert_array_equal(table, genuine & simulated)
    assert not (table & ~genuine).any(), "a recorded (or all-zero) absence stays absent"
    # validation cases: as recorded, or from the data, never simulated
    assert stub.case_availability(VAL + ["case_00"]).tolist() == [
        [False, True, False, True], [False, False, True, True], table[0].tolist()]
    assert MaskingStub(record=record, data=data).case_availability(sorted(TRAIN)[:3]).tolist() == \
        [[False, True, True, True], [True, True, True, False], [True, True, False, True]], "no rates: no simulation"


def test_a_case_the_simulation_empties_gets_back_its_least_often_missing_modality():
    simulated = sample_availability(len(TRAIN), RATES, 3)
    first = sorted(TRAIN)[0]
    kept = np.flatnonzero(simulated[0])
    genuine = [0 if m in kept else 1 for m in range(4)]  # exactly what the simulation removes
    table = MaskingStub(record={first: genuine}, rates=RATES, seed=3)._availability_table()
    lowest_rate = min((m for m in range(4) if genuine[m]), key=lambda m: RATES[m])
    assert table[first].tolist() == [m == lowest_rate for m in range(4)]


def test_a_modality_no_training_case_has_is_a_one_line_error():
    without_t2 = {k: [True, True, True, False] for k in TRAIN}
    with pytest.raises(ModalityError, match="^fold 0: T2 is absent from all 10 training cases"):
        MaskingStub(data=without_t2)._availability_table()


@pytest.mark.parametrize("setting,device,expected", [("auto", "cuda", True), ("auto", "cpu", False),
                                                     ("on", "cpu", True), ("off", "cuda", False)])
def test_activation_checkpointing_is_on_where_the_step_must_fit_a_gpu(setting, device, expected):
    from types import SimpleNamespace

    from nnunet_prism.training.trainers.nnUNetTrainerMissingModality import nnUNetTrainerMissingModality

    trainer = SimpleNamespace(activation_checkpointing=setting, device=torch.device(device))
    assert nnUNetTrainerMissingModality.checkpointing_in_force.fget(trainer) is expected


@pytest.mark.parametrize("recompute_rows", [1, 2])
def test_checkpointed_prism_objective_gives_the_same_loss_stats_and_gradients(recompute_rows):
    """PRISM recomputes its distillation terms in the backward pass under activation
    checkpointing, ``recompute_rows`` (sample, modality) pairs at a time: same value, stats and
    gradients."""
    results = []
    for rows in (None, recompute_rows):
        out = _hand_made_output()
        leaves = [t.requires_grad_() for t in (*out.fused, *out.students, out.fused_features, out.student_features)]
        target = [(torch.rand(2, 2, 4, 4, generator=_gen(7)) > 0.5).float(), torch.zeros(2, 2, 2, 2)]
        manager = SimpleNamespace(has_regions=True, has_ignore_label=False, num_segmentation_heads=2)
        total, stats = prism_objective(out, target, torch.tensor([1.0, 2.0, 0.5]), manager, [2 / 3, 1 / 3],
                                       4.0, 0.5, 0.1, None, recompute_rows=rows)
        grads = torch.autograd.grad(total, leaves, allow_unused=True)  # the teacher is detached: None
        results.append((total.detach(), stats, grads))
    (plain, plain_stats, plain_grads), (saved, saved_stats, saved_grads) = results
    torch.testing.assert_close(saved, plain, rtol=0, atol=0)
    for key in ("pixel", "proto", "rp", "omega"):
        torch.testing.assert_close(saved_stats[key], plain_stats[key], rtol=0, atol=0)
    assert [g is None for g in saved_grads] == [g is None for g in plain_grads] == [True, True, False, False, True, False]
    for a, b in zip(saved_grads, plain_grads):
        if a is not None:
            torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-7)
    assert all(float(g.abs().sum()) > 0 for g in (plain_grads[2], plain_grads[5])), "the students receive gradient"
