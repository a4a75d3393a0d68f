"""Learning from outcomes: an opt-in feature store of classified tasks, the ledger's outcomes, retraining."""
