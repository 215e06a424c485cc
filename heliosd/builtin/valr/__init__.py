"""VALR exchange client (REST + WebSocket), registered as the ``valr`` exchange.

Modules: ``signing`` (HMAC of requests), ``rest`` (signed transport, error translation),
``parse`` (payloads -> heliosd types) with ``fields`` (its field readers), ``retry``
(policies and timing bounds), ``streams`` (account and trade WebSockets: ``reconnect``,
``account``, ``trade``), ``client`` (:class:`ValrClient`) with ``account_reads`` (its REST
reads of the account) and ``placing`` + ``order_body`` (the wire send of an order),
``flows`` (transaction history), ``plugin`` (the hookimpl).
"""
