"""unlearnkit: remove data from a trained Bayesian model without retraining.

Modules, one per idea of the book:

- :mod:`unlearnkit.exact` -- exact Bayesian unlearning (conjugate models, grids).
- :mod:`unlearnkit.likelihoods` -- log-likelihood callables ``theta [S, d] -> [S]``.
- :mod:`unlearnkit.adjusted` -- the adjusted likelihood p_adj(D_e | theta; lambda).
- :mod:`unlearnkit.evidence_upper_bound` -- unlearning by minimising the EUBO.
- :mod:`unlearnkit.reverse_kl` -- unlearning by minimising the reverse KL (closed form).
- :mod:`unlearnkit.vi` -- Gaussian variational inference, to fit q(theta | D) and retrain.
- :mod:`unlearnkit.metrics` -- averaged KL between predictives, KL between Gaussians.

The variational methods' main functions are exported here at the top level.
- :mod:`unlearnkit.gp` -- unlearning for GPflow sparse variational GPs.
- :mod:`unlearnkit.bif` -- Bayesian inference forgetting (influence-function removal).
"""

from unlearnkit import bif, exact, gp, likelihoods, metrics, vi
from unlearnkit.adjusted import adjusted_log_likelihood
from unlearnkit.evidence_upper_bound import eubo, unlearn_eubo
from unlearnkit.reverse_kl import effective_sample_size, unlearn_reverse_kl
from unlearnkit.vi import fit_gaussian_vi

__version__ = "0.1.0"

__all__ = [
    "likelihoods", "exact", "gp", "bif", "metrics", "vi",
    "adjusted_log_likelihood", "eubo", "unlearn_eubo", "unlearn_reverse_kl",
    "effective_sample_size", "fit_gaussian_vi", "__version__",
]
