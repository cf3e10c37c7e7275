"""PoLe miner: datasets, model specs, the secure mapping layer, training, quantised export,
deterministic integer evaluation, and (elsewhere in this package) signed messages and the
mining loop.

Consensus-critical code here (dataset and model encodings, the SML, the integer evaluator) uses
integer arithmetic only; see docs/ML.md.
"""
