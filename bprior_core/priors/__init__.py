"""Gaussian priors over a backbone's weights: the prior itself (`gaussian`: mean, diagonal and
low-rank covariance), R priors evaluated together (`packed`), their files (`files`: ours and the
authors' four-file format), SWAG moments (`swag`) and learning a prior on a source task
(`learning`)."""
