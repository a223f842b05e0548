"""Bayesian inference forgetting (BIF): influence-function removal of data (Fu et al., 2021).

Energies ``gamma [d] -> scalar`` describe a trained model (the negative log posterior of a
MAP model, the objective of variational inference, the potential of a sampler); removing data
subtracts its energy, and :func:`influence_unlearn` moves the minimiser by one Newton-type
step instead of retraining.

For any model given by a per-datum ``log_likelihood(theta [S, d], points) -> [S, n]`` and a
``log_prior(theta [S, d]) -> [S]``:

- :func:`forget_samples` -- posterior samples (SGLD, SGHMC, ...): the Gaussian transport
  (exact for a Gaussian posterior) or the per-sample Newton step;
- :func:`forget_variational` -- a Gaussian variational fit: the Gaussian transport, or BIF's
  influence step on the variational parameters;
- :func:`forget_chains` -- BIF's published SG-MCMC algorithm: influence steps whose
  expectations come from continued sampling on the remaining data;
- :func:`reweight_samples` -- the importance-reweighting baseline, with its effective
  sample size.

Modules:

- :mod:`~unlearnkit.bif.influence` -- the influence step, at once or in chunks, for energies
  given as callables (dense or conjugate-gradient solves); the one sequential routine.
- :mod:`~unlearnkit.bif.map_energy` -- MAP energies of a likelihood and a Gaussian prior, and
  Newton's method to (re)train them.
- :mod:`~unlearnkit.bif.per_datum` -- a model given by per-datum callables, and its derivatives.
- :mod:`~unlearnkit.bif.forgetting` -- forgetting applied to samples and variational fits.
- :mod:`~unlearnkit.bif.sgmcmc` -- BIF's forgetting for SG-MCMC (continued sampling).
- :mod:`~unlearnkit.bif.samplers` -- SGLD and SGHMC in TensorFlow.
- :mod:`~unlearnkit.bif.svi` -- stochastic variational inference (minibatch Adam).
- :mod:`~unlearnkit.bif.mixture` -- the Gaussian-mixture model of the BIF experiment.
"""

from unlearnkit.bif import (
    forgetting,
    influence,
    map_energy,
    mixture,
    per_datum,
    samplers,
    sgmcmc,
    svi,
)
from unlearnkit.bif.forgetting import (
    erasure_chunks,
    forget_samples,
    forget_variational,
    gaussian_transport_matrix,
    influence_hessians,
    reweight_samples,
)
from unlearnkit.bif.influence import influence_unlearn, influence_unlearn_sequential
from unlearnkit.bif.map_energy import map_energies, map_erased_energy, newton_minimize
from unlearnkit.bif.mixture import GaussianMixtureModel
from unlearnkit.bif.per_datum import PerDatumModel
from unlearnkit.bif.samplers import SGHMC, SGLD
from unlearnkit.bif.sgmcmc import forget_chains
from unlearnkit.bif.svi import fit_svi
from unlearnkit.derivatives import (
    Energy,
    energy_gradient,
    energy_hessian,
    hessian_vector_product,
)
from unlearnkit.laplace import laplace_approximation
from unlearnkit.linalg import conjugate_gradient

__all__ = [
    "Energy",
    "energy_gradient",
    "energy_hessian",
    "hessian_vector_product",
    "conjugate_gradient",
    "influence_unlearn",
    "influence_unlearn_sequential",
    "laplace_approximation",
    "map_energies",
    "map_erased_energy",
    "newton_minimize",
    "GaussianMixtureModel",
    "PerDatumModel",
    "SGLD",
    "SGHMC",
    "erasure_chunks",
    "forget_samples",
    "forget_variational",
    "forget_chains",
    "reweight_samples",
    "gaussian_transport_matrix",
    "influence_hessians",
    "fit_svi",
    "forgetting",
    "influence",
    "map_energy",
    "mixture",
    "per_datum",
    "samplers",
    "sgmcmc",
    "svi",
]
