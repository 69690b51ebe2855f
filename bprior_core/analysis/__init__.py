"""Reading and judging results: run records (`records`), choices on validation (`selection`),
classification metrics and model averaging (`metrics`), pooled chains (`chains`) and their
R-hat / ESS (`convergence`), paired statistics over seeds (`paired`), the two-way bootstrap
(`bootstrap`) and power by design (`power`)."""
