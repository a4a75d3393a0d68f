"""Google's Gemini API (`generateContent`, `streamGenerateContent`, `countTokens`, `embedContent`,
`batchEmbedContents`, the models list) as a face of the same pipeline, so the Google GenAI SDKs and the
Gemini CLI can be pointed at Switchyard: `request` reads Gemini's request into the pipeline's chat or
embeddings request, `render` answers in Gemini's shapes, `schema` turns Gemini's OpenAPI-style schemas into
the JSON Schema the pipeline (OpenAI's terms) carries."""
