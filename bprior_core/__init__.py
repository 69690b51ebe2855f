"""bprior_core: Bayesian transfer learning with learned Gaussian (SWAG) priors.

A tested implementation of the recipe of "Pre-Train Your Loss: Easy Bayesian Transfer Learning
with Informative Priors" (Shwartz-Ziv et al., NeurIPS 2022): learn a prior with SWAG on a source
task, rescale it, and use it in the loss of SGD / SGLD / SGHMC on a downstream task.
"""

__version__ = "0.1.0"
