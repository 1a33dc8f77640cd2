"""Formulas of the Chinchilla and data-constrained (Muennighoff et al., NeurIPS 2023) LM laws.

Pure vectorised numpy, no law objects and no fitting, so that the law classes
(:mod:`laws.data_constrained`), the fitting machinery (:mod:`laws.fitting`) and the planner
(:mod:`laws.planner_objectives`) all build on them without importing one another. The formulas
and their derivation are in :mod:`laws.data_constrained`'s docstring.
"""
from __future__ import annotations

import math

import numpy as np

CHINCHILLA_PARAMS = ("E", "A", "B", "alpha", "beta")
DATA_CONSTRAINED_PARAMS = CHINCHILLA_PARAMS + ("R_D_star", "R_N_star")

#: Published fit of Muennighoff et al. (their notebook's constants, exactly).
PUBLISHED = dict(
    E=math.exp(0.6254804),
    A=math.exp(6.255414),
    B=math.exp(7.3049974),
    alpha=0.3526596,
    beta=0.3526596,
    R_D_star=15.387756,
    R_N_star=5.309743,
)


# ---------------------------------------------------------------------------------------------
# Formulas (vectorised numpy; scalars in, 0-d arrays / floats out)
# ---------------------------------------------------------------------------------------------

def g_factor(A, B, alpha, beta):
    """G = (alpha A / (beta B))^(1 / (alpha + beta)), the scale of N_opt (nan unless > 0)."""
    # np.power, not **: a Python float raised to a fractional power goes complex when the
    # base is negative (an optimiser trying alpha < 0); nan makes the objective reject it.
    alpha, beta, A, B = (np.asarray(v, dtype=float) for v in (alpha, beta, A, B))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.power(alpha * A / (beta * B), 1.0 / (alpha + beta))


def n_opt(C, A, B, alpha, beta):
    """Chinchilla compute-optimal parameter count N_opt(C) = G (C / 6)^(beta / (alpha + beta))."""
    C = np.asarray(C, dtype=float)
    return g_factor(A, B, alpha, beta) * (C / 6.0) ** (beta / (alpha + beta))


def d_opt(C, A, B, alpha, beta):
    """Chinchilla compute-optimal token count D_opt(C) = C / (6 N_opt(C))."""
    C = np.asarray(C, dtype=float)
    return C / (6.0 * n_opt(C, A, B, alpha, beta))


def compute_for_unique(U_D, A, B, alpha, beta):
    """C(U_D) = 6 (G U_D)^((alpha + beta) / alpha): the compute for which U_D tokens are optimal."""
    U_D = np.asarray(U_D, dtype=float)
    return 6.0 * (g_factor(A, B, alpha, beta) * U_D) ** ((alpha + beta) / alpha)


def unique_params(N, U_D, A, B, alpha, beta):
    """U_N = min(N_opt(C(U_D)), N), with N_opt(C(U_D)) = G (G U_D)^(beta / alpha)."""
    G = g_factor(A, B, alpha, beta)
    alpha, beta = np.asarray(alpha, dtype=float), np.asarray(beta, dtype=float)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.minimum(G * (G * np.asarray(U_D, dtype=float)) ** (beta / alpha),
                          np.asarray(N, dtype=float))


def _decayed(unique, repeats, r_star):
    """unique + unique R* (1 - exp(-R / R*)): repeated units are worth less and less."""
    return unique + unique * r_star * (-np.expm1(-repeats / r_star))


def effective_data(D, U_D, R_D_star):
    """D' from total tokens D, unique tokens U_D and the data half-life-like constant R*_D."""
    D = np.asarray(D, dtype=float)
    U_D = np.asarray(U_D, dtype=float)
    R_D = np.maximum(D / U_D - 1.0, 0.0)
    return _decayed(U_D, R_D, R_D_star)


def effective_params(N, U_D, A, B, alpha, beta, R_N_star):
    """N': parameters beyond N_opt(C(U_D)) count less (excess capacity is wasted)."""
    N = np.asarray(N, dtype=float)
    U_N = unique_params(N, U_D, A, B, alpha, beta)
    R_N = np.maximum(N / U_N - 1.0, 0.0)
    return _decayed(U_N, R_N, R_N_star)


def lse_log_loss(logN, logD, e, a, b, alpha, beta):
    """log L = LSE(a - alpha log N, b - beta log D, e), computed stably."""
    return np.logaddexp(np.logaddexp(a - alpha * logN, b - beta * logD), e)


def chinchilla_loss(N, D, E, A, B, alpha, beta):
    """L = E + A / N^alpha + B / D^beta (vectorised)."""
    logN = np.log(np.asarray(N, dtype=float))
    logD = np.log(np.asarray(D, dtype=float))
    return np.exp(lse_log_loss(logN, logD, math.log(E), math.log(A), math.log(B), alpha, beta))


def data_constrained_loss(N, D, U_D, E, A, B, alpha, beta, R_D_star, R_N_star):
    """L(N, D, U_D) of Muennighoff et al. (vectorised; see the module docstring)."""
    D_eff = effective_data(D, U_D, R_D_star)
    N_eff = effective_params(N, U_D, A, B, alpha, beta, R_N_star)
    return chinchilla_loss(N_eff, D_eff, E, A, B, alpha, beta)
