"""Stored Responses API responses: `store`, `previous_response_id`, `item_reference` input items, and
`GET`/`DELETE /v1/responses/{id}` with its `input_items`."""
