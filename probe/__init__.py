"""Probes: small proxy language models trained per pool to measure how each pool's loss falls
with data and repetition (design, data, training, validation).

workflow (what `curate probe` calls) -> run_pools (reads the run directory), data (target and
U-token subsets), design (runs, proxy ladder, budget sizing; throughput times the machine),
training (proxy_lm + sequences), outputs (observation files); validation checks the QQT law on
the held-out runs; observations_io reads observation tables for `curate fit`. Nothing here
imports the CLI; torch is imported only when a proxy is built.
"""
