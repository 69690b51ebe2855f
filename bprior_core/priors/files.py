"""Prior files: this library's own single-file format and the authors' four-file format.

- Own format (`save_prior` / `load_prior`): one `torch.save` of a dict with a format tag and
  version, the tensors (mean, variance, cov_factor), the JSON meta and the header (dim, rank).
- The authors' format (`save_authors_prior` / `load_authors_prior`): four files
  `<prefix>_{mean,variance,covmat,model}.pt`, whose covmat rows are F itself (deviations already
  divided by sqrt(K-1)) and whose model file is the backbone's state_dict.

Every file is read with `weights_only=True` on the CPU and written atomically. A file that
exists but cannot be used raises `PriorFileError` naming the file and the fix; the mathematics
(`prior.GaussianPrior`) never touches a file.
"""

from __future__ import annotations

import copy
import os
import pickle
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from ..atomic import atomic_torch_save
from .gaussian import GaussianPrior, check_covers, check_scale

FORMAT_TAG = "bprior-gaussian-prior"
FORMAT_VERSION = 1
AUTHORS_SUFFIXES = ("mean", "variance", "covmat", "model")
_HEADER = ("mean", "variance", "cov_factor", "meta", "dim", "rank")

PathLike = str | os.PathLike


class PriorFileError(ValueError):
    """A prior or weights file exists but cannot be used (corrupt, truncated, not a tensor file,
    invalid values); the message names the file and says how to fix it."""


def load_torch_file(path: PathLike, fix: str | None = None) -> Any:
    """`torch.load(path)` on the CPU with weights_only=True; a file that cannot be read (corrupt,
    truncated, not written by torch.save) raises PriorFileError naming it. A missing file raises
    FileNotFoundError, an unreadable one (permissions) OSError, as usual."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except OSError:
        raise
    except pickle.UnpicklingError as exc:
        if "Weights only load failed" in str(exc):
            # torch's own message suggests turning the protection off: never pass that on
            raise PriorFileError(
                f"{path} holds Python objects other than tensors and plain containers, which "
                "bprior refuses to unpickle (a pickle can run code when loaded; files are read "
                "with weights_only=True); save plain tensors or a state_dict with torch.save"
            ) from None
        raise _unreadable(path, exc, fix) from exc
    except (RuntimeError, EOFError, ValueError, TypeError,
            AttributeError, KeyError, IndexError) as exc:
        raise _unreadable(path, exc, fix) from exc


def _unreadable(path: PathLike, exc: BaseException, fix: str | None) -> PriorFileError:
    """The error for a file torch cannot read at all: corrupt, truncated or not a torch file."""
    hint = fix or ("replace it with a good copy (or delete it, if bprior wrote it, so that "
                   "it is made again)")
    first = str(exc).splitlines()[0][:200] if str(exc) else "no details"
    return PriorFileError(
        f"{path} cannot be read as a torch file ({type(exc).__name__}: {first}); the file "
        f"is corrupt or truncated: {hint}")


def _cpu_copy(t: torch.Tensor) -> torch.Tensor:
    """Detached contiguous CPU copy (so torch.save never writes a larger underlying storage)."""
    return t.detach().to("cpu").contiguous().clone()


# ----------------------------------------------------------------------------- own format


def save_prior(prior: GaussianPrior, path: PathLike) -> None:
    """Write `prior` to one file (torch.save of a dict), atomically."""
    payload = {
        "format": FORMAT_TAG,
        "format_version": FORMAT_VERSION,
        "mean": _cpu_copy(prior.mean),
        "variance": _cpu_copy(prior.variance),
        "cov_factor": _cpu_copy(prior.cov_factor),
        "meta": copy.deepcopy(prior.meta),
        "dim": prior.dim,
        "rank": prior.rank,
    }
    atomic_torch_save(payload, path)


def load_prior(path: PathLike, expected_dim: int | None = None) -> GaussianPrior:
    """Read a prior written by `save_prior` (on the CPU), checking format, sizes and values.

    `expected_dim`: the model backbone's parameter count; a mismatch raises ValueError.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"prior file not found: {path}")
    payload = load_torch_file(path)
    _check_payload(payload, path)
    try:
        prior = GaussianPrior(payload["mean"], payload["variance"], payload["cov_factor"],
                              payload["meta"])
    except ValueError as exc:
        raise PriorFileError(f"{path}: invalid prior: {exc}; replace the file (or delete it, "
                             "if bprior learned it, so that it is learned again)") from exc
    if prior.dim != payload["dim"] or prior.rank != payload["rank"]:
        raise PriorFileError(
            f"{path}: header says dim={payload['dim']}, rank={payload['rank']} but tensors "
            f"give dim={prior.dim}, rank={prior.rank}"
        )
    if expected_dim is not None:
        check_covers(prior, expected_dim, f"the prior in {path}")
    return prior


