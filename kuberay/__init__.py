"""Kubernetes through KubeRay: manifests (base + overlays) and the code that renders,
validates and exercises them (serveConfigV2 generation, offline validation, multi-node demo).
"""
