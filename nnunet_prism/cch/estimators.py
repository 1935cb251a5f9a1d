"""Mutual-information estimators for the CCH criterion (arXiv 2510.13182), in nats.

* :func:`ksg_mi`       continuous-continuous, multivariate: Kraskov, Stoegbauer, Grassberger
                       (Phys. Rev. E 69, 066138, 2004), estimator 1 with the max-norm.
* :func:`ross_mi`      continuous-discrete: Ross (PLoS ONE 9, e87357, 2014).
* :func:`gaussian_mi`  closed form of jointly Gaussian variables from (regularised) covariance
                       log-determinants; :func:`gaussian_mi_discrete` the class-conditional
                       Gaussian version for a discrete second variable.
* :func:`mutual_information` one entry point with the explicit options: subsampling (size, seed),
  per-dimension standardisation and PCA to ``pca_dim`` dimensions.

Library check: scikit-learn's ``mutual_info_regression``/``mutual_info_classif`` run KSG/Ross on
one feature at a time (univariate X), and no maintained PyPI package we could vet does the
multivariate case, so KSG and Ross are written here on ``scipy.spatial.cKDTree``.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np
from scipy.spatial import cKDTree
from scipy.special import digamma

from nnunet_prism.errors import NnunetPrismError


class MIError(NnunetPrismError, ValueError):
    """Inputs an estimator cannot use (shapes, too few samples, NaNs)."""


def as_2d(x, name: str = "x") -> np.ndarray:
    """(N,) or (N, D) -> float64 (N, D); rejects NaN/inf with a message naming ``name``."""
    a = np.asarray(x, dtype=np.float64)
    if a.ndim == 1:
        a = a[:, None]
    if a.ndim != 2:
        raise MIError(f"{name} must be (N,) or (N, D), got shape {a.shape}")
    if not np.isfinite(a).all():
        raise MIError(f"{name} contains NaN or inf values")
    return a


def _check_pair(x: np.ndarray, y: np.ndarray, k: int) -> None:
    if x.shape[0] != y.shape[0]:
        raise MIError(f"x and y have different numbers of samples ({x.shape[0]} vs {y.shape[0]})")
    if x.shape[0] <= k + 1:
        raise MIError(f"need more than k+1 = {k + 1} samples, got {x.shape[0]}")


# ----------------------------------------------------------------------------- Gaussian closed form

def logdet(cov: np.ndarray, ridge: float = 0.0) -> float:
    """log det(cov + ridge * mean(diag) * I) for a (D, D) covariance."""
    cov = np.atleast_2d(cov)
    if ridge:
        cov = cov + ridge * max(float(np.mean(np.diag(cov))), 1e-300) * np.eye(cov.shape[0])
    sign, value = np.linalg.slogdet(cov)
    if sign <= 0:
        raise MIError("covariance is singular; use a positive ridge")
    return float(value)


def gaussian_mi_from_cov(cov: np.ndarray, a, b, ridge: float = 0.0) -> float:
    """I(A;B) = 1/2 (log|S_AA| + log|S_BB| - log|S_(A,B)|) of a Gaussian with covariance ``cov``;
    ``a``, ``b`` index the two disjoint blocks."""
    a, b = np.atleast_1d(a), np.atleast_1d(b)
    ab = np.concatenate([a, b])
    return 0.5 * (logdet(cov[np.ix_(a, a)], ridge) + logdet(cov[np.ix_(b, b)], ridge)
                  - logdet(cov[np.ix_(ab, ab)], ridge))


def gaussian_mi(x, y, ridge: float = 1e-6) -> float:
    """Gaussian MI estimate from the sample covariance of (x, y): x (N, Dx), y (N, Dy)."""
    x, y = as_2d(x, "x"), as_2d(y, "y")
    _check_pair(x, y, 1)
    cov = np.cov(np.hstack([x, y]), rowvar=False)
    dx = x.shape[1]
    return max(gaussian_mi_from_cov(cov, np.arange(dx), np.arange(dx, dx + y.shape[1]), ridge), 0.0)


def gaussian_mi_discrete(x, labels, ridge: float = 1e-6) -> float:
    """I(X;Y) ~ 1/2 (log|S_X| - sum_c p_c log|S_X|c|), X (N, D) continuous, Y (N,) discrete:
    entropies of Gaussian fits to X and to X within each class (exact when both are Gaussian;
    a mixture's entropy is below its Gaussian fit's, so this tends to over-estimate)."""
    x = as_2d(x, "x")
    labels = np.asarray(labels).reshape(-1)
    _check_pair(x, labels[:, None], 1)
    total = logdet(np.atleast_2d(np.cov(x, rowvar=False)), ridge)
    conditional = 0.0
    for c in np.unique(labels):
        rows = x[labels == c]
        if rows.shape[0] < 2:
            raise MIError(f"class {c!r} has fewer than 2 samples")
        conditional += rows.shape[0] / x.shape[0] * logdet(np.atleast_2d(np.cov(rows, rowvar=False)), ridge)
    return max(0.5 * (total - conditional), 0.0)


# ----------------------------------------------------------------------------- k-NN estimators

def _count_within(points: np.ndarray, radius: np.ndarray) -> np.ndarray:
    """For each point, how many OTHER points lie within max-norm distance <= radius[i]."""
    tree = cKDTree(points)
    return tree.query_ball_point(points, r=radius, p=np.inf, return_length=True) - 1


def ksg_mi(x, y, k: int = 3) -> float:
    """KSG estimator 1: I = psi(k) + psi(N) - <psi(n_x + 1) + psi(n_y + 1)>.

    x (N, Dx), y (N, Dy) continuous. eps_i = max-norm distance from sample i to its k-th
    neighbour in the joint space; n_x(i) = #{j != i: ||x_j - x_i||_inf < eps_i} (strict), same
    for y (Kraskov et al. 2004, Eq. 8). Ties must be broken beforehand (see ``jitter``).
    """
    x, y = as_2d(x, "x"), as_2d(y, "y")
    _check_pair(x, y, k)
    joint = np.hstack([x, y])
    dist, _ = cKDTree(joint).query(joint, k=k + 1, p=np.inf)
    strict = np.nextafter(dist[:, k], 0)
    nx, ny = _count_within(x, strict), _count_within(y, strict)
    n = x.shape[0]
    return max(float(digamma(k) + digamma(n) - np.mean(digamma(nx + 1) + digamma(ny + 1))), 0.0)


def ross_mi(x, labels, k: int = 3) -> float:
    """Ross (2014) continuous-discrete: I = psi(N) + <psi(k)> - <psi(N_y)> - <psi(m)>.

    x (N, D) continuous, labels (N,) discrete. d_i = max-norm distance to the k-th neighbour of
    sample i among samples with its label (k reduced to N_y - 1 for small classes); m_i = number of
    samples in the whole set within d_i (self excluded). Samples of single-sample classes are dropped.
    """
    x = as_2d(x, "x")
    labels = np.asarray(labels).reshape(-1)
    _check_pair(x, labels[:, None], k)
    n = x.shape[0]
    radius, k_used, class_size = np.zeros(n), np.zeros(n, dtype=int), np.zeros(n, dtype=int)
    for c in np.unique(labels):
        rows = np.flatnonzero(labels == c)
        class_size[rows] = rows.size
        if rows.size < 2:
            continue
        kc = min(k, rows.size - 1)
        dist, _ = cKDTree(x[rows]).query(x[rows], k=kc + 1, p=np.inf)
        radius[rows], k_used[rows] = dist[:, kc], kc
    keep = class_size > 1
    if keep.sum() <= k:
        raise MIError("too few samples in classes with at least 2 members")
    x, radius, k_used, class_size = x[keep], radius[keep], k_used[keep], class_size[keep]
    m = _count_within(x, radius)
    value = digamma(x.shape[0]) + np.mean(digamma(k_used)) - np.mean(digamma(class_size)) - np.mean(digamma(m))
    return max(float(value), 0.0)


# ----------------------------------------------------------------------------- preprocessing

def standardize(x: np.ndarray) -> np.ndarray:
    """Zero mean, unit variance per column (constant columns become 0)."""
    std = x.std(axis=0)
    return (x - x.mean(axis=0)) / np.where(std > 0, std, 1.0)


def pca_reduce(x: np.ndarray, dim: Optional[int]) -> np.ndarray:
    """Project (N, D) on its first ``dim`` principal components (numpy SVD); unchanged if D <= dim."""
    if dim is None or x.shape[1] <= dim:
        return x
    centred = x - x.mean(axis=0)
    _, _, vt = np.linalg.svd(centred, full_matrices=False)
    return centred @ vt[:dim].T


@dataclass
class MIOptions:
    """Options of :func:`mutual_information`.

    k: neighbours for KSG/Ross (3, as Kraskov et al. recommend for low bias).
    max_samples: rows kept, drawn without replacement with ``seed`` (k-NN cost ~ N log N; 2000
        keeps a pair under a second at the dimensions below). None = all rows.
    pca_dim: each continuous variable is reduced to this many principal components (8 by default:
        k-NN estimators lose accuracy fast above ~10 joint dimensions). None = no reduction.
    standardize: per-dimension zero mean / unit variance before PCA and the k-NN search, which
        makes KSG invariant to per-dimension rescaling and the max-norm meaningful.
    jitter: Gaussian noise of this standard deviation (in standardised units) breaks ties in the
        k-NN counts (quantised or repeated features); 0 turns it off.
    ridge: relative ridge on covariances of the Gaussian estimators.
    """
    k: int = 3
    max_samples: Optional[int] = 2000
    pca_dim: Optional[int] = 8
    standardize: bool = True
    jitter: float = 1e-10
    ridge: float = 1e-6
    seed: int = 0


ESTIMATORS = ("ksg", "gaussian")


def prepare(x, options: MIOptions, rng: np.random.Generator, name: str = "x") -> np.ndarray:
    """Standardise, PCA-reduce and jitter one continuous variable as ``options`` say."""
    x = as_2d(x, name)
    if options.standardize:
        x = standardize(x)
    x = pca_reduce(x, options.pca_dim)
    if options.jitter:
        x = x + options.jitter * rng.standard_normal(x.shape)
    return x


def mutual_information(x, y, discrete_y: bool = False, estimator: str = "ksg",
                       options: Optional[MIOptions] = None) -> float:
    """I(X;Y) in nats. x (N, Dx) continuous; y (N, Dy) continuous or (N,) labels (``discrete_y``).

    estimator "ksg": KSG (continuous y) or Ross (discrete y); "gaussian": covariance closed form
    (class-conditional for discrete y). Subsampling, standardisation and PCA per ``options``.
    """
    options = options or MIOptions()
    if estimator not in ESTIMATORS:
        raise MIError(f"unknown estimator {estimator!r}; choose from {ESTIMATORS}")
    x = as_2d(x, "x")
    y = np.asarray(y).reshape(-1) if discrete_y else as_2d(y, "y")
    if x.shape[0] != y.shape[0]:
        raise MIError(f"x and y have different numbers of samples ({x.shape[0]} vs {y.shape[0]})")
    rng = np.random.default_rng(options.seed)
    if options.max_samples is not None and x.shape[0] > options.max_samples:
        rows = np.sort(rng.choice(x.shape[0], options.max_samples, replace=False))
        x, y = x[rows], y[rows]
    x = prepare(x, options, rng, "x")
    if discrete_y:
        return (ross_mi(x, y, options.k) if estimator == "ksg"
                else gaussian_mi_discrete(x, y, options.ridge))
    y = prepare(y, options, rng, "y")
    return ksg_mi(x, y, options.k) if estimator == "ksg" else gaussian_mi(x, y, options.ridge)