def _check_payload(payload: Any, path: Path) -> None:
    """Raise PriorFileError unless `payload` is a dict in this library's format, version 1."""
    tag = payload.get("format") if isinstance(payload, Mapping) else None
    if tag != FORMAT_TAG:
        raise PriorFileError(
            f"{path} is not a bprior prior file: format tag {tag!r}, expected {FORMAT_TAG!r}"
        )
    if payload.get("format_version") != FORMAT_VERSION:
        raise PriorFileError(
            f"{path}: unsupported format_version {payload.get('format_version')!r} "
            f"(this code reads {FORMAT_VERSION})"
        )
    missing = [k for k in _HEADER if k not in payload]
    if missing:
        raise PriorFileError(f"{path}: prior file lacks keys {missing}")


# ----------------------------------------------------------------------------- weights


def _few(names: list[str], n: int = 5) -> str:
    return ", ".join(names[:n]) + (f" and {len(names) - n} more" if len(names) > n else "")


def checked_backbone_state(state: Any, backbone: torch.nn.Module, where: PathLike
                           ) -> dict[str, torch.Tensor]:
    """`state` (read from the file `where`) as a complete, finite state dict for `backbone`, or
    PriorFileError naming the file and what does not fit: empty, missing or unexpected keys (a
    `module.` prefix, as DataParallel writes it, is removed), wrong shapes, a floating tensor
    where the model has integers or the reverse, NaN or infinite values."""
    if not isinstance(state, Mapping) or not state:
        raise PriorFileError(f"{where} holds no weights (got {type(state).__name__} of length "
                             f"{len(state) if isinstance(state, Mapping) else '-'}); it must "
                             "hold the backbone's state_dict")
    state = dict(state)
    if all(isinstance(k, str) and k.startswith("module.") for k in state):
        state = {k.removeprefix("module."): v for k, v in state.items()}
    expected = backbone.state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = [str(k) for k in state if k not in expected]
    if missing or unexpected:
        parts = ([f"missing keys {_few(missing)}"] if missing else []) + (
            [f"unexpected keys {_few(unexpected)}"] if unexpected else [])
        raise PriorFileError(f"{where} does not fit the model's backbone: {'; '.join(parts)} "
                             f"(the backbone has {len(expected)} entries, e.g. "
                             f"{_few(list(expected), 3)}); save the backbone's state_dict "
                             "without the classifier head")
    bad = [f"{k} {tuple(v.shape) if isinstance(v, torch.Tensor) else type(v).__name__} "
           f"(model {tuple(expected[k].shape)})" for k, v in state.items()
           if not isinstance(v, torch.Tensor) or v.shape != expected[k].shape]
    if bad:
        raise PriorFileError(f"{where}: tensors of the wrong shape: {_few(bad)}")
    kinds = [f"{k} is {v.dtype} (model {expected[k].dtype})" for k, v in state.items()
             if v.is_floating_point() != expected[k].is_floating_point() or v.is_complex()]
    if kinds:
        raise PriorFileError(f"{where}: tensors of the wrong kind: {_few(kinds)}")
    broken = [k for k, v in state.items() if v.is_floating_point() and not torch.isfinite(v).all()]
    if broken:
        raise PriorFileError(f"{where}: NaN or infinite values in {_few(broken)}; replace the "
                             "file with a good copy")
    return state


# ----------------------------------------------------------------------------- authors' format


def _authors_paths(prefix: PathLike) -> dict[str, Path]:
    """Map each of the authors' four suffixes to its file path `<prefix>_<suffix>.pt`."""
    return {s: Path(f"{os.fspath(prefix)}_{s}.pt") for s in AUTHORS_SUFFIXES}


def _load_authors_file(prefix: PathLike, suffix: str) -> Any:
    """Load one of the authors' files with weights_only=True, naming it if it is missing."""
    path = _authors_paths(prefix)[suffix]
    if not path.is_file():
        expected = ", ".join(f"{os.fspath(prefix)}_{s}.pt" for s in AUTHORS_SUFFIXES)
        raise FileNotFoundError(
            f"missing authors' prior file {path} (the '{suffix}' file); "
            f"the authors' format expects four files: {expected}"
        )
    return load_torch_file(path)


def load_authors_model_state(prefix: PathLike) -> dict[str, torch.Tensor]:
    """Load `<prefix>_model.pt`, the backbone state_dict stored beside the authors' prior."""
    state = _load_authors_file(prefix, "model")
    if not isinstance(state, Mapping):
        raise PriorFileError(f"{prefix}_model.pt does not hold a state_dict (got {type(state)})")
    return dict(state)


