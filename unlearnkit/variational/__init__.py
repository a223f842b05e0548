"""Unlearning a Gaussian belief ``q(theta | D)`` (Nguyen et al., 2020).

- :mod:`~unlearnkit.variational.adjusted` -- the adjusted likelihood ``p_adj(D_e | theta; lam)``.
- :mod:`~unlearnkit.variational.evidence_upper_bound` -- unlearning by minimising the EUBO.
- :mod:`~unlearnkit.variational.reverse_kl` -- unlearning by minimising the reverse KL.
- :mod:`~unlearnkit.variational.gaussian_vi` -- Gaussian variational inference, to fit
  ``q(theta | D)`` and to retrain on ``D_r``.
- :mod:`~unlearnkit.variational.gaussian` -- the whitened parameterisation they share.
- :mod:`~unlearnkit.variational.flow` -- masked-autoregressive-flow beliefs: their fit, the
  EUBO and the reverse KL (a weighted maximum-likelihood fit).
- :mod:`~unlearnkit.variational.mean_field` -- the same for diagonal-covariance (mean-field)
  Gaussians, for models with thousands of parameters.
"""

from unlearnkit.variational.adjusted import AdjustedLogLikelihood, adjusted_log_likelihood
from unlearnkit.variational.evidence_upper_bound import eubo, unlearn_eubo
from unlearnkit.variational.flow import (
    fit_flow_vi,
    flow_eubo,
    flow_mode_log_prob,
    is_maf_belief,
    make_maf_belief,
    unlearn_eubo_flow,
    unlearn_eubo_flow_grid,
    unlearn_reverse_kl_flow,
)
from unlearnkit.variational.gaussian_vi import elbo, fit_gaussian_vi
from unlearnkit.variational.mean_field import (
    diagonal_gaussian_kl,
    fit_mean_field_vi,
    unlearn_eubo_mean_field,
    unlearn_reverse_kl_mean_field,
)
from unlearnkit.variational.reverse_kl import (
    importance_ess,
    importance_log_weights,
    unlearn_reverse_kl,
)

__all__ = [
    "AdjustedLogLikelihood",
    "adjusted_log_likelihood",
    "eubo",
    "unlearn_eubo",
    "unlearn_reverse_kl",
    "importance_log_weights",
    "importance_ess",
    "elbo",
    "fit_gaussian_vi",
    "make_maf_belief",
    "is_maf_belief",
    "fit_flow_vi",
    "flow_eubo",
    "flow_mode_log_prob",
    "unlearn_eubo_flow",
    "unlearn_eubo_flow_grid",
    "unlearn_reverse_kl_flow",
    "fit_mean_field_vi",
    "unlearn_eubo_mean_field",
    "unlearn_reverse_kl_mean_field",
    "diagonal_gaussian_kl",
]
