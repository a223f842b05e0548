"""Bayesian inference forgetting (BIF): influence-function removal of data.

Energies ``gamma [d] -> scalar`` describe a trained model (the negative log posterior of a
MAP model, the objective of variational inference, the potential of a sampler); removing data
subtracts its energy, and :func:`influence_unlearn` moves the minimiser by one Newton-type
step instead of retraining (Fu et al., 2021).
"""

from unlearnkit.bif import mixture
from unlearnkit.bif.mixture import GaussianMixtureModel, svi_noise
from unlearnkit.bif.influence import (
    Energy,
    conjugate_gradient,
    energy_gradient,
    energy_hessian,
    hessian_vector_product,
    influence_unlearn,
    influence_unlearn_sequential,
)
from unlearnkit.bif.map_energy import (
    laplace_approximation,
    map_energies,
    newton_minimize,
)
from unlearnkit.bif.samplers import (
    SGHMC,
    SGLD,
    SamplerResult,
    forget_samples,
    influence_hessians,
)
from unlearnkit.bif.svi import SVIFit, fit_svi, forget_svi

__all__ = [
    "Energy",
    "conjugate_gradient",
    "energy_gradient",
    "energy_hessian",
    "hessian_vector_product",
    "influence_unlearn",
    "influence_unlearn_sequential",
    "laplace_approximation",
    "map_energies",
    "newton_minimize",
    "mixture",
    "GaussianMixtureModel",
    "svi_noise",
    "SGLD",
    "SGHMC",
    "SamplerResult",
    "forget_samples",
    "influence_hessians",
    "SVIFit",
    "fit_svi",
    "forget_svi",
]
