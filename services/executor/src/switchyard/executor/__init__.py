"""The executor: runs routed tasks on providers, with fallback, retries, breakers and streaming."""
