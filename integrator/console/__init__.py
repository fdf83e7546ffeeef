"""The operator console: views of the state store in a browser, and a JSON API.

- ``app``: the Flask application (``create_app``): the dashboard, runs and a run's log, the
  live view of a run, the order timeline, failures, the workbench, the actions; the JSON API
  under ``/api/`` and its OpenAPI document.
- ``security``: login, sessions, the role table (``ROUTE_ROLES``: every route's least role)
  and CSRF, when users are configured.
- ``guard``: the Host header checked (DNS rebinding); without users: loopback only, GET and
  HEAD only but for the workbench's runs (``security.LOCAL_WRITES``) from its own pages.
- ``openapi``: the API's description.

It reads the store through ``integrator.state.queries`` only, and masks everything it shows
with the project's redactor. Served standalone by ``integrator console``, and by the daemon on
its HTTP server. Flask is imported only when one of them serves.
"""

from __future__ import annotations

__all__ = ["HTMX_VERSION"]

HTMX_VERSION = "2.0.11"  # static/htmx.min.js, from the npm package htmx.org (licence beside it)
