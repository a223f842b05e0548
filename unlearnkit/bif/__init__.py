"""Bayesian inference forgetting (BIF): influence-function removal of data (Fu et al., 2021).

Energies ``gamma [d] -> scalar`` describe a trained model (the negative log posterior of a
MAP model, the objective of variational inference, the potential of a sampler); removing data
subtracts its energy, and :func:`influence_unlearn` moves the minimiser by one Newton-type
step instead of retraining.

- :mod:`~unlearnkit.bif.influence` -- the influence step, at once or in chunks, for energies
  given as callables (dense or conjugate-gradient solves).
- :mod:`~unlearnkit.bif.map_energy` -- MAP energies of a likelihood and a Gaussian prior, and
  Newton's method to (re)train them.
- :mod:`~unlearnkit.bif.samplers` -- SGLD and SGHMC in TensorFlow.
- :mod:`~unlearnkit.bif.forgetting` -- forgetting applied to samples and variational fits.
- :mod:`~unlearnkit.bif.mixture` -- the Gaussian-mixture model of the BIF experiment.
- :mod:`~unlearnkit.bif.svi` -- variational inference for the mixture.
"""

from unlearnkit.bif import forgetting, influence, map_energy, mixture, samplers, svi
from unlearnkit.bif.forgetting import (
    erasure_chunks,
    forget_samples,
    forget_svi,
    influence_hessians,
)
from unlearnkit.bif.influence import influence_unlearn, influence_unlearn_sequential
from unlearnkit.bif.map_energy import map_energies, map_erased_energy, newton_minimize
from unlearnkit.bif.mixture import GaussianMixtureModel, svi_noise
from unlearnkit.bif.samplers import SGHMC, SGLD
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
    "svi_noise",
    "SGLD",
    "SGHMC",
    "erasure_chunks",
    "forget_samples",
    "forget_svi",
    "influence_hessians",
    "fit_svi",
    "forgetting",
    "influence",
    "map_energy",
    "mixture",
    "samplers",
    "svi",
]
