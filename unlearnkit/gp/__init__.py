"""Unlearning in GPflow models.

- :mod:`~unlearnkit.gp.svgp` -- a sparse variational GP (``gpflow.models.SVGP``) as a
  belief over its inducing outputs, so that every variational method applies.
- :mod:`~unlearnkit.gp.regression` -- exact unlearning for GP regression
  (``gpflow.models.GPR``) by updating the Cholesky factor of its posterior.

Importing this module imports GPflow; ``import unlearnkit`` alone does not.
"""

from unlearnkit.gp.regression import GPRCholeskyPosterior, GPRUnlearnInfo, unlearn_gpr
from unlearnkit.gp.svgp import (
    KINDS,
    LOGISTIC_TOLERANCE,
    SVGPLogLikelihood,
    conditional_predictive_mean,
    erased_log_likelihood,
    fit_inducing_posterior,
    inducing_posterior,
    is_logistic_bernoulli,
    logistic_gauss_hermite_points,
    with_inducing_posterior,
)

__all__ = [
    "inducing_posterior",
    "erased_log_likelihood",
    "with_inducing_posterior",
    "conditional_predictive_mean",
    "fit_inducing_posterior",
    "unlearn_gpr",
    "GPRCholeskyPosterior",
    "GPRUnlearnInfo",
    "SVGPLogLikelihood",
    "is_logistic_bernoulli",
    "logistic_gauss_hermite_points",
    "KINDS",
    "LOGISTIC_TOLERANCE",
]
