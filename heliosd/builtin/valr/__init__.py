"""VALR exchange client (REST + WebSocket), registered as the ``valr`` exchange.

Modules: ``signing`` (HMAC of requests), ``rest`` (signed transport, error translation),
``parse`` (payloads -> heliosd types), ``retry`` (policies and timing bounds), ``streams``
(account and trade WebSockets), ``client`` (:class:`ValrClient`), ``plugin`` (the hookimpl).
"""
