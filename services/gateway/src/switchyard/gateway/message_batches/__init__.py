"""Anthropic's Message Batches API (/v1/messages/batches), served by the Batch API's runner."""
