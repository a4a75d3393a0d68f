"""The gateway's response cache: exact (JetStream KV) and semantic (MiniLM + Qdrant), per tenant."""
