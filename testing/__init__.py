"""Harnesses for tests and benchmarks: random-weight checkpoints, a two-node Ray cluster.

Not part of the service: the image leaves this folder out (.dockerignore), and the
`happykube` commands built on it (`checkpoints`, `kuberay multinode`) import it only when
they run, saying in one line where it is absent.
"""
