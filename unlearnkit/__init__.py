"""unlearnkit: remove data from a trained Bayesian model without retraining.

Modules, one per idea of the book:

- :mod:`unlearnkit.exact` -- exact Bayesian unlearning (conjugate models, grids).
- :mod:`unlearnkit.likelihoods` -- log-likelihood callables ``theta [S, d] -> [S]``.
- :mod:`unlearnkit.variational` -- unlearning a Gaussian belief: the adjusted likelihood,
  the EUBO, the reverse KL, and Gaussian variational inference to fit the beliefs.
- :mod:`unlearnkit.gp` -- GPflow models: sparse variational GPs as beliefs over inducing
  outputs, and exact unlearning for GP regression by updating its Cholesky factor (GPflow
  is imported only when this module is first used).
- :mod:`unlearnkit.bif` -- Bayesian inference forgetting (influence-function removal).
- :mod:`unlearnkit.bnn` -- a Bayesian multilayer perceptron on a flat parameter vector, and
  the digits data it is trained on (imported on its own: ``from unlearnkit.bnn import ...``).
- :mod:`unlearnkit.metrics` -- how close an unlearned belief is to the retrained one.
- :mod:`unlearnkit.comparison` -- every method of the book run on one task and measured
  against retraining (imported on its own).
- :mod:`unlearnkit.datasets` -- the book's synthetic data sets.
- :mod:`unlearnkit.derivatives`, :mod:`unlearnkit.laplace`, :mod:`unlearnkit.linalg`,
  :mod:`unlearnkit.optimize` -- energies' derivatives, the Laplace approximation, checked
  linear algebra and the one L-BFGS entry point, shared by every method.
- :mod:`unlearnkit.seeds`, :mod:`unlearnkit.errors`, :mod:`unlearnkit.diagnostics` -- the
  package's conventions: seeds as TFP has them, typed failures, ``return_info`` results.

The variational methods' main functions, the typed errors and the diagnostics types are
exported here at the top level.
"""

from __future__ import annotations

import importlib
from typing import Any

from unlearnkit import (
    bif,
    datasets,
    derivatives,
    diagnostics,
    errors,
    exact,
    laplace,
    likelihoods,
    linalg,
    metrics,
    optimize,
    seeds,
    variational,
)
from unlearnkit.diagnostics import (
    ImportanceInfo,
    InfluenceInfo,
    OptimizationInfo,
    SamplerInfo,
    SolverInfo,
)
from unlearnkit.errors import (
    ConvergenceWarning,
    DegenerateWeightsError,
    FallbackWarning,
    NotPositiveDefiniteError,
)
from unlearnkit.variational import (
    adjusted_log_likelihood,
    eubo,
    fit_gaussian_vi,
    importance_ess,
    unlearn_eubo,
    unlearn_reverse_kl,
)

__version__ = "0.1.0"

__all__ = [
    "bif", "datasets", "derivatives", "diagnostics", "errors", "exact", "gp", "laplace",
    "likelihoods", "linalg", "metrics", "optimize", "seeds", "variational",
    "OptimizationInfo", "SolverInfo", "ImportanceInfo", "SamplerInfo", "InfluenceInfo",
    "adjusted_log_likelihood", "eubo", "unlearn_eubo", "unlearn_reverse_kl",
    "importance_ess", "fit_gaussian_vi",
    "DegenerateWeightsError", "NotPositiveDefiniteError", "ConvergenceWarning", "FallbackWarning",
    "__version__",
]


def __getattr__(name: str) -> Any:
    """Import :mod:`unlearnkit.gp` (and GPflow) only when it is first used."""
    if name == "gp":
        return importlib.import_module("unlearnkit.gp")
    raise AttributeError(f"module 'unlearnkit' has no attribute {name!r}")
