"""OpenAI's Conversations API: `/v1/conversations` and its items, and the Responses API's `conversation`
parameter, kept beside the stored responses in their KV bucket."""
