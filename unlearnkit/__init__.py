"""unlearnkit: remove data from a trained Bayesian model without retraining.

Modules, one per idea of the book:

- :mod:`unlearnkit.exact` -- exact Bayesian unlearning (conjugate models, grids).
- :mod:`unlearnkit.likelihoods` -- log-likelihood callables ``theta [S, d] -> [S]``.
- EUBO and reverse-KL unlearning of Gaussian beliefs and the adjusted likelihood,
  exported here at the top level.
- :mod:`unlearnkit.metrics` -- averaged KL between predictives, KL between Gaussians.
- :mod:`unlearnkit.gp` -- unlearning for GPflow sparse variational GPs.
- :mod:`unlearnkit.bif` -- Bayesian inference forgetting (influence-function removal).
"""

from unlearnkit import likelihoods
from unlearnkit import exact
from unlearnkit import gp
from unlearnkit import bif
from unlearnkit import metrics, vi
from unlearnkit.adjusted import adjusted_log_likelihood
from unlearnkit.eubo import eubo, unlearn_eubo
from unlearnkit.reverse_kl import effective_sample_size, unlearn_reverse_kl
from unlearnkit.vi import fit_gaussian_vi

__version__ = "0.1.0"

__all__ = [
    "likelihoods", "exact", "gp", "bif", "metrics", "vi",
    "adjusted_log_likelihood", "eubo", "unlearn_eubo", "unlearn_reverse_kl",
    "effective_sample_size", "fit_gaussian_vi", "__version__",
]
