"""OpenAI's Files API (`/v1/files`): batch input files uploaded by clients, batch output files written by
the batch runner; content in a JetStream object store, descriptions in a KV bucket (`store.py`)."""