def _authors_tensor(prefix: PathLike, suffix: str, ndim: int) -> torch.Tensor:
    """Load an authors' prior tensor file and check it is a floating-point tensor with `ndim`
    dimensions (a bool, integer or complex tensor is refused, not silently cast)."""
    t = _load_authors_file(prefix, suffix)
    where = f"{os.fspath(prefix)}_{suffix}.pt"
    if not isinstance(t, torch.Tensor):
        raise PriorFileError(f"{where} must hold a tensor, got {type(t).__name__}")
    if not t.is_floating_point():
        raise PriorFileError(f"{where} holds a {t.dtype} tensor; the authors' prior files hold "
                             "floating-point tensors (float32 or float64): convert it with "
                             "tensor.float() and save it again")
    if t.ndim != ndim:
        raise PriorFileError(f"{where} must be {ndim}-D, got shape {tuple(t.shape)}")
    return t


def _floor_variance(variance: torch.Tensor, floor: float | None, source: str) -> torch.Tensor:
    """Clamp non-positive variances to `floor`, or raise (floor None) naming the file and fix."""
    n_bad = int((variance <= 0).sum())
    if floor is None:
        if n_bad:
            raise PriorFileError(
                f"variance in {source} has {n_bad} non-positive entries "
                f"(min {float(variance.min()):g}); variances must be > 0. "
                "Set the profile key priors.variance_floor to a small positive float (e.g. "
                "1e-12) to clamp them (Python: load_authors_prior(..., variance_floor=...))."
            )
        return variance
    return variance.clamp_min(check_scale("variance_floor", floor))


def _check_covmat_shape(covmat: torch.Tensor, dim: int, prefix: PathLike) -> None:
    """Raise PriorFileError unless covmat is K x D (hinting when it looks transposed)."""
    if covmat.shape[1] == dim:
        return
    hint = " (it looks transposed: expected K x D)" if covmat.shape[0] == dim else ""
    raise PriorFileError(
        f"{prefix}_covmat.pt has shape {tuple(covmat.shape)} but the mean has D={dim} "
        f"entries{hint}"
    )


def load_authors_prior(
    prefix: PathLike,
    rank: int | None = None,
    model_state: bool = False,
    variance_floor: float | None = None,
) -> GaussianPrior | tuple[GaussianPrior, dict[str, torch.Tensor]]:
    """Load the authors' prior `<prefix>_{mean,variance,covmat}.pt` (covmat rows = F).

    `rank`: keep the first `rank` rows (None = all stored). `variance_floor`: the authors'
    variance (E[x^2] - E[x]^2) can hold zeros or tiny negatives; None raises on them, a float
    clamps them up to it. `model_state=True` also loads `<prefix>_model.pt` and returns
    `(prior, state_dict)`; otherwise the model file is not needed. Variance and covmat are cast
    to the mean's dtype.
    """
    mean = _authors_tensor(prefix, "mean", 1)
    variance = _authors_tensor(prefix, "variance", 1).to(mean.dtype)
    covmat = _authors_tensor(prefix, "covmat", 2).to(mean.dtype)
    _check_covmat_shape(covmat, mean.numel(), prefix)
    n_clamped = int((variance <= 0).sum())
    variance = _floor_variance(variance, variance_floor, f"{prefix}_variance.pt")
    meta = {"source": "authors_files", "prefix": os.fspath(prefix),
            "stored_rank": covmat.shape[0], "variance_floor": variance_floor,
            "n_variance_clamped": n_clamped if variance_floor is not None else 0}
    try:
        prior = GaussianPrior(mean, variance, covmat, meta)
    except ValueError as exc:
        raise PriorFileError(
            f"the authors' prior files {os.fspath(prefix)}_{{mean,variance,covmat}}.pt hold "
            f"invalid values: {exc}; replace them with good copies") from exc
    prior = prior if rank is None else prior.truncated(rank)
    if model_state:
        return prior, load_authors_model_state(prefix)
    return prior


def save_authors_prior(
    prior: GaussianPrior, prefix: PathLike,
    backbone_state_dict: Mapping[str, torch.Tensor] | None = None,
) -> None:
    """Write `<prefix>_{mean,variance,covmat}.pt` (covmat K x D = F) and, if given, the
    backbone state_dict as `<prefix>_model.pt`; each file is written atomically."""
    paths = _authors_paths(prefix)
    atomic_torch_save(_cpu_copy(prior.mean), paths["mean"])
    atomic_torch_save(_cpu_copy(prior.variance), paths["variance"])
    atomic_torch_save(_cpu_copy(prior.cov_factor), paths["covmat"])
    if backbone_state_dict is not None:
        state = {k: _cpu_copy(v) for k, v in backbone_state_dict.items()}
        atomic_torch_save(state, paths["model"])
