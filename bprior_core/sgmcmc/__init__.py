"""Stochastic-gradient MCMC: the conventions and the shared optimizer (`langevin`), one sampler
per file (`sgld`, `sghmc`), the update rules written once for packed and plain tensors
(`updates`), and the step-size schedules (`schedules`)."""
