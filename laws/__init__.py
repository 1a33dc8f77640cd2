"""Repetition-aware quality-quantity scaling laws: models, fitting and planning (numpy/scipy only).

Laws are values (:mod:`laws.law`); estimators fit them (``fit(observations)`` returns self).
QQT: :mod:`qqt_kernel` (segments + evaluation, the mixture rule), :mod:`qqt` (QQTLaw),
:mod:`qqt_fit` (QQTFit). LM laws: :mod:`lm_formulas`, :mod:`data_constrained` (the laws),
:mod:`fitting` (Huber / VarPro / L-BFGS machinery), :mod:`lm_fit` (LMFit). Shared:
:mod:`observations`, :mod:`bootstrap`, :mod:`diagnostics`, :mod:`lawfile` (law-file format).
Planning: :mod:`planner_objectives`, :mod:`planner_search`, :mod:`planner`, :mod:`planning`
(make_plan and the plan-file format).
"""
