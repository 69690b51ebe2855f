"""Packed training: R runs that share a shape train together as one packed network.

A pack shares the model architecture, the method, the number of steps, the batch size, the
training-set size and the schedule's shape. Everything else is each run's own: its training subset
and batch order (its seed), its head initialisation, its sampler noise (a generator per run), its
prior (mean, variance, low-rank factor), its learning rate, weight decay and temperature, its
samples, metrics and divergence status. Run r's arithmetic touches only run r's slice of every
tensor (see `packing`), so a run's result does not depend on its pack beyond floating-point
rounding, and a run that diverges is frozen without disturbing the others.

The loop never waits on the host: losses and divergence flags stay on the device and are read
every `CHECK_EVERY` steps and at sample points; learning rates and noise levels for every step are
tabulated on the device up front; batches come from `data.device.BatchStream`.

Loss of run r (every method) = mean cross-entropy over its batch - log p_r(theta_backbone) / N
+ weight_decay_r / 2 * ||head||^2 (`sgd`, which has no prior: weight decay on every parameter).
The prior's gradient is added directly (`PackedPrior`), not through autograd.

`spec` (a run and its outcome), `pack` (the packed network and its update), `loop` (training
one pack), `diagnostics` (per-run diagnostics of a step), `packing` (R networks as one: grouped
convolutions), `models` (the backbones and their flat parameter view), `run` (one downstream run
through a pack of one: `train_and_evaluate`).
"""
