"""One downstream run: data subset + model + prior + method + seed -> metrics.

Loss (all methods) = mean cross-entropy over the batch - log p(theta_backbone) / N
                     + weight_decay / 2 * ||head||^2,
with N the downstream training-set size. The head has no prior term (a fresh linear layer); it
gets plain weight decay. Method `sgd` has no prior term: it is ordinary fine-tuning with weight
decay on every parameter. Methods:
- `sgd`:       SGD (Nesterov momentum) with a cosine learning rate, weight decay, no prior.
- `sgd_prior`: the same optimiser on the loss with the prior: the MAP estimate.
- `probe`:     the same optimiser on the head alone, the backbone frozen at its initial weights
               (a linear probe; weight decay on the head, no prior).
- `sgld`, `sghmc`: the cyclical samplers of `bprior_core.sgmcmc`; predictions are the Bayesian
  model average (mean of softmax probabilities) over the collected samples.
Every evaluated set of weights, each sample and every method's final iterate alike, predicts
with BatchNorm statistics recomputed on its training data for those weights.
A non-finite loss, weight or prediction marks the run `diverged` instead of raising.

A tight prior (small scale) is stiff: its curvature 1/(N * variance) makes explicit steps of
every method unstable (lr x curvature reaches 1e6 at scale 1 with SWAG variances). The authors
clip the gradient at norm 2, which keeps runs finite but no longer samples the prior. Here
`prior_step_cap` (default 0.05) preconditions the stiff directions so that no step sees more than
that curvature (`PackedPrior.preconditioner`; the target density and the MAP are unchanged), and
runs need no clipping. `prior_step_cap: null` gives plain explicit steps.

Gradient clipping (`grad_clip`, off unless set; kept as an option) caps the norm of the
BACKBONE's gradient only: clipping the head too would let the prior's huge gradient starve the
head of updates.

Runs execute in packs (`training.loop.train_pack`); `train_and_evaluate` is one run alone, a pack
of one.
"""

from __future__ import annotations

import torch

from ..data.device import DeviceTask
from ..data.tasks import TensorTask
from ..priors.gaussian import GaussianPrior
from ..settings import TrainSettings
from ..vocabulary import METHODS, SAMPLER_METHODS
from .loop import train_pack
from .models import Classifier
from .spec import RunOutcome, RunSpec

__all__ = ["METHODS", "SAMPLER_METHODS", "RunOutcome", "TrainSettings", "train_and_evaluate"]


def train_and_evaluate(
    model: Classifier,
    train_data: TensorTask,
    test_data: TensorTask,
    method: str,
    settings: TrainSettings,
    prior: GaussianPrior | None = None,
    seed: int = 0,
    device: torch.device | str = "cpu",
    progress: bool = False,
    precision: str = "fp32",
) -> RunOutcome:
    """Train `model` (backbone already holding the initial weights) on `train_data` and evaluate.

    The head is re-initialised from `seed`; batches and sampler noise are drawn from generators
    seeded with `seed`, so a CPU run is bit-for-bit repeatable. The run trains a pack of one;
    `model` receives its final weights.
    """
    pool = DeviceTask.from_task(train_data, device)
    test = DeviceTask.from_task(test_data, device)
    spec = RunSpec(torch.arange(len(train_data)), seed, prior)
    return train_pack(model, pool, test, method, settings, [spec], device, precision,
                      progress=progress, trained=[model])[0]
