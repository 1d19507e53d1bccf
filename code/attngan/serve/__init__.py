"""Serving: ``attngan-serve``, an HTTP API and a web page over a trained generator.

engine (models and captions, as attngan-sample) -> batching (micro-batches off the event
loop) -> render (PNG files) and store (bounded images) -> app (routes) -> cli.
Needs the ``serve`` extra (FastAPI, uvicorn).
"""
