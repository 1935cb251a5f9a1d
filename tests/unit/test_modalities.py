import numpy as np
import pytest
import torch

from nnunet_prism import modalities as mod


def test_all_subsets_stable_order_and_count():
    subsets = mod.all_subsets(4)
    assert len(subsets) == 15
    assert subsets[:4] == [(0,), (1,), (2,), (3,)]
    assert subsets[-1] == (0, 1, 2, 3)
    assert len(set(subsets)) == 15 and all(len(s) > 0 for s in subsets)
    assert mod.all_subsets(4) == subsets  # deterministic


def test_subset_names_and_masks():
    assert mod.subset_name((0, 2), mod.BRATS_MODALITIES) == "FLAIR+T1c"
    masks = mod.subset_masks(3)
    assert masks.shape == (7, 3) and masks.any(axis=1).all()
    assert mod.subset_to_mask((1,), 3).tolist() == [False, True, False]


def test_parse_subset_name_inverts_subset_name():
    names = list(mod.BRATS_MODALITIES)
    mask = mod.parse_subset_name("FLAIR+T1c", names)
    assert mask.dtype == bool and mask.tolist() == [True, False, True, False]
    assert mod.parse_subset_name(" T2 + FLAIR ", names).tolist() == [True, False, False, True]
    for subset in mod.all_subsets(4):
        assert mod.parse_subset_name(mod.subset_name(subset, names), names).tolist() == \
            mod.subset_to_mask(subset, 4).tolist()


@pytest.mark.parametrize("text, message", [("FLAIR+T1ce", "unknown \\['T1ce'\\]"), ("", "expected"), ("+", "expected")])
def test_parse_subset_name_errors_are_one_line(text, message):
    with pytest.raises(mod.ModalityError, match=message) as error:
        mod.parse_subset_name(text, list(mod.BRATS_MODALITIES))
    assert "\n" not in str(error.value) and "FLAIR" in str(error.value)


def test_zero_absent_channels_zeroes_exactly_the_absent_modalities():
    x = torch.randn(2, 3, 4, 4, dtype=torch.float16)
    mask = torch.tensor([[True, False, True], [False, True, True]])
    out = mod.zero_absent_channels(x, mask)
    assert out.dtype == x.dtype and out.shape == x.shape
    assert torch.equal(out[mask], x[mask]) and not out[~mask].any()


def test_mask_from_nonzero_channels_torch_and_numpy():
    x = torch.randn(2, 3, 4, 4)
    x[0, 1] = 0
    assert mod.mask_from_nonzero_channels(x).tolist() == [[True, False, True], [True, True, True]]
    assert mod.mask_from_nonzero_channels(x.numpy()).tolist() == [[True, False, True], [True, True, True]]


def test_missing_rates_from_availability():
    c = np.array([[1, 1], [1, 0], [0, 1], [1, 0]], dtype=bool)
    assert np.allclose(mod.missing_rates(c), [0.25, 0.5])


@pytest.mark.parametrize("n", [10, 57, 400])
def test_sample_availability_rates_reproducible_and_never_empty(n):
    rates = [0.2, 0.4, 0.6, 0.8]
    a = mod.sample_availability(n, rates, seed=3)
    assert a.shape == (n, 4)
    assert a.any(axis=1).all(), "every case keeps a modality"
    assert (a.sum(axis=0) > 0).all(), "FR^m < 1"
    # exactly round(FR^m * N) cases miss modality m (the repair of empty cases keeps the columns)
    assert (~a).sum(axis=0).tolist() == [round(r * n) for r in rates]
    assert np.array_equal(a, mod.sample_availability(n, rates, seed=3))
    assert not np.array_equal(a, mod.sample_availability(n, rates, seed=4))


def test_rates_validation():
    with pytest.raises(mod.ModalityError, match=r"\[0, 1\)"):
        mod.parse_rates("0.2,1.0", 2)
    with pytest.raises(mod.ModalityError, match="one missing rate per modality"):
        mod.parse_rates("0.2", 2)
    with pytest.raises(mod.ModalityError, match="comma-separated"):
        mod.parse_rates("a,b", 2)


def test_read_availability_defaults_to_complete_and_checks_length():
    dj = {"channel_names": {"0": "FLAIR", "1": "T1"}, mod.AVAILABILITY_KEY: {"a": [1, 0]}}
    assert mod.read_availability(dj, ["a", "b"]).tolist() == [[True, False], [True, True]]
    dj[mod.AVAILABILITY_KEY]["c"] = [1]
    with pytest.raises(mod.ModalityError, match="case 'c'"):
        mod.read_availability(dj, ["c"])


def test_random_dropout_keeps_one_and_never_adds():
    torch.manual_seed(0)
    available = torch.tensor([[1, 0, 1, 1], [0, 0, 0, 1], [1, 1, 1, 1]] * 50, dtype=torch.bool)
    mask = mod.random_dropout_mask(available, 0.9)
    assert mask.any(dim=1).all()
    assert not (mask & ~available).any(), "an absent modality is never switched on"
    assert (mask.sum() < available.sum())
    assert torch.equal(mod.random_dropout_mask(available, 0.0), available)
