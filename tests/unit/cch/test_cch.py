"""CCH (arXiv 2510.13182): MI estimators against closed forms, the joint Gaussian experiment's
sign on both sides of the boundary, the table logic and PRISM's CCH student mask."""
import numpy as np
import pytest
import torch
from scipy import integrate, stats

from nnunet_prism.cch.criterion import CCHTableError, balanced_rows, cch_table, read_student_mask, write_table
from nnunet_prism.cch.estimators import (MIError, MIOptions, gaussian_mi, gaussian_mi_discrete, gaussian_mi_from_cov,
                                         ksg_mi, mutual_information, pca_reduce, ross_mi)
from nnunet_prism.cch.gaussian_experiment import (ExperimentConfig, GaussianSetting, expected_risk, run_experiment,
                                                  student_weights, write_outputs)
from nnunet_prism.cch.representations import VoxelRepresentations, patch_starts, sample_voxels

TOL = 0.06  # nats: KSG/Ross with k=3 on 2000 samples in <= 6 joint dimensions (bias + spread ~0.03)


def correlated_gaussian(n, d, rho, seed=0):
    """x, y (n, d) with corr(x_i, y_i) = rho, independent across i: I = -d/2 log(1 - rho^2)."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, d))
    return x, rho * x + np.sqrt(1 - rho ** 2) * rng.standard_normal((n, d)), -0.5 * d * np.log(1 - rho ** 2)


@pytest.mark.parametrize("d,rho", [(1, 0.6), (1, 0.9), (3, 0.5)])
def test_ksg_and_gaussian_match_closed_form(d, rho):
    x, y, true = correlated_gaussian(2000, d, rho)
    assert ksg_mi(x, y) == pytest.approx(true, abs=TOL)
    assert gaussian_mi(x, y) == pytest.approx(true, abs=0.03)


def test_gaussian_from_covariance_is_the_textbook_formula():
    cov = np.array([[1.0, 0.8], [0.8, 1.0]])
    assert gaussian_mi_from_cov(cov, 0, 1) == pytest.approx(-0.5 * np.log(1 - 0.64))


def test_independence_gives_about_zero():
    rng = np.random.default_rng(1)
    x, y = rng.standard_normal((2000, 2)), rng.standard_normal((2000, 2))
    assert ksg_mi(x, y) < 0.02
    assert gaussian_mi(x, y) < 0.01
    assert ross_mi(x, rng.integers(0, 3, 2000)) < 0.02


def test_ksg_is_invariant_to_per_dimension_rescaling():
    x, y, _ = correlated_gaussian(1500, 2, 0.7, seed=2)
    options = MIOptions(pca_dim=None)
    base = mutual_information(x, y, options=options)
    scaled = mutual_information(x * np.array([1e3, -0.01]) + 5.0, y * np.array([7.0, 1e-4]), options=options)
    assert scaled == pytest.approx(base, abs=1e-9)


def test_ross_matches_numerical_integration():
    rng = np.random.default_rng(3)
    labels = rng.integers(0, 2, 4000)
    x = rng.standard_normal(4000) + 2.0 * labels
    mixture = lambda t: 0.5 * stats.norm.pdf(t) + 0.5 * stats.norm.pdf(t, 2.0)  # noqa: E731
    h_x = integrate.quad(lambda t: -mixture(t) * np.log(mixture(t)), -12, 14)[0]
    true = h_x - 0.5 * np.log(2 * np.pi * np.e)  # I = H(X) - H(X | Y)
    assert ross_mi(x, labels) == pytest.approx(true, abs=TOL)
    assert gaussian_mi_discrete(x, labels) == pytest.approx(true, abs=0.05)


def test_options_subsample_reduce_and_reject_bad_input():
    x, y, _ = correlated_gaussian(600, 12, 0.8, seed=4)
    assert pca_reduce(x, 4).shape == (600, 4)
    a = mutual_information(x, y, options=MIOptions(max_samples=300, pca_dim=3, seed=5))
    b = mutual_information(x, y, options=MIOptions(max_samples=300, pca_dim=3, seed=5))
    assert a == b > 0.3
    with pytest.raises(MIError, match="NaN"):
        ksg_mi(np.full((50, 1), np.nan), y[:50])
    with pytest.raises(MIError, match="different numbers"):
        ksg_mi(x[:10], y[:11])


def test_gaussian_model_covariance_and_closed_form_risk():
    setting = GaussianSetting(p=5, teacher_noise=0.5, label_share=0.3, seed=1)
    x1, x2, y = setting.sample(100000, np.random.default_rng(0))
    empirical = np.cov(np.hstack([x1, x2, y[:, None]]), rowvar=False)
    assert np.abs(empirical - setting.covariance()).max() < 0.03
    # Monte Carlo of the student risk at n = 40 against the exact expectation
    rng, w, risks = np.random.default_rng(1), setting.weights(), []
    for _ in range(300):
        a1, a2, ay = setting.sample(40, rng)
        _, t2, ty = setting.sample(2000, rng)
        risks.append(np.mean((ty - t2 @ student_weights(a2, ay, a1 @ w, 1.0)) ** 2))
    assert np.mean(risks) == pytest.approx(expected_risk(setting, 1.0, 40), rel=0.03)


def test_small_experiment_reproduces_the_sign_on_both_sides_of_the_boundary(tmp_path):
    config = ExperimentConfig(n=400, p=20, n_test=2000, repeats=20, teacher_noises=(0.5, 3.0), lambdas=(1.0,),
                              mi_options=MIOptions(max_samples=500))
    rows = run_experiment(config)
    helps, hurts = rows
    assert helps["cch"] and not hurts["cch"]
    assert helps["rel_risk_change_closed"] < 0 < hurts["rel_risk_change_closed"]
    assert helps["rel_risk_change_mc"] < 0 < hurts["rel_risk_change_mc"], "Monte Carlo has the same signs"
    for r in rows:
        assert r["ksg_I_h1_h2"] == pytest.approx(r["I_h1_h2"], abs=0.1)
    files = write_outputs(rows, config, tmp_path)
    assert "2/2 rows" in files["md"].read_text() and files["png"].stat().st_size > 0


def synthetic_representations(seed=0):
    """4 modalities: T1c carries the label, FLAIR is a noisy copy of T1c, T1 and T2 are noise."""
    rng = np.random.default_rng(seed)
    n = 1200
    labels = rng.integers(0, 3, n)
    signal = labels[:, None] + 0.3 * rng.standard_normal((n, 2))
    unimodal = rng.standard_normal((n, 4, 2))
    unimodal[:, 2] = signal
    unimodal[:, 0] = signal + 0.2 * rng.standard_normal((n, 2))
    fused = unimodal.mean(1)
    availability = np.ones((n, 4), dtype=bool)
    availability[: n // 2, 3] = False
    return VoxelRepresentations(fused, unimodal, labels, availability, np.zeros(n, int), ["c"],
                                ["FLAIR", "T1", "T1c", "T2"], "features")


def test_cch_table_logic_and_prism_mask_roundtrip(tmp_path):
    rows = cch_table(synthetic_representations(), options=MIOptions(max_samples=600, pca_dim=None))
    assert len(rows) == 4 * 4
    by_pair = {(r["student"], r["teacher"]): r for r in rows}
    for r in rows:
        assert r["cch"] == (r["I_teacher_student"] > r["I_student_label"])
    assert by_pair[("FLAIR", "T1c")]["cch"], "a near copy of the student shares more than the label"
    assert not by_pair[("T1c", "T1")]["cch"], "a pure-noise teacher shares nothing with the student"
    assert by_pair[("T1c", "T2")]["n_samples"] == 600 and by_pair[("T1", "fused")]["n_samples"] == 600
    assert sum(r["recommended"] for r in rows if r["student"] == "FLAIR") == 1
    path = write_table(rows, tmp_path / "cch_table.csv")
    mask = read_student_mask(path, ["FLAIR", "T1", "T1c", "T2"])
    assert mask.tolist() == [by_pair[(m, "fused")]["cch"] for m in ["FLAIR", "T1", "T1c", "T2"]]


def test_prism_cch_mask_reading_and_errors(tmp_path):
    from nnunet_prism.training.trainers.nnUNetTrainerPRISM import nnUNetTrainerPRISM

    table = tmp_path / "t.csv"
    table.write_text("student,teacher,cch\nA,fused,True\nA,B,False\nB,fused,False\nB,A,True\nC,fused,\n")
    trainer = object.__new__(nnUNetTrainerPRISM)
    trainer.dataset_json = {"channel_names": {"0": "A", "1": "B"}}
    trainer.device = torch.device("cpu")
    trainer.cch_table = str(table)
    assert trainer.cch_students.tolist() == [1.0, 0.0]
    trainer._cch_students, trainer.cch_table = None, ""
    assert trainer.cch_students.tolist() == [1.0, 1.0]
    assert read_student_mask(table, ["C", "B"]).tolist() == [True, False], "not estimable: keep distilling"
    with pytest.raises(FileNotFoundError, match="missing.csv"):
        read_student_mask(tmp_path / "missing.csv", ["A"])
    with pytest.raises(CCHTableError, match=r"\['D'\]"):
        read_student_mask(table, ["A", "D"])
    (tmp_path / "bad.csv").write_text("student,teacher\nA,fused\n")
    with pytest.raises(CCHTableError, match="column"):
        read_student_mask(tmp_path / "bad.csv", ["A"])


def test_sampling_helpers():
    rng = np.random.default_rng(0)
    labels = np.array([0] * 90 + [1] * 8 + [2] * 2)
    rows = balanced_rows(labels, np.ones(100, bool), 30, rng)
    assert len(rows) == 30 and np.bincount(labels[rows]).tolist() == [20, 8, 2]
    seg = np.full((6, 6, 6), -1)
    seg[1:5, 1:5, 1:5] = 0
    seg[2, 2, 2] = 1
    picked = sample_voxels(seg, 5, rng)
    assert len(picked) == 6 and (seg.reshape(-1)[picked] >= 0).all()
    starts = patch_starts(seg, (4, 4, 4), 3, rng)
    assert all(0 <= s <= 2 for start in starts for s in start)
    assert all(s <= 2 <= s + 3 for s in starts[0]), "first patch contains the foreground voxel"
