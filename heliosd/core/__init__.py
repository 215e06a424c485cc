"""The vocabulary every part shares: value types, protocols, errors, config."""
