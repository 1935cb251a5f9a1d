"""nnunet_prism.deep_supervision: one tensor or a list of levels, told apart in one place."""
import torch

from nnunet_prism.deep_supervision import as_level_list, full_resolution, like_levels


def test_full_resolution_is_level_zero_or_the_tensor():
    levels = [torch.zeros(2, 3, 8, 8), torch.ones(2, 3, 4, 4)]
    assert full_resolution(levels) is levels[0]
    assert full_resolution(tuple(levels)) is levels[0]
    assert full_resolution(levels[1]) is levels[1]


def test_as_level_list_and_like_levels_round_trip():
    levels = [torch.zeros(2, 3, 8, 8), torch.ones(2, 3, 4, 4)]
    assert as_level_list(levels) == levels and as_level_list(levels) is not levels
    assert as_level_list(tuple(levels)) == levels
    single = levels[0]
    assert len(as_level_list(single)) == 1 and as_level_list(single)[0] is single
    doubled = [2 * t for t in as_level_list(levels)]
    assert like_levels(levels, doubled) is doubled
    assert like_levels(tuple(levels), doubled) is doubled
    assert like_levels(single, [2 * single]).shape == single.shape
    assert torch.is_tensor(like_levels(single, [2 * single]))
