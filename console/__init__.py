"""The operations console: a web API, live events, metrics and pages over gridwatch's topics.

``console.model`` (what it knows, pure), ``console.app`` (aiohttp, ``gridwatch console``),
``console.auth`` (users, sessions), ``console.evidence`` (SVG charts), ``console.metrics`` (Prometheus),
``console.openapi`` (the API's description). The page itself is ``console/static/``.
"""
