"""Trading: routing, orders, the venue stream sink, market data, engine."""
