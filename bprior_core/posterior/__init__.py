"""A reference posterior that converges on a CPU: a network's head on fixed features
(`reference`), sampled exactly by Metropolis-adjusted HMC (`hmc`)."""
